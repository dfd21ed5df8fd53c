"""simulations.synthetic: the synthetic federations (hospital departments, phone users), PII ground
truth, and the public corpus (offline, CPU, fast)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from simulations.synthetic import DEFAULT_NUM_CLIENTS, PII_TYPES, PROFILES, SPECIALTY_NAMES, client_ids, generate_federation, generate_federation_records, public_corpus, public_split, read_federation, write_federation


def _words(texts: list[str]) -> Counter[str]:
    return Counter(w.lower() for t in texts for w in re.findall(r"[\w'/#-]+", t))


def test_api_constants() -> None:
    assert PROFILES == ("hospital", "phone")
    assert DEFAULT_NUM_CLIENTS == {"hospital": 4, "phone": 20}


@pytest.mark.parametrize("profile", PROFILES)
def test_default_shape_and_ids(profile: str) -> None:
    fed = generate_federation(profile, records_per_client=20)
    assert len(fed) == DEFAULT_NUM_CLIENTS[profile]
    ids = list(fed)
    assert ids == sorted(ids) == client_ids(profile)
    assert all(re.fullmatch(r"[a-z0-9-]+", cid) for cid in ids)
    assert all(len(texts) == 20 and all(isinstance(t, str) and t.strip() for t in texts) for texts in fed.values())


def test_client_id_examples() -> None:
    assert client_ids("hospital")[0] == "hospital-00-cardiology"
    assert [c.split("-", 2)[2] for c in client_ids("hospital")] == list(SPECIALTY_NAMES[:4])
    assert client_ids("phone")[7] == "phone-07"
    many = client_ids("phone", 150)
    assert many == sorted(many) and many[7] == "phone-007" and len(set(many)) == 150


@pytest.mark.parametrize("profile", PROFILES)
def test_deterministic_per_seed(profile: str, tmp_path: Path) -> None:
    a = generate_federation(profile, 3, 40, seed=11)
    b = generate_federation(profile, 3, 40, seed=11)
    c = generate_federation(profile, 3, 40, seed=12)
    assert a == b
    assert a != c
    # Byte-identical files.
    pa = write_federation(tmp_path / "a", a)
    pb = write_federation(tmp_path / "b", b)
    assert [p.read_bytes() for p in pa] == [p.read_bytes() for p in pb]


def test_clients_are_stable_when_adding_clients() -> None:
    small = generate_federation("phone", 3, 30, seed=5)
    large = generate_federation("phone", 6, 30, seed=5)
    for cid, texts in small.items():
        assert large[cid] == texts


def test_write_and_read_jsonl(tmp_path: Path) -> None:
    fed = generate_federation("phone", 3, 25, seed=1)
    paths = write_federation(tmp_path / "out", fed)
    assert [p.name for p in paths] == [f"{cid}.jsonl" for cid in sorted(fed)]
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 25
        assert all(set(json.loads(line)) == {"text"} for line in lines)
    assert read_federation(tmp_path / "out") == fed


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"profile": "mall"}, "profile"),
        ({"profile": "hospital", "num_clients": 0}, "num_clients"),
        ({"profile": "phone", "num_clients": -3}, "num_clients"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        generate_federation(**kwargs)


def test_unknown_profile_message_lists_profiles() -> None:
    with pytest.raises(ValueError, match="hospital, phone"):
        generate_federation("clinic")


def test_hospital_departments_are_non_iid() -> None:
    fed = generate_federation("hospital", 4, 200, seed=0)
    vocab = {cid: _words(texts) for cid, texts in fed.items()}
    top = {cid: {w for w, _ in counts.most_common(150)} for cid, counts in vocab.items()}
    ids = list(fed)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            jaccard = len(top[a] & top[b]) / len(top[a] | top[b])
            assert jaccard < 0.35, (a, b, jaccard)
    # Each department uses its own jargon and nobody else's.
    signature = {"cardiology": "ecg", "oncology": "ecog", "pediatrics": "mom", "orthopedics": "wbat"}
    for cid in ids:
        own = cid.split("-", 2)[2]
        for dept, word in signature.items():
            if dept == own:
                assert vocab[cid][word] >= 10, (cid, word)
            else:
                assert vocab[cid][word] == 0, (cid, word)


def test_phone_users_have_distinct_styles() -> None:
    fed = generate_federation("phone", 20, 150, seed=0)
    traits = []
    for texts in fed.values():
        joined = "\n".join(texts)
        letters = [c for c in joined if c.isalpha() and c.isascii()]
        traits.append(
            (
                round(sum(c.isupper() for c in letters) / len(letters), 2),  # casing
                round(sum(not c.isascii() for c in joined) / len(joined), 2),  # emoji / scripts
                round(joined.count("!") / len(texts), 1),  # punctuation habit
                joined.count("\n") > len(texts),  # double texting
            )
        )
    assert len(set(traits)) >= 15  # 20 users, (nearly) all with a different fingerprint
    top = [{w for w, _ in _words(t).most_common(60)} for t in fed.values()]
    overlaps = [len(a & b) / len(a | b) for i, a in enumerate(top) for b in top[i + 1 :]]
    assert sum(overlaps) / len(overlaps) < 0.5
    assert any(re.search(r"[\u3040-\u30ff\u0400-\u04ff\uac00-\ud7af\u4e00-\u9fff\u0600-\u06ff]", "".join(t)) for t in fed.values())


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("fraction", [0.3, 0.1])
def test_pii_fraction_and_ground_truth(profile: str, fraction: float) -> None:
    fed = generate_federation_records(profile, 4, 200, seed=2, pii_fraction=fraction)
    for records in fed.values():
        share = sum(r.has_pii for r in records) / len(records)
        assert abs(share - fraction) <= 0.02
        for r in records:
            for span in r.pii:
                assert span.type in PII_TYPES
                assert r.text[span.start : span.end] == span.text
    kinds = Counter(s.type for records in fed.values() for r in records for s in r.pii)
    expected = {"PERSON", "PHONE", "DATE", "EMAIL", "LOCATION"} | ({"MRN"} if profile == "hospital" else set())
    assert expected <= set(kinds)


def test_default_pii_fraction_is_about_30_percent() -> None:
    fed = generate_federation_records("hospital", seed=0)
    records = [r for rs in fed.values() for r in rs]
    assert abs(sum(r.has_pii for r in records) / len(records) - 0.3) < 0.02
    # Records without planted identifiers carry no MRN/email/phone-shaped strings.
    clean = [r.text for r in records if not r.has_pii]
    assert not any(re.search(r"@\w+\.\w+|MRN|\(\d{3}\) \d{3}-\d{4}", t) for t in clean)


@pytest.mark.parametrize("profile", PROFILES)
def test_record_lengths(profile: str) -> None:
    texts = [t for ts in generate_federation(profile, None, 100, seed=0).values() for t in ts]
    lengths = [len(t.split()) for t in texts]
    assert 18 <= sum(lengths) / len(lengths) <= 45
    assert sum(10 <= n <= 70 for n in lengths) / len(lengths) > 0.97


def test_public_corpus() -> None:
    from simulations.synthetic.hospital import SPECIALTIES

    a = public_corpus(600, seed=0)
    assert a == public_corpus(600, seed=0) and a != public_corpus(600, seed=1)
    train, heldout = public_split(600, seed=0, heldout_fraction=0.1)
    assert train + heldout == a and len(heldout) == 60
    # Both domains ...
    medical = [t for t in a if re.search(r"\b(BP|Pt|patient|Patient|Dx|A/P|Assessment)\b", t)]
    assert 0.35 < len(medical) / len(a) < 0.65
    # ... but none of the departments' note styles (template openers) and no identifiers.
    openers = {t.split("{", 1)[0].strip() for spec in SPECIALTIES for t in spec.templates}
    openers = {o for o in openers if len(o) >= 8}
    assert len(openers) > 20
    joined = "\n".join(public_corpus(4000, seed=0))
    assert not [o for o in openers if o in joined]
    assert not re.search(r"@\w+\.\w+|MRN", joined)
