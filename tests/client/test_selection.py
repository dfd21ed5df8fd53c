"""Model selection without record-level DP (client.selection): early stopping and λ chosen on a
validation slice of the train split, never on the held-out split, and never under DP."""

from __future__ import annotations


import pytest
import torch
from safetensors.torch import load_file

from client.dp_training import encode, evaluate, mean_nll, token_log_probs, train_locally
from client.interpolation import mixture_loss
from client.personalize import personalize, total_local_epochs, train_from_scratch_selected, validation_split
from client.selection import WEIGHT_GRID, choose_global_weight, selection_active, split_for_validation, train_with_early_stopping
from fedpriv.config import RunConfig
from fedpriv.data import split_records
from fedpriv.errors import ConfigError, DataError
from fedpriv.modeling import adapter_state, load_adapter_state, load_tokenizer
from simulations.synthetic import generate_federation

MODEL = "default"


def _config(**overrides) -> RunConfig:
    values = dict(model=MODEL, rounds=1, local_epochs=1, finetune_epochs=2, batch_size=8, max_seq_len=24,
                  learning_rate=2e-2, dp="none", seed=0)
    values.update(overrides)
    return RunConfig(**values).validated()


@pytest.fixture(scope="module")
def client_data():
    texts = generate_federation("phone", 1, 60, seed=3)
    client_id, records = next(iter(texts.items()))
    split = split_records(client_id, records, 0.5, 0)
    tokenizer = load_tokenizer(MODEL)
    return client_id, encode(tokenizer, split.train, 24), encode(tokenizer, split.held_out, 24), encode(tokenizer, split.train[:10], 24)


def _rows(dataset) -> set[tuple[int, ...]]:
    return {tuple(row.tolist()) for row in dataset.tensors[0]}


def test_active_only_without_record_dp_and_with_a_fraction():
    assert selection_active(_config())
    assert not selection_active(_config(validation_fraction=0.0))
    assert not selection_active(_config(dp="record", target_epsilon=4.0, accountant="rdp"))
    assert selection_active(_config(dp="client"))  # client-level DP protects what is sent, not the device's own choices
    with pytest.raises(ConfigError, match="validation-fraction"):
        _config(validation_fraction=1.0)


def test_validation_slice_is_a_seeded_disjoint_part_of_the_train_split(client_data):
    _, train, _, _ = client_data
    fit, validation = split_for_validation(train, 0.2, seed=5)
    assert len(validation) == round(len(train) * 0.2) and len(fit) + len(validation) == len(train)
    assert _rows(fit) | _rows(validation) == _rows(train) and not _rows(fit) & _rows(validation)
    again_fit, again_validation = split_for_validation(train, 0.2, seed=5)
    assert torch.equal(again_validation.tensors[0], validation.tensors[0])
    assert not torch.equal(split_for_validation(train, 0.2, seed=6)[1].tensors[0], validation.tensors[0])
    single = torch.utils.data.TensorDataset(*(t[:1] for t in train.tensors))
    with pytest.raises(DataError, match="at least 2"):
        split_for_validation(single, 0.2, seed=0)


def test_early_stopping_keeps_the_epoch_best_on_validation(models, client_data):
    """Replays the same seeded training without stopping: the kept model is the argmin of the
    validation curve (epoch 0 = the starting model), and its loss is what was reported."""
    _, train, _, _ = client_data
    config = _config(learning_rate=8e-2)  # high enough that the curve turns up within a few epochs
    fit, validation = split_for_validation(train, 0.25, seed=1)
    max_epochs = 8

    replay = models.lora_model(config)
    curve = [mean_nll(token_log_probs(replay, validation))]
    train_locally(replay, fit, config, None, seed=3, epochs=max_epochs,
                  after_epoch=lambda epoch: curve.append(mean_nll(token_log_probs(replay, validation))) or False)
    assert len(curve) == max_epochs + 1

    model = models.lora_model(config)
    stopped = train_with_early_stopping(model, fit, validation, config, seed=3, max_epochs=max_epochs, patience=max_epochs)
    best = min(range(len(curve)), key=curve.__getitem__)
    assert stopped.epochs == best and stopped.epochs_run == max_epochs
    assert stopped.validation_loss == pytest.approx(curve[best], rel=1e-6)
    assert mean_nll(token_log_probs(model, validation)) == pytest.approx(curve[best], rel=1e-6)  # left at that epoch

    # With a short patience it stops `patience` epochs after the best one seen so far.
    short = train_with_early_stopping(models.lora_model(config), fit, validation, config, seed=3, max_epochs=max_epochs, patience=1)
    first_rise = next((e for e in range(1, len(curve)) if curve[e] >= min(curve[:e])), None)
    if first_rise is not None:
        assert short.epochs_run == first_rise and short.epochs == min(range(first_rise), key=curve.__getitem__)


def test_no_epoch_callback_and_no_early_stopping_under_record_dp(models, client_data):
    _, train, _, _ = client_data
    config = _config(dp="record", target_epsilon=4.0, accountant="rdp")
    with pytest.raises(ValueError, match="record-level DP"):
        train_locally(models.lora_model(config), train, config, None, seed=0, epochs=1, after_epoch=lambda epoch: False)
    with pytest.raises(ValueError, match="record-level DP"):
        train_with_early_stopping(models.lora_model(config), train, train, config, seed=0, max_epochs=1)


def test_chosen_weight_minimizes_the_validation_mixture_loss():
    generator = torch.Generator().manual_seed(0)
    good = -torch.rand(200, generator=generator) * 0.5  # log-probs near 0: a confident, right model
    bad = -1.0 - torch.rand(200, generator=generator) * 3.0
    assert choose_global_weight(good, bad) == 1.0  # the global model is better everywhere
    assert choose_global_weight(bad, good) == 0.0
    halves_global = torch.cat([good[:100], bad[100:]])
    halves_private = torch.cat([bad[:100], good[100:]])
    weight = choose_global_weight(halves_global, halves_private)
    assert 0.0 < weight < 1.0  # each is right on half the tokens: the mixture beats either alone
    losses = {w: mixture_loss(halves_global, halves_private, w) for w in WEIGHT_GRID}
    assert losses[weight] == min(losses.values())


def test_personalize_chooses_on_the_train_split_only(models, client_data, tmp_path):
    """Swapping the held-out split changes the reported perplexity but not one choice: epochs,
    λ and the fine-tuned adapter depend on the train split alone."""
    client_id, train, held_out, other_held_out = client_data
    config = _config()
    model = models.lora_model(config)
    generator = torch.Generator().manual_seed(0)
    global_state = {k: v + 0.02 * torch.randn(v.shape, generator=generator) if "lora_B" in k else v for k, v in adapter_state(model).items()}
    runs = []
    for i, evaluation in enumerate((held_out, other_held_out)):
        path = tmp_path / f"adapter-{i}.safetensors"
        result = personalize(models, config, "fedavg", client_id, global_state, tmp_path, train, evaluation, save_adapter=path)
        runs.append((result, path.read_bytes()))
    (first, first_bytes), (second, second_bytes) = runs
    assert first.selected_on_validation and second.selected_on_validation
    assert first.global_weight in WEIGHT_GRID and first.global_weight == second.global_weight
    assert 0 <= first.finetuned.epochs <= total_local_epochs(config) and first.finetuned.epochs == second.finetuned.epochs
    assert first_bytes == second_bytes
    assert first.finetuned.perplexity != pytest.approx(second.finetuned.perplexity, rel=1e-6)

    fixed = personalize(models, config, "fedavg", client_id, global_state, tmp_path, train, held_out, global_weight=0.5)
    assert fixed.global_weight == 0.5 and fixed.finetuned.epochs == first.finetuned.epochs


def test_private_model_is_the_better_on_validation_of_fine_tuned_and_from_scratch(models, client_data, tmp_path):
    """A global start that hurts the device (a wrecked lora_B) loses on validation to the adapter
    trained from scratch on the same fit / validation slices: that one becomes the private model.
    Starting from that very adapter instead, fine-tuning can only match or beat it on validation, so
    the fine-tuned model is kept (ties go to the federated side)."""
    client_id, train, held_out, _ = client_data
    config = _config()
    generator = torch.Generator().manual_seed(0)
    fresh = adapter_state(models.lora_model(config))
    wrecked = {k: v + 1.0 * torch.randn(v.shape, generator=generator) if "lora_B" in k else v for k, v in fresh.items()}
    path = tmp_path / "private.safetensors"
    hurt = personalize(models, config, "fedavg", client_id, wrecked, tmp_path, train, held_out, save_adapter=path)
    assert hurt.private_model == "from_scratch"
    scratch, stopped = train_from_scratch_selected(models, config, client_id, *validation_split(config, client_id, train))
    scratch_loss, _ = evaluate(scratch, held_out)
    private_state = load_file(str(path))
    kept = models.lora_model(config)
    load_adapter_state(kept, private_state)
    assert evaluate(kept, held_out)[0] == pytest.approx(scratch_loss, rel=1e-6)  # the saved private adapter is that model
    assert hurt.interpolated.epochs == stopped.epochs
    # the mixture is the federated model's and the private model's, with the chosen λ
    assert hurt.interpolated.loss <= max(hurt.federated.loss, scratch_loss)
    if hurt.global_weight == 0.0:
        assert hurt.interpolated.loss == pytest.approx(scratch_loss, rel=1e-6)

    helped = personalize(models, config, "fedavg", client_id, private_state, tmp_path, train, held_out)
    assert helped.private_model == "finetuned"

    # handing over the from-scratch outcome (saves training it twice) changes nothing
    reused = personalize(models, config, "fedavg", client_id, wrecked, tmp_path, train, held_out, from_scratch=stopped)
    assert (reused.private_model, reused.global_weight, reused.interpolated.epochs) == (hurt.private_model, hurt.global_weight, hurt.interpolated.epochs)
    assert reused.interpolated.loss == pytest.approx(hurt.interpolated.loss, rel=1e-9)
