"""simulations.canaries: included canaries are trained on, exactly; inclusion is a fair coin per canary."""

from __future__ import annotations

from fedpriv.data import split_records
from simulations.canaries import insert_canaries, load_canaries, plan_canaries, save_canaries

CLIENTS = ["hospital-00", "hospital-01", "hospital-02"]


def test_inclusion_is_about_half_and_reproducible():
    plan = plan_canaries(CLIENTS, 1000, seed=3)
    one_run = [c for c in plan if c.kind == "one-run"]
    assert len(one_run) == 1000 and 450 < sum(c.included for c in one_run) < 550
    assert plan == plan_canaries(CLIENTS, 1000, seed=3) and plan != plan_canaries(CLIENTS, 1000, seed=4)
    assert {c.client_id for c in one_run} == set(CLIENTS)


def test_included_canaries_land_in_the_train_split_and_excluded_ones_nowhere(tmp_path):
    plan = plan_canaries(CLIENTS, 60, seed=0)
    federation = {cid: [f"{cid} record {i}" for i in range(80)] for cid in CLIENTS}
    written = insert_canaries(federation, plan, eval_fraction=0.2, seed=0)
    for cid, texts in written.items():
        split = split_records(cid, texts, 0.2, 0)
        for canary in plan:
            copies = split.train.count(canary.text)
            if canary.included and canary.client_id == cid:
                assert copies == canary.repetitions and canary.text not in split.held_out
            else:
                assert copies == 0 and canary.text not in split.held_out
        assert all(f"{cid} record {i}" in texts for i in range(80))  # nothing of the device's own data lost


def test_the_log_round_trips(tmp_path):
    plan = plan_canaries(CLIENTS, 10, seed=1)
    save_canaries(tmp_path, plan, seed=1)
    assert load_canaries(tmp_path) == plan
