"""`python -m simulations.studies.sanitizer_eval`: the sanitizer's evaluation against Presidio's defaults."""

from __future__ import annotations

import json

from simulations.studies.sanitizer_eval.__main__ import main


def test_sanitize_eval_command(tmp_path, capsys):
    report = tmp_path / "eval.json"
    assert main(["--n", "40", "--seed", "3", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "PERSON" in printed and "Presidio" in printed and "utility" in printed
    data = json.loads(report.read_text(encoding="utf-8"))
    ours, presidio = data["systems"]
    assert ours["name"] == "fedpriv gateway" and presidio["name"] == "Presidio default"
    assert ours["direct_leak_rate"] <= 0.01 < presidio["direct_leak_rate"]
    assert ours["per_type"]["PERSON"]["count"] > 0
