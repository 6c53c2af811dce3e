"""A frozen encoder (issue 37, recipe R4 and the `cascade_semcl_frozen` arm): `--encoder_freeze_epochs N` holds the
encoder's learning rate at 0 for the first N epochs, then the warm-up (if any) and the configured rate follow;
`--encoder_lr_multiplier 0` freezes it throughout. Frozen means bit-identical tensors, weight decay included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Engine
from monai.networks.nets import SegResNet

from conftest import BUNDLE_DIR, TINY_TRAIN_ARGS
from semcl_components.bundle_runtime.handlers import EncoderWarmup
from semcl_components.networks import ENCODER_PREFIXES
from test_bundle_conformance import parsed_settings
from test_encoder_warmup import segresnet_optimizer


def _rates(schedule: EncoderWarmup, optimizer: torch.optim.Optimizer, epochs: int) -> list[list[float]]:
    """The encoder's and the rest's learning rate at every iteration of a run of 2 iterations per epoch."""
    seen = []
    engine = Engine(lambda e, b: seen.append([group["lr"] for group in optimizer.param_groups]))
    schedule.attach(engine)
    engine.run([0, 1], max_epochs=epochs)
    return seen


def test_the_encoder_rate_is_zero_for_the_frozen_epochs_then_as_configured():
    optimizer = segresnet_optimizer(encoder_lr_multiplier=0.5)
    seen = _rates(EncoderWarmup(optimizer, freeze_epochs=2), optimizer, epochs=4)
    assert [encoder for encoder, _ in seen] == pytest.approx([0.0] * 4 + [5e-4] * 4)
    assert [rest for _, rest in seen] == pytest.approx([1e-3] * 8)  # the decoder trains at full rate throughout


def test_the_warmup_starts_after_the_freeze():
    optimizer = segresnet_optimizer()
    seen = _rates(EncoderWarmup(optimizer, warmup_epochs=2, freeze_epochs=1), optimizer, epochs=4)
    # epoch 1 frozen (iterations 1-2), then the ramp over 4 iterations from 0, then the full rate
    assert [encoder for encoder, _ in seen] == pytest.approx([0.0, 0.0, 0.0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


def test_a_resumed_run_continues_the_freeze_and_the_ramp_from_its_iteration():
    from types import SimpleNamespace

    optimizer = segresnet_optimizer()
    schedule = EncoderWarmup(optimizer, warmup_epochs=2, freeze_epochs=3)
    optimizer.param_groups[0]["lr"] = 123.0  # a checkpoint's optimizer state loaded after the handler was built
    # 3 frozen epochs: iterations 1-6; the ramp: iterations 7-11 (0 to the full rate); resumed in any order
    for iteration, rate in ((3, 0.0), (6, 0.0), (7, 0.0), (9, 5e-4), (11, 1e-3), (30, 1e-3), (8, 2.5e-4)):
        schedule(SimpleNamespace(state=SimpleNamespace(iteration=iteration, epoch_length=2)))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(rate), iteration


def test_negative_freeze_epochs_and_a_freeze_without_an_encoder_group_are_refused():
    with pytest.raises(ValueError, match="encoder freeze epochs must be >= 0, got -1"):
        EncoderWarmup(segresnet_optimizer(), freeze_epochs=-1)
    plain = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no parameter group named 'encoder'"):
        EncoderWarmup(plain, freeze_epochs=2)


def test_the_train_workflow_passes_the_freeze_to_the_schedule(phantom_dataset):
    values = parsed_settings(BUNDLE_DIR, "train.yaml", ("train#handlers", "optimizer"),
                             dataset_dir=str(phantom_dataset), encoder_freeze_epochs=4, init_filters=8)
    (schedule,) = [h for h in values["train#handlers"] if isinstance(h, EncoderWarmup)]
    assert (schedule.freeze_epochs, schedule.warmup_epochs) == (4, 0) and schedule.optimizer is values["optimizer"]


# ---- short fine-tuning runs: the encoder's tensors, bit for bit ----

def _is_encoder(key: str) -> bool:
    return key.split(".")[0] in ENCODER_PREFIXES


def _pretrained_encoder(path: Path) -> dict[str, torch.Tensor]:
    """A tiny segmentation network's weights as the pretrained file (its encoder part loads whole)."""
    torch.manual_seed(3)
    network = SegResNet(spatial_dims=3, in_channels=1, out_channels=9, init_filters=8, blocks_down=(1, 1, 1),
                        blocks_up=(1, 1))
    state = network.state_dict()
    torch.save({"model": state}, path)
    return {k: v for k, v in state.items() if _is_encoder(k)}


def _finetune(run_bundle, phantom_dataset: Path, tmp_path: Path, epochs: int, *settings) -> list[dict]:
    """Fine-tune from the pretrained file, weight decay raised so that any decay of a frozen tensor shows; the
    network's weights after each epoch (``--snapshot_interval 1``) and the pretrained encoder."""
    encoder = _pretrained_encoder(tmp_path / "pretrained.pt")
    args = ["--dataset_dir", phantom_dataset, "--pretrained_encoder", tmp_path / "pretrained.pt",
            "--ckpt_dir", tmp_path / "models", "--output_dir", tmp_path / "eval", "--max_epochs", str(epochs),
            "--val_interval", str(epochs), "--snapshot_interval", "1", "--learning_rate", "0.01",
            "--optimizer#weight_decay", "0.5", *settings, *TINY_TRAIN_ARGS]
    run_bundle(["train"], args)
    snapshots = []
    for epoch in range(1, epochs + 1):
        (file,) = (tmp_path / "models" / "snapshots").glob(f"snapshot_*epoch={epoch}.pt")
        state = torch.load(file, weights_only=True)
        snapshots.append(state.get("model", state))  # the network's state dict (ignite unwraps a single object)
    return [encoder, *snapshots]


def _same(a: dict, b: dict, encoder: bool) -> bool:
    """Whether every encoder (or every other) tensor of two weight sets is bit-identical."""
    keys = [k for k in b if _is_encoder(k) == encoder and b[k].is_floating_point()]
    assert keys
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_frozen_epochs_leave_the_encoder_bit_identical_while_the_decoder_trains(run_bundle, phantom_dataset, tmp_path):
    pretrained, first, second, third = _finetune(run_bundle, phantom_dataset, tmp_path, 3, "--encoder_freeze_epochs", "2")
    assert _same(pretrained, first, encoder=True) and _same(pretrained, second, encoder=True)
    assert not _same(first, second, encoder=False)  # the decoder learned during the second frozen epoch
    assert not _same(second, third, encoder=True)  # and the encoder after the freeze


def test_multiplier_zero_leaves_every_encoder_tensor_bit_identical(run_bundle, phantom_dataset, tmp_path):
    pretrained, first, second = _finetune(run_bundle, phantom_dataset, tmp_path, 2, "--encoder_lr_multiplier", "0")
    assert _same(pretrained, first, encoder=True) and _same(pretrained, second, encoder=True)
    assert not _same(first, second, encoder=False)
