"""Error types shared by every part of fedpriv."""

from __future__ import annotations


class FedprivError(Exception):
    """An error the user can act on; the CLI prints it without a traceback."""


class ConfigError(FedprivError, ValueError):
    """A configuration value is invalid. The message names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


class DataError(FedprivError, ValueError):
    """Input data is malformed. The message names the file (and line, when there is one)."""


class PrivacyBudgetExhausted(FedprivError):
    """The client's privacy budget is spent: it must not train (or send) any more."""
