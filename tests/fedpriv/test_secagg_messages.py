"""The wire schema: every payload round-trips through ConfigRecord-ready fields; bad fields are
refused with a ProtocolError that names them."""

from __future__ import annotations

import os

import pytest
from flwr.app import ConfigRecord

from fedpriv.secagg.errors import ProtocolError
from fedpriv.secagg.messages import (
    MASKED_INPUT,
    SETUP,
    SHARE_KEYS,
    UNMASK,
    AdvertiseReply,
    Header,
    MaskedInputReply,
    MaskedInputRequest,
    SetupRequest,
    ShareKeysReply,
    ShareKeysRequest,
    UnmaskReply,
    UnmaskRequest,
)
from fedpriv.secagg.protocol import CIPHERTEXT_BYTES, REVEALED_BYTES
from fedpriv.secagg.quantization import QuantizationSpec

SESSION = os.urandom(16)
BIG = 2**64 - 3  # node ids use the full uint64 range


def _h(stage):
    return Header(stage, SESSION, 5)


PAYLOADS = [
    SetupRequest(_h(SETUP), (1, 2, BIG), os.urandom(32), 2, 2, 100, QuantizationSpec.for_clients(3, 0.5)),
    AdvertiseReply(_h(SETUP), os.urandom(32), os.urandom(32)),
    ShareKeysRequest(_h(SHARE_KEYS), {1: (os.urandom(32), os.urandom(32)), BIG: (os.urandom(32), os.urandom(32))}),
    ShareKeysReply(_h(SHARE_KEYS), {BIG: os.urandom(CIPHERTEXT_BYTES)}, {1: (os.urandom(32), os.urandom(32)), BIG: (os.urandom(32), os.urandom(32))}),
    MaskedInputRequest(_h(MASKED_INPUT), {1: os.urandom(CIPHERTEXT_BYTES), BIG: os.urandom(CIPHERTEXT_BYTES)}),
    MaskedInputReply(_h(MASKED_INPUT), os.urandom(606)),
    UnmaskRequest(_h(UNMASK), (1, BIG), (2,)),
    UnmaskReply(_h(UNMASK), {1: os.urandom(REVEALED_BYTES), BIG: os.urandom(REVEALED_BYTES)}, {2: os.urandom(REVEALED_BYTES)}),
]


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: type(p).__name__)
def test_payload_round_trips_through_a_config_record(payload):
    record = ConfigRecord(payload.to_fields())  # Flower accepts every value type used
    assert type(payload).from_fields(dict(record)) == payload


def test_missing_wrong_type_and_wrong_length_fields_are_named():
    fields = PAYLOADS[1].to_fields()
    with pytest.raises(ProtocolError, match="'mask-public-key' is missing"):
        AdvertiseReply.from_fields({k: v for k, v in fields.items() if k != "mask-public-key"})
    with pytest.raises(ProtocolError, match="'secagg-round' must be int"):
        AdvertiseReply.from_fields({**fields, "secagg-round": True})
    with pytest.raises(ProtocolError, match="32 bytes"):
        AdvertiseReply.from_fields({**fields, "encryption-public-key": b"short"})
    with pytest.raises(ProtocolError, match="expected a 'setup' message"):
        AdvertiseReply.from_fields({**fields, "secagg-stage": UNMASK})
    with pytest.raises(ProtocolError, match="session id"):
        AdvertiseReply.from_fields({**fields, "secagg-session": b"x"})
    unmask = PAYLOADS[-1].to_fields()
    with pytest.raises(ProtocolError, match="self-mask-shares"):
        UnmaskReply.from_fields({**unmask, "self-mask-shares": unmask["self-mask-shares"][:-1]})
    with pytest.raises(ProtocolError, match="lists a node twice"):
        UnmaskRequest.from_fields({**PAYLOADS[-2].to_fields(), "dropped": (2).to_bytes(8, "big") * 2})
    setup = PAYLOADS[0].to_fields()
    with pytest.raises(ProtocolError, match="quantization"):
        SetupRequest.from_fields({**setup, "rounding": "up"})


def test_header_check_refuses_other_rounds_and_sessions():
    header = _h(UNMASK)
    header.check(SESSION, 5)
    with pytest.raises(ProtocolError, match="round 5, this is round 6"):
        header.check(SESSION, 6)
    with pytest.raises(ProtocolError, match="another secure-aggregation session"):
        header.check(os.urandom(16), 5)
