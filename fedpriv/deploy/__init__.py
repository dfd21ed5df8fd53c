"""Deployment materials for a real federation (`fedpriv deploy`): the SuperLink's TLS certificate and
its CA, one SuperNode authentication key per device, the exact commands that start the SuperLink and
the SuperNodes with them, and a `flwr run` that exits non-zero when the run fails.

It lives in the core (`fedpriv/`) because it serves both sides, the server (TLS, the Control API
connection) and every device (its authentication key), and the CLI; it needs nothing of `client/`
or `server/`, only the run-config keys (`fedpriv.config`) and the `cryptography` package.
"""
