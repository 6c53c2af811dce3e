"""EncoderWarmup: the encoder's learning rate rises from 0 over the first epochs; the rest trains at full rate."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Engine
from monai.networks.nets import SegResNet

from semcl_components.bundle_runtime.handlers import EncoderWarmup
from semcl_components.networks import encoder_parameter_groups


def segresnet_optimizer(encoder_lr_multiplier: float = 1.0) -> torch.optim.Optimizer:
    net = SegResNet(spatial_dims=3, in_channels=1, out_channels=3, init_filters=8, blocks_down=(1, 1), blocks_up=(1,))
    return torch.optim.AdamW(encoder_parameter_groups(net, 1e-3, encoder_lr_multiplier), lr=1e-3)


def test_encoder_rate_ramps_linearly_over_the_warmup_iterations_and_the_rest_keeps_its_rate():
    optimizer = segresnet_optimizer(encoder_lr_multiplier=0.5)
    seen = []

    def step(engine, batch):
        seen.append([group["lr"] for group in optimizer.param_groups])

    engine = Engine(step)
    EncoderWarmup(optimizer, warmup_epochs=2).attach(engine)
    engine.run([0, 1], max_epochs=3)  # 2 iterations per epoch: the ramp spans 4 iterations
    encoder = [lr for lr, _ in seen]
    assert encoder == pytest.approx([0.0, 1.25e-4, 2.5e-4, 3.75e-4, 5e-4, 5e-4])
    assert [rest for _, rest in seen] == pytest.approx([1e-3] * 6)


def test_a_resumed_run_continues_the_ramp_from_its_iteration():
    optimizer = segresnet_optimizer()
    warmup = EncoderWarmup(optimizer, warmup_epochs=4)
    optimizer.param_groups[0]["lr"] = 123.0  # e.g. a checkpoint's optimizer state loaded after the handler was built
    warmup(SimpleNamespace(state=SimpleNamespace(iteration=3, epoch_length=1)))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 2 / 4)


def test_no_warmup_attaches_nothing_and_bad_settings_are_refused():
    optimizer = segresnet_optimizer()
    engine = Engine(lambda e, b: None)
    EncoderWarmup(optimizer, warmup_epochs=0).attach(engine)
    engine.run([0], max_epochs=1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match=">= 0"):
        EncoderWarmup(optimizer, warmup_epochs=-1)
    plain = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="no parameter group named 'encoder'.*encoder_parameter_groups"):
        EncoderWarmup(plain, warmup_epochs=3)
    EncoderWarmup(plain, warmup_epochs=0)  # nothing to warm up: accepted


def test_encoder_parameter_groups_are_named_for_the_warmup():
    groups = segresnet_optimizer().param_groups
    assert [g["name"] for g in groups] == ["encoder", "rest"]
