"""fedpriv.adapter_parts, the LoRA pieces of each personalization mode: key roles, split and merge,
the shared seeded A, rank pad/truncate, the strategy's config plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedpriv.adapter_parts import (
    adapter_rank,
    adapter_ranks,
    apply_shared_lora_A,
    lora_role,
    merge_adapter,
    module_name,
    pad_to_shapes,
    partner_key,
    plan_from_config,
    pop_strategy_config,
    resize_adapter,
    set_trainable_for_mode,
    shared_lora_A_init,
    split_adapter,
)
from tests.fakes import make_adapter

Q_A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
Q_B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
EMB_A = "base_model.model.model.embed_tokens.lora_embedding_A"
EMB_B = "base_model.model.model.embed_tokens.lora_embedding_B"


def _adapter_with_extras():
    sd = make_adapter(rank=4, seed=0)
    sd[EMB_A] = np.ones((4, 30), np.float32)
    sd[EMB_B] = np.ones((8, 4), np.float32)
    sd["base_model.model.lm_head.modules_to_save.default.weight"] = np.ones((3, 3), np.float32)
    return sd


def test_key_roles():
    assert lora_role(Q_A) == "A" and lora_role(Q_B) == "B"
    assert lora_role(EMB_A) == "A" and lora_role(EMB_B) == "B"
    assert lora_role("base_model.model.lm_head.weight") is None
    assert partner_key(Q_A) == Q_B and partner_key(EMB_B) == EMB_A
    assert module_name(Q_A) == "base_model.model.model.layers.0.self_attn.q_proj"


@pytest.mark.parametrize("mode", ["fedavg", "ffa", "hetlora", "fedsa"])
def test_split_partitions_the_adapter(mode):
    sd = _adapter_with_extras()
    shared, private = split_adapter(sd, mode)
    assert set(shared) | set(private) == set(sd) and not set(shared) & set(private)
    assert merge_adapter(private, shared).keys() == sd.keys()
    roles = {lora_role(k) for k in shared}
    if mode == "fedsa":
        assert roles == {"A"}  # B never in the shared part
        assert not any("lora_B" in k or "lora_embedding_B" in k for k in shared)
        assert {k for k in private if lora_role(k) == "B"} == {k for k in sd if lora_role(k) == "B"}
    elif mode == "ffa":
        assert "A" not in roles and "B" in roles
    else:
        assert {"A", "B"} <= roles


def test_shared_seeded_A_is_deterministic_and_nested():
    sd = make_adapter(rank=16, dim_in=32, seed=0)
    a1 = shared_lora_A_init(sd, seed=11)
    a2 = shared_lora_A_init({k: tuple(v.shape) for k, v in sd.items()}, seed=11)  # shapes only (server side)
    assert set(a1) == {k for k in sd if lora_role(k) == "A"}
    for key in a1:
        assert a1[key].dtype == np.float32
        assert np.array_equal(a1[key], a2[key])
        assert np.abs(a1[key]).max() <= 1 / np.sqrt(32)  # peft's kaiming_uniform(a=√5) bound
    other = shared_lora_A_init(sd, seed=12)
    assert not np.array_equal(a1[Q_A], other[Q_A])
    # Different modules get different matrices under the same seed.
    keys = list(a1)
    assert not np.array_equal(a1[keys[0]], a1[keys[1]])
    # Rank-4 A is the first 4 rows of rank-16 A.
    small = shared_lora_A_init(make_adapter(rank=4, dim_in=32), seed=11)
    assert np.array_equal(small[Q_A], a1[Q_A][:4])


def test_apply_shared_A_on_torch_state_dict_matches_server():
    from strategies.ffa import FFALora  # the server-side FFA uses the same function

    sd = {k: torch.from_numpy(v) for k, v in make_adapter(rank=4, seed=3).items()}
    client = apply_shared_lora_A(sd, seed=5)
    assert isinstance(client[Q_A], torch.Tensor) and client[Q_A].dtype == torch.float32
    assert torch.equal(client[Q_B], sd[Q_B])  # B untouched
    server = FFALora(a_seed=5)
    global_arrays = server.prepare_global({k: v.numpy() for k, v in sd.items()}, server_round=1)
    for key, value in client.items():
        if lora_role(key) == "A":
            assert np.array_equal(value.numpy(), global_arrays[key])


def test_pad_then_truncate_round_trips():
    sd = make_adapter(rank=4, seed=4)
    padded = resize_adapter(sd, 16)
    assert adapter_rank(padded) == 16 and adapter_rank(sd) == 4
    assert padded[Q_A].shape == (16, 12) and padded[Q_B].shape == (10, 16)
    assert not padded[Q_A][4:].any() and not padded[Q_B][:, 4:].any()
    back = resize_adapter(padded, 4)
    for key in sd:
        assert back[key].dtype == sd[key].dtype
        assert np.array_equal(back[key], sd[key])
    # Same ΔW. Not bit-equal: BLAS may sum the 16 (12 of them zero) products in another order than
    # the 4 (OpenBLAS picks its float32 kernel by CPU; AVX-512 machines differ in the last bit).
    np.testing.assert_allclose(padded[Q_B] @ padded[Q_A], sd[Q_B] @ sd[Q_A], rtol=1e-6, atol=1e-9)
    torch_sd = {k: torch.from_numpy(v) for k, v in sd.items()}
    torch_back = resize_adapter(resize_adapter(torch_sd, 8), 4)
    assert all(torch.equal(torch_back[k], torch_sd[k]) for k in sd)
    assert set(adapter_ranks(sd).values()) == {4}


def test_pad_to_shapes_zero_pads_a_lower_rank_update_and_refuses_anything_else():
    low, high = make_adapter(rank=2, seed=1), make_adapter(rank=6, seed=1)
    shapes = {k: v.shape for k, v in high.items()}
    padded = pad_to_shapes(low, shapes)
    for key, value in padded.items():
        assert value.shape == shapes[key]
        np.testing.assert_array_equal(resize_adapter({key: value}, 2)[key], low[key])  # the first r rows/columns
        assert not value[2:].any() if lora_role(key) == "A" else not value[:, 2:].any()  # zeros beyond rank 2
    with pytest.raises(ValueError, match="not part of the aggregated update"):
        pad_to_shapes({**low, "extra.weight": np.zeros(3)}, shapes)
    with pytest.raises(ValueError, match="has shape"):
        pad_to_shapes(high, {k: v.shape for k, v in low.items()})  # a rank above the target is no padding
    with pytest.raises(ValueError, match="has shape"):
        pad_to_shapes({Q_A: np.zeros((2, 5))}, {Q_A: (6, 12)})  # the input dimension never changes


def test_plan_from_config_and_pop_strategy_keys():
    values = {"lora-mode": "hetlora", "lora-rank": 4, "lora-alpha": 8.0, "lr": 0.1, "server-round": 2}
    plan = pop_strategy_config(values)
    assert plan.mode == "hetlora" and plan.rank == 4
    assert values == {"lora-rank": 4, "lora-alpha": 8.0, "lr": 0.1, "server-round": 2}
    ffa = plan_from_config({"lora-mode": "ffa", "lora-a-seed": 7, "lora-a-init": "gaussian", "lora-rank": 8})
    assert ffa.a_seed == 7 and ffa.a_init == "gaussian" and ffa.rank is None and not ffa.trains_A
    sd = make_adapter(rank=2)
    assert all(lora_role(k) == "B" for k in ffa.shared_part(sd))
    assert plan_from_config({}).mode == "fedavg"
    with pytest.raises(ValueError):
        plan_from_config({"lora-mode": "bogus"})


def test_set_trainable_for_mode_freezes_A_for_ffa():
    peft = pytest.importorskip("peft")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = torch.nn.Linear(8, 6)

        def forward(self, x):
            return self.q_proj(x)

    model = peft.get_peft_model(Tiny(), peft.LoraConfig(r=2, target_modules=["q_proj"]))
    set_trainable_for_mode(model, "ffa")
    flags = {n: p.requires_grad for n, p in model.named_parameters() if "lora_" in n}
    assert flags and all(not v for n, v in flags.items() if "lora_A" in n) and all(v for n, v in flags.items() if "lora_B" in n)
    set_trainable_for_mode(model, "fedsa")
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
