"""fedpriv.device_log: what a device keeps to itself, and how a simulation's report reads it back."""

from __future__ import annotations

import math
import stat

import pytest

from fedpriv.device_log import DEVICE_LOG, append_entry, device_metrics, fill_from_logs, read_entries


def test_entries_round_trip_with_infinities_and_a_private_file_mode(tmp_path):
    folder = tmp_path / "devices" / "hospital-00"
    append_entry(folder, "train", 1, {"train_loss": 2.5, "start_perplexity": math.inf})
    append_entry(folder, "evaluate", 1, {"eval_perplexity": 9.0})
    assert stat.S_IMODE((folder / DEVICE_LOG).stat().st_mode) == 0o600
    assert "Infinity" not in (folder / DEVICE_LOG).read_text()  # strict JSON
    entries = read_entries(folder)
    assert [(e["phase"], e["round"]) for e in entries] == [("train", 1), ("evaluate", 1)]
    assert entries[0]["metrics"]["start_perplexity"] == math.inf
    with pytest.raises(ValueError, match="phase"):
        append_entry(folder, "secret", 1, {})


def test_a_torn_line_is_skipped_and_a_later_round_entry_wins(tmp_path):
    folder = tmp_path / "phone-03"
    append_entry(folder, "train", 2, {"train_loss": 3.0})
    with open(folder / DEVICE_LOG, "a", encoding="utf-8") as fh:
        fh.write('{"phase": "train", "round": 2, "metr')  # the device died mid-write
    append_entry(folder, "train", 2, {"train_loss": 1.0})  # the same round again after a resume
    assert len(read_entries(folder)) == 2
    assert device_metrics(tmp_path) == {2: {"phone-03": {"train_loss": 1.0}}}


def test_filling_never_overwrites_what_the_server_recorded(tmp_path):
    append_entry(tmp_path / "a", "train", 1, {"train_loss": 2.0, "epsilon": 99.0})
    append_entry(tmp_path / "a", "evaluate", 0, {"eval_perplexity": 50.0})
    append_entry(tmp_path / "b", "train", 1, {"train_loss": 4.0})  # the server rejected b's reply in round 1
    rounds = {1: {"a": {"client_id": "a", "epsilon": 1.5}}}
    filled_rounds, initial, filled = fill_from_logs(rounds, {}, device_metrics(tmp_path))
    assert filled and filled_rounds[1]["a"] == {"client_id": "a", "epsilon": 1.5, "train_loss": 2.0}
    assert "b" not in filled_rounds[1] and initial == {"a": {"eval_perplexity": 50.0}}
    assert rounds == {1: {"a": {"client_id": "a", "epsilon": 1.5}}}  # the input is left as it was
    assert fill_from_logs(rounds, {}, {})[2] is False
