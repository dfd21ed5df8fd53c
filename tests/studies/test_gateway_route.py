"""The gateway-route study: its scoring rules, its prompt set, and that its per-prompt composition
(local answer + `Router.after_local` + the cloud route) gives what `Gateway.ask` under `auto` gives,
on the shipped default model and a fake cloud."""

from __future__ import annotations

import pytest

from client.gateway.local_model import DEFAULT_MODEL_DIR
from simulations.studies.gateway_route.run import Prompt, load_prompts
from simulations.studies.gateway_route.scoring import Row, confidence_auroc, contains_keyword, exact_match, summarize
from tests.fake_cloud import FakeCloud


def test_keywords_match_whole_words_after_normalizing():
    assert contains_keyword("The capital of France is Paris.", ["Paris"])
    assert contains_keyword("It is H₂O, of course", ["H2O"])
    assert contains_keyword("About 100°C at sea level", ["100"])
    assert not contains_keyword("There are 40 of them", ["4"])
    assert contains_keyword("The answer is 4.", ["4"]) and contains_keyword("It is 2.5.", ["2.5"])
    assert not contains_keyword("It is 4.5", ["4"])
    assert not contains_keyword("Australia", ["Au"])
    assert not contains_keyword(None, ["Paris"]) and not contains_keyword("", ["Paris"])
    assert exact_match("The capital is Paris.", "the capital is  paris")
    assert not exact_match("Paris", None) and not exact_match("Paris", "Rome")


def _row(id_: str, confidence: float, local: str, cloud: str | None, route: str = "cloud") -> Row:
    return Row(id_, "factual", confidence, local, cloud, route, ("Paris",))


def test_summary_counts_at_a_threshold():
    rows = [
        _row("a", 0.9, "Paris", "Paris"),         # local, both right, exact
        _row("b", 0.5, "Paris, France", "Rome"),  # local (>= is inclusive), only local right
        _row("c", 0.4, "Rome", "Paris"),          # sent, stand-in right
        _row("d", 0.1, "Rome", None, "refused"),  # sent, refused
    ]
    s = summarize(rows, 0.5)
    assert (s["answered_locally"], s["local_share"], s["local_correct"]) == (2, 0.5, 2)
    assert (s["standin_correct_on_local"], s["keyword_agreement"], s["exact_agreement"], s["same_correctness"]) == (1, 1, 1, 1)
    assert (s["sent"], s["refused"], s["auto_correct"]) == (2, 1, 3)
    assert summarize(rows, 0.95)["answered_locally"] == 0 and summarize(rows, 0.0)["answered_locally"] == 4
    assert confidence_auroc(rows) == 1.0  # right answers a, b above wrong ones c, d
    assert confidence_auroc([_row("e", 0.3, "Paris", None), *rows[2:], _row("f", 0.4, "Paris", None)]) == 0.625  # (0 + 1 + ½ + 1) / 4
    assert confidence_auroc(rows[:2]) is None


def test_prompt_set_is_labelled():
    prompts = load_prompts()
    assert 30 <= len(prompts) <= 40
    assert {p.category for p in prompts} == {"factual", "hard", "personal"}
    assert all(p.keywords and all(k.strip() for k in p.keywords) for p in prompts)


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "config.json").is_file(), reason="default model not built")
@pytest.mark.parametrize("min_confidence", [0.0, 1.0])
def test_route_one_is_what_the_gateway_does_under_auto(tmp_path, min_confidence):
    from client.gateway.gateway import Gateway, GatewayOptions, default_sanitizer
    from client.gateway.local_model import LocalModel
    from client.gateway.router import Router
    from simulations.studies.gateway_route.run import route_one

    prompt = Prompt("x", "personal", "My name is John Smith. Which day is it tomorrow if today is Monday?", ("Tuesday",))
    sanitizer, new_session = default_sanitizer(None)
    local = LocalModel("default", max_new_tokens=16)
    with FakeCloud() as cloud:
        def gateway(route: str, state: str) -> Gateway:
            options = GatewayOptions(state_dir=str(tmp_path / state), route=route, cloud_url=cloud.url, min_confidence=min_confidence,
                                     timeout=10, max_retries=0, local_max_new_tokens=local.max_new_tokens)
            return Gateway.from_options(options, sanitizer=sanitizer, new_session=new_session)

        outcome = route_one(prompt, local, Router("auto", min_confidence=min_confidence), gateway("cloud", "study"))
        direct = gateway("auto", "direct").ask(prompt.text)
    assert outcome.auto_route == direct.route == ("local" if min_confidence == 0.0 else "cloud")
    assert outcome.auto_answer == direct.answer
    assert outcome.row.confidence == pytest.approx(direct.confidence, abs=1e-4)
    assert outcome.cloud.route == "cloud" and "John Smith" not in (outcome.cloud.sent or "")
