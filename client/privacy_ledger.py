"""The device's record-level privacy ledger: every DP-SGD step ever taken, across rounds and restarts.

Flower's Opacus example builds a new PrivacyEngine each round, so its epsilon covers one round only.
Here the Opacus accountant's history is the persisted state: each round starts the accountant from
the ledger and writes the extended history back, so the reported epsilon always covers every step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from fedpriv.errors import DataError
from fedpriv.files import write_atomically

# (noise_multiplier, sample_rate, steps): exactly Opacus' accountant history format.
Segment = tuple[float, float, int]


def make_accountant(kind: str):
    from opacus.accountants import create_accountant

    return create_accountant(mechanism=kind)


@dataclass
class PrivacyLedger:
    accountant: str = "prv"
    history: list[Segment] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return sum(int(s) for _, _, s in self.history)

    def epsilon(self, delta: float, extra: list[Segment] | None = None) -> float:
        """Epsilon for every step in the ledger (plus `extra` steps not yet taken, for look-ahead)."""
        history = self.history + list(extra or [])
        if not history:
            return 0.0
        accountant = make_accountant(self.accountant)
        accountant.history = [tuple(s) for s in history]
        return float(accountant.get_epsilon(delta=delta))

    # ---- persistence -------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps({"accountant": self.accountant, "history": [list(s) for s in self.history]})

    @classmethod
    def from_json(cls, text: str, source: str = "ledger") -> PrivacyLedger:
        try:
            raw = json.loads(text)
            history = [(float(s[0]), float(s[1]), int(s[2])) for s in raw["history"]]
            ledger = cls(accountant=str(raw["accountant"]), history=history)
        except (ValueError, KeyError, TypeError, IndexError) as err:
            # A corrupt ledger must not silently reset epsilon to zero.
            raise DataError(f"{source}: privacy ledger is corrupt ({err}); refusing to train with an unknown budget") from None
        for sigma, q, steps in ledger.history:
            if not (sigma > 0 and 0 < q <= 1 and steps > 0 and math.isfinite(sigma)):
                raise DataError(f"{source}: privacy ledger has an invalid segment {(sigma, q, steps)}")
        return ledger

    def save(self, path: Path) -> None:
        """Atomic write (temp file + rename) so a crash never leaves a half-written ledger."""
        write_atomically(path, self.to_json())

    @classmethod
    def load(cls, path: Path, accountant: str) -> PrivacyLedger:
        """The ledger in `path`, kept with `accountant`. A missing file is an error, never an empty
        ledger: whether a device may start from ε = 0 is its folder's decision (client.device)."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise DataError(f"{path}: privacy ledger not found; refusing to train with an unknown budget") from None
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"{path}: privacy ledger cannot be read ({err}); refusing to train with an unknown budget") from None
        ledger = cls.from_json(text, source=str(path))
        if ledger.accountant != accountant:
            raise DataError(f"{path}: ledger was kept with the {ledger.accountant!r} accountant, run asks for {accountant!r}")
        return ledger
