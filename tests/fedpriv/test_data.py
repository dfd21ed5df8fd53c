"""A user's own `--data DIR`: clear errors naming file and line, deterministic split."""

from __future__ import annotations

import json

import pytest

from fedpriv.data import MAX_CHARS_PER_TOKEN, clip_text, list_client_files, load_client, read_client_file, split_client_file, split_records, validate_data_dir
from fedpriv.errors import DataError


def _write(path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_malformed_line_names_file_and_line(tmp_path) -> None:
    _write(tmp_path / "alice.jsonl", [json.dumps({"text": "ok one"}), json.dumps({"text": "ok two"}), "{not json"])
    with pytest.raises(DataError, match=r"alice\.jsonl:3: invalid JSON"):
        read_client_file(tmp_path / "alice.jsonl")


@pytest.mark.parametrize("bad", [json.dumps({"body": "x"}), json.dumps({"text": "   "}), json.dumps(["text"]), json.dumps({"text": 3})])
def test_missing_or_empty_text_is_named(tmp_path, bad: str) -> None:
    _write(tmp_path / "bob.jsonl", [json.dumps({"text": "fine"}), bad])
    with pytest.raises(DataError, match=r"bob\.jsonl:2:"):
        validate_data_dir(tmp_path)


def test_unicode_and_blank_lines_are_accepted(tmp_path) -> None:
    texts = ["Grüße aus Köln 🚑", "病人今天感觉好多了", "plain"]
    _write(tmp_path / "c.jsonl", [json.dumps({"text": t}, ensure_ascii=False) for t in texts] + [""])
    assert read_client_file(tmp_path / "c.jsonl") == texts


def test_split_is_seeded_disjoint_and_complete() -> None:
    texts = [f"record {i}" for i in range(50)]
    a = split_records("c", texts, 0.2, seed=1)
    b = split_records("c", texts, 0.2, seed=1)
    c = split_records("c", texts, 0.2, seed=2)
    assert a == b
    assert a.held_out != c.held_out
    assert len(a.held_out) == 10 and sorted(a.train + a.held_out) == sorted(texts)


def test_partitions_follow_sorted_file_names(tmp_path) -> None:
    for name in ("zeta", "alpha", "mid"):
        _write(tmp_path / f"{name}.jsonl", [json.dumps({"text": f"{name} {i}"}) for i in range(4)])
    assert [p.stem for p in list_client_files(tmp_path)] == ["alpha", "mid", "zeta"]
    assert load_client(tmp_path, 2, 0.25, seed=0).client_id == "zeta"
    with pytest.raises(DataError, match="partition 3"):
        load_client(tmp_path, 3, 0.25, seed=0)


def test_bad_client_id_and_empty_dir(tmp_path) -> None:
    with pytest.raises(DataError, match="no <client_id>.jsonl"):
        list_client_files(tmp_path)
    _write(tmp_path / "bad name!.jsonl", [json.dumps({"text": "x"})])
    with pytest.raises(DataError, match="client id"):
        list_client_files(tmp_path)


def test_invalid_utf8_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "carol.jsonl"
    path.write_bytes(json.dumps({"text": "fine"}).encode() + b"\n" + b'{"text": "caf\xe9 au lait"}\n')
    with pytest.raises(DataError, match=r"carol\.jsonl:2: not valid UTF-8 \(byte 0xe9 at column 14\)"):
        read_client_file(path)


def test_invalid_utf8_in_data_stops_simulate_with_the_documented_error(tmp_path, capsys) -> None:
    from fedpriv.cli import main

    data = tmp_path / "data"
    data.mkdir()
    _write(data / "alice.jsonl", [json.dumps({"text": f"note {i}"}) for i in range(3)])
    (data / "bob.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "\xc3\x28"}\n')
    assert main(["simulate", "--data", str(data), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "bob.jsonl:2: not valid UTF-8" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["...jsonl", "..jsonl", ".hidden.jsonl", "a b.jsonl", "x" * 129 + ".jsonl"])
def test_every_path_to_a_client_file_checks_its_client_id(tmp_path, name) -> None:
    path = tmp_path / name
    _write(path, [json.dumps({"text": "one"}), json.dumps({"text": "two"})])
    with pytest.raises(DataError, match="client id"):
        split_client_file(path, 0.5, seed=0)
    with pytest.raises(DataError, match="client id"):
        list_client_files(tmp_path)


def test_clip_text_bounds_by_max_seq_len() -> None:
    text = "x" * 10_000_000
    assert len(clip_text(text, 8)) == 8 * MAX_CHARS_PER_TOKEN
    assert clip_text("short", 8) == "short"
