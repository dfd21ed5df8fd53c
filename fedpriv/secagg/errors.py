"""The two ways a secure-aggregation round can go wrong."""

from __future__ import annotations

from fedpriv.errors import FedprivError


class ProtocolError(FedprivError):
    """A message breaks the protocol (malformed, wrong stage/round/session, from a node outside the
    round, failed authentication, inconsistent with an earlier stage). The receiver rejects it and
    reveals nothing in reply."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class SecAggAborted(FedprivError):
    """The round cannot finish securely (too few survivors or shares for the threshold, or an
    unmasked sum that fails its range check). The server releases no aggregate."""
