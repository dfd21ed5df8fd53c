"""The privacy audit: `fedpriv audit RUN_DIR` checks every privacy claim of a run.

One module per check (accounting, one-run canary bound, membership inference, canary exposure,
the gateway's outgoing log), each returning a `Check` (audit.checks); `audit.run` runs them on a
run directory and `audit.report` writes audit.md, audit.json and the plots. The audit may import
the product; nothing in the product imports it.
"""
