"""audit.released: under DP, a field no mechanism covers fails the audit; declared public fields are noted."""

from __future__ import annotations

from audit.released import audit_released


def _metrics(mode: str, train_fields: dict[str, dict[str, int]], secure: bool = False, **privacy) -> dict:
    return {"config": {"secure_aggregation": None}, "privacy": {"mode": mode, "secure_aggregation": secure, **privacy},
            "released": {"train": {name: {"mechanisms": m} for name, m in train_fields.items()}}}


def test_declared_fields_pass_and_public_ones_are_noted():
    check = audit_released(_metrics("record", {"arrays": {"dp-sgd": 3}, "metrics.epsilon": {"accounting": 3},
                                               "metrics.num-examples": {"public": 3}}))
    assert check.status == "pass"
    assert [f.subject for f in check.findings] == ["train:metrics.num-examples"]


def test_an_uncovered_metric_under_dp_fails():
    check = audit_released(_metrics("record", {"arrays": {"dp-sgd": 3}, "metrics.train_loss": {"none": 2, "undeclared": 1}}))
    assert check.status == "fail" and check.findings[0].subject == "train:metrics.train_loss"


def test_without_dp_nothing_fails_and_central_client_dp_is_noted():
    assert audit_released(_metrics("none", {"metrics.train_loss": {"none": 3}})).status == "pass"
    check = audit_released(_metrics("client", {"arrays": {"dp-fedavg": 3}}))
    assert check.status == "pass" and any("central DP" in f.message for f in check.findings)
    assert not audit_released(_metrics("client", {"arrays": {"dp-fedavg+secagg": 3}}, secure=True)).findings


def test_a_run_without_a_record_is_skipped():
    assert audit_released({"privacy": {"mode": "record"}}).status == "skipped"


def test_every_noise_generator_is_listed_and_a_seeded_one_noted():
    privacy = {"record_level": {"h0": {"noise_source": "ChaCha20 CSPRNG keyed from the OS"}, "h1": {"noise_source": "seeded torch generator"},
                                "h2": {}},
               "client_level": {"noise_source": "ChaCha20 CSPRNG keyed from the OS"}}
    check = audit_released(_metrics("both", {"arrays": {"dp-fedavg+secagg": 3}}, secure=True, **privacy))
    assert check.status == "pass"
    generators = check.details["noise_generators"]
    assert set(generators) == {"device h0", "device h1", "device h2", "server (client-level DP)"}
    notes = {f.subject: f.message for f in check.findings}
    assert "deployment needs noise=secure" in notes["noise:device h1"] and "not recorded" in notes["noise:device h2"]
