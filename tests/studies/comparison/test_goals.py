"""simulations.studies.comparison.goals: wins, gain and gain kept on small hand-made tables."""

from __future__ import annotations

import math

import pytest

from simulations.studies.comparison.goals import (
    ClientRow,
    bits_per_byte_summary,
    client_rows,
    gain_kept,
    personalized_wins,
    summarize,
)


def _rows():
    R = ClientRow
    return [
        # no DP: personalized beats both on 4 of 5 clients
        R("hospital", None, "fedsa", "a", 10.0, 12.0, 8.0),  # gain 2
        R("hospital", None, "fedsa", "b", 20.0, 15.0, 11.0),  # gain 4
        R("hospital", None, "fedsa", "c", 5.0, 6.0, 4.0),  # gain 1
        R("hospital", None, "fedsa", "d", 9.0, 9.5, 8.0),  # gain 1
        R("hospital", None, "fedsa", "e", 7.0, 8.0, 9.0),  # loses to global: gain -2
        # ε = 8: 2 of 5 win
        R("hospital", 8.0, "fedsa", "a", 12.0, 14.0, 10.0),  # gain 2
        R("hospital", 8.0, "fedsa", "b", 22.0, 18.0, 19.0),  # loses to local: -1
        R("hospital", 8.0, "fedsa", "c", 6.0, 7.0, 5.5),  # +0.5
        R("hospital", 8.0, "fedsa", "d", 10.0, 9.0, 9.0),  # tie with local is not a win: 0
        R("hospital", 8.0, "fedsa", "e", 8.0, 9.0, 8.5),  # -0.5
        # another strategy whose non-private gain is negative
        R("hospital", None, "ffa", "a", 10.0, 12.0, 11.0),
        R("hospital", 8.0, "ffa", "a", 12.0, 14.0, 11.0),
    ]


def test_goal_computation_on_a_synthetic_table():
    summary = summarize(_rows())
    nodp = summary[("hospital", "none", "fedsa")]
    assert nodp["clients"] == 5 and nodp["wins"] == 4
    assert nodp["win_share"] == pytest.approx(0.8) and nodp["win_goal_met"]  # exactly 80 % meets "≥ 80 %"
    assert nodp["gain"] == pytest.approx((2 + 4 + 1 + 1 - 2) / 5)
    assert nodp["beats_global"] == pytest.approx(0.8) and nodp["beats_local"] == pytest.approx(0.8)
    assert nodp["mean_personalized"] == pytest.approx(8.0)
    private = summary[("hospital", "8", "fedsa")]
    assert private["wins"] == 2 and private["win_share"] == pytest.approx(0.4) and not private["win_goal_met"]
    assert private["gain"] == pytest.approx((2 - 1 + 0.5 + 0 - 0.5) / 5)
    assert private["gain_nats"] == pytest.approx(
        sum(math.log(min(g, l)) - math.log(p) for g, l, p in [(12, 14, 10), (22, 18, 19), (6, 7, 5.5), (10, 9, 9), (8, 9, 8.5)]) / 5
    )

    kept = gain_kept(summary)
    fedsa = kept[("hospital", "fedsa")]
    assert fedsa["kept"] == pytest.approx(0.2 / 1.2) and not fedsa["goal_met"]
    ffa = kept[("hospital", "ffa")]
    assert ffa["gain_non_private"] == pytest.approx(-1.0) and ffa["kept"] is None and not ffa["goal_met"]
    assert ("hospital", "fedsa") in kept and len(kept) == 2


def test_gain_kept_goal_met_and_missing_configurations():
    R = ClientRow
    rows = [R("phone", None, "ffa", "a", 10, 10, 5), R("phone", 8.0, "ffa", "a", 10, 10, 6), R("phone", 4.0, "ffa", "a", 10, 10, 9)]
    kept = gain_kept(summarize(rows))
    assert kept[("phone", "ffa")]["kept"] == pytest.approx(0.8) and kept[("phone", "ffa")]["goal_met"]
    assert gain_kept(summarize(rows[1:])) == {}  # no non-private configuration: nothing to compare


def test_the_fine_tuned_ablation_is_summarized_only_when_every_row_has_it():
    R = ClientRow
    with_ablation = [R("phone", None, "ffa", "a", 10, 12, 8, finetuned=9), R("phone", None, "ffa", "b", 10, 12, 8, finetuned=11)]
    summary = summarize(with_ablation)[("phone", "none", "ffa")]
    assert summary["mean_finetuned"] == pytest.approx(10.0) and summary["finetuned_wins"] == 1  # 9 beats both, 11 beats neither
    old = summarize([*with_ablation, R("phone", None, "ffa", "c", 10, 12, 8)])[("phone", "none", "ffa")]  # results made before it
    assert "mean_finetuned" not in old and "finetuned_wins" not in old


def test_client_rows_use_the_best_global_adapter_per_client():
    results = {"profiles": {"hospital": {"epsilons": {"none": {
        "epsilon": None,
        "local_only": {"a": {"perplexity": 9.0}, "b": {"perplexity": 9.0}},
        "runs": {
            "ffa": {"clients": {"a": {"global_only": 8.0, "personalized": 7.0}, "b": {"global_only": 12.0, "personalized": 10.0}}},
            "fedsa": {"clients": {"a": {"global_only": 20.0, "personalized": 7.5}, "b": {"global_only": 11.0, "personalized": 8.0}}},
        },
    }}}}}
    rows = {(r.strategy, r.client_id): r for r in client_rows(results)}
    assert rows[("fedsa", "a")].global_only == 8.0  # ffa's global is better for a: the stricter baseline
    assert rows[("ffa", "b")].global_only == 11.0
    assert not personalized_wins(rows[("ffa", "b")])  # 10 > local 9
    assert personalized_wins(rows[("fedsa", "b")])


def test_bits_per_byte_convert_each_clients_perplexity_with_its_own_token_and_byte_counts():
    # a scores 10 tokens over 40 bytes, b 20 over 40: log2(perplexity) x tokens / bytes
    clients = {"a": {"base_perplexity": 16.0, "held_out_tokens": 10, "held_out_bytes": 40},
               "b": {"base_perplexity": 16.0, "held_out_tokens": 20, "held_out_bytes": 40}}
    entry = {"epsilon": None, "local_only": {"a": {"perplexity": 4.0}, "b": {"perplexity": 8.0}},
             "runs": {"fedavg": {"clients": {"a": {"global_only": 8.0, "personalized": 2.0}, "b": {"global_only": 4.0, "personalized": 2.0}}}}}
    results = {"profiles": {"hospital": {"clients": clients, "epsilons": {"none": entry}}}}
    summary = bits_per_byte_summary(results)
    # a: base 1.0, global 0.75, local 0.5, personalized 0.25 (gain 0.25); b: 2.0, 1.0, 1.5, 0.5 (gain 0.5)
    assert summary[("hospital", "none", "fedavg")] == pytest.approx(
        {"base": 1.5, "global_only": 0.875, "local_only": 1.0, "personalized": 0.375, "gain": 0.375})
    # results made before the byte counts were recorded have no such table
    for c in clients.values():
        del c["held_out_bytes"]
    assert bits_per_byte_summary(results) == {}
