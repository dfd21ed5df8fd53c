"""Record-level accounting: the ledger covers every round, agrees with Google's PLD accountant,
survives restarts, and stops training once the budget is spent."""

from __future__ import annotations

import dp_accounting
import pytest

from client.dp_training import check_budget, noise_multiplier_for, sample_rate_for, steps_per_round
from client.privacy_ledger import PrivacyLedger
from fedpriv.config import RunConfig
from fedpriv.errors import DataError, PrivacyBudgetExhausted

DELTA = 1e-5


def pld_epsilon(sigma: float, q: float, steps: int, delta: float = DELTA) -> float:
    accountant = dp_accounting.pld.PLDAccountant(value_discretization_interval=1e-4)
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
    accountant.compose(event)
    return accountant.get_epsilon(delta)


def ledger_after_rounds(rounds: int, sigma: float, q: float, steps: int, accountant: str = "prv") -> PrivacyLedger:
    """What the client does each round: restore the Opacus accountant from the ledger, step, save."""
    from opacus.accountants import create_accountant

    ledger = PrivacyLedger(accountant=accountant)
    for _ in range(rounds):
        opacus_accountant = create_accountant(accountant)
        opacus_accountant.history = list(ledger.history)
        for _ in range(steps):
            opacus_accountant.step(noise_multiplier=sigma, sample_rate=q)
        ledger.history = list(opacus_accountant.history)
    return ledger


def test_epsilon_after_three_rounds_covers_all_steps() -> None:
    sigma, q, steps = 1.0, 0.1, 10
    one = ledger_after_rounds(1, sigma, q, steps)
    three = ledger_after_rounds(3, sigma, q, steps)
    single_accountant = PrivacyLedger(history=[(sigma, q, 3 * steps)])
    assert three.steps == 30
    assert three.epsilon(DELTA) == pytest.approx(single_accountant.epsilon(DELTA), rel=1e-9)
    assert three.epsilon(DELTA) > one.epsilon(DELTA) * 1.2
    # A per-round reset (Flower's Opacus example) would report round 1's epsilon again: understated.
    assert one.epsilon(DELTA) < three.epsilon(DELTA)


@pytest.mark.parametrize(("sigma", "q", "steps"), [(1.0, 0.1, 30), (0.8, 0.05, 200), (1.5, 0.2, 50), (1.0, 32 / 1000, 1560)])
def test_prv_epsilon_agrees_with_dp_accounting_pld(sigma: float, q: float, steps: int) -> None:
    ours = PrivacyLedger(accountant="prv", history=[(sigma, q, steps)]).epsilon(DELTA)
    assert ours == pytest.approx(pld_epsilon(sigma, q, steps), abs=0.05)


def test_rdp_is_an_upper_bound_of_pld() -> None:
    rdp = PrivacyLedger(accountant="rdp", history=[(1.0, 0.1, 100)]).epsilon(DELTA)
    assert rdp >= pld_epsilon(1.0, 0.1, 100) - 1e-6


def test_ledger_persists_across_restarts(tmp_path) -> None:
    path = tmp_path / "device" / "privacy_ledger.json"
    ledger = ledger_after_rounds(2, 1.0, 0.1, 10)
    ledger.save(path)
    restored = PrivacyLedger.load(path, "prv")
    assert restored.history == ledger.history
    assert restored.epsilon(DELTA) == ledger.epsilon(DELTA)
    with pytest.raises(DataError, match="fresh.json: privacy ledger not found"):  # never an empty ledger in its place
        PrivacyLedger.load(tmp_path / "fresh.json", "prv")


def test_corrupt_or_mismatched_ledger_refuses_instead_of_resetting(tmp_path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text('{"accountant": "prv", "history": [[1.0, 0.1]]}')
    with pytest.raises(DataError, match="corrupt"):
        PrivacyLedger.load(path, "prv")
    PrivacyLedger(accountant="rdp", history=[(1.0, 0.1, 5)]).save(path)
    with pytest.raises(DataError, match="accountant"):
        PrivacyLedger.load(path, "prv")


def test_target_epsilon_calibrates_sigma_for_all_rounds_and_then_stops() -> None:
    config = RunConfig(target_epsilon=3.0, rounds=3, batch_size=16).validated()
    n = 160
    sigma = noise_multiplier_for(config, n)
    q, per_round = sample_rate_for(n, config.batch_size), steps_per_round(n, config)
    ledger = PrivacyLedger(accountant=config.accountant)
    for _ in range(config.rounds):
        check_budget(ledger, config, n, sigma)  # allowed: within budget
        ledger.history.append((sigma, q, per_round))
    spent = ledger.epsilon(config.delta)
    assert 2.9 <= spent <= 3.0
    with pytest.raises(PrivacyBudgetExhausted, match="budget"):
        check_budget(ledger, config, n, sigma)
