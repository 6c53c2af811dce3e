"""The channels-last memory format: the network's weights and the batches reordered, the results the same."""

from __future__ import annotations

import copy

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import default_prepare_batch
from monai.losses import DiceCELoss
from monai.networks.nets import SegResNet

from conftest import TINY_INFERENCE_ARGS
from semcl_components.cascade import OrganRefinementInferer
from semcl_components.networks import batch_to_kwargs, network_on_device

CHANNELS_LAST = torch.channels_last_3d


def _segresnet() -> SegResNet:
    torch.manual_seed(0)
    return SegResNet(spatial_dims=3, in_channels=1, out_channels=3, init_filters=8, blocks_down=[1, 1], blocks_up=[1])


def test_network_weights_in_channels_last_same_module_same_output():
    contiguous = _segresnet()
    network = copy.deepcopy(contiguous)
    parameters = list(network.parameters())
    moved = network_on_device(network, "cpu", channels_last=True)
    assert moved is network and list(moved.parameters()) == parameters  # an optimizer built before still holds them
    weights = [p for p in moved.parameters() if p.dim() == 5]
    assert weights and all(w.is_contiguous(memory_format=CHANNELS_LAST) for w in weights)
    assert not all(w.is_contiguous() for w in weights)  # really reordered (a 1x1x1 kernel would be both)
    image = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        expected = contiguous(image)
        got = moved(image.to(**batch_to_kwargs(True)))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # the weights are the same values: a checkpoint of one loads into the other
    contiguous.load_state_dict(moved.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(contiguous.parameters(), moved.parameters()))
    assert all(w.is_contiguous(memory_format=CHANNELS_LAST) for w in weights)  # loading keeps the layout


def test_default_format_leaves_network_and_batches_alone():
    network = network_on_device(_segresnet(), "cpu", channels_last=False)
    assert all(p.is_contiguous() for p in network.parameters())
    assert batch_to_kwargs(False) == {}
    image, label = torch.rand(2, 1, 8, 8, 8), torch.zeros(2, 1, 8, 8, 8)
    got, _ = default_prepare_batch({"image": image, "label": label}, "cpu", **batch_to_kwargs(False))
    assert got is image


def test_trainer_batches_in_channels_last():
    # two channels (stage 2's [image, prior]): with one, both orders are the same strides
    image = torch.rand(2, 2, 8, 8, 8)
    prepared, label = default_prepare_batch({"image": image, "label": torch.zeros(2, 1, 8, 8, 8)}, "cpu",
                                            **batch_to_kwargs(True))
    assert prepared.is_contiguous(memory_format=CHANNELS_LAST) and not prepared.is_contiguous()
    assert torch.equal(prepared, image) and label.shape == (2, 1, 8, 8, 8)


def _train_losses(channels_last: bool, steps: int = 3) -> list[float]:
    """Losses of ``steps`` SupervisedTrainer steps (forward, DiceCE, backward, AdamW) on fixed batches."""
    network = network_on_device(_segresnet(), "cpu", channels_last=channels_last)
    generator = torch.Generator().manual_seed(1)
    batches = [{"image": torch.rand(2, 1, 16, 16, 16, generator=generator),
                "label": torch.randint(0, 3, (2, 1, 16, 16, 16), generator=generator).float()} for _ in range(steps)]
    losses: list[float] = []
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=batches, network=network,
                                optimizer=torch.optim.AdamW(network.parameters(), lr=1e-2),
                                loss_function=DiceCELoss(to_onehot_y=True, softmax=True), decollate=False,
                                to_kwargs=batch_to_kwargs(channels_last))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: losses.append(float(engine.state.output["loss"])))
    trainer.run()
    return losses


def test_training_steps_give_the_same_losses():
    contiguous, channels_last = _train_losses(False), _train_losses(True)
    assert len(contiguous) == 3 and contiguous[0] != contiguous[-1]  # the network learns between the steps
    # the same arithmetic in another memory order: equal up to the rounding of sums taken in another order
    assert max(abs(a - b) for a, b in zip(contiguous, channels_last)) < 1e-5


def test_organ_refinement_hands_its_crops_over_in_channels_last():
    torch.manual_seed(0)
    refine = SegResNet(spatial_dims=3, in_channels=2, out_channels=2, init_filters=8, blocks_down=[1, 1], blocks_up=[1])
    prior = torch.zeros(1, 1, 24, 24, 24)
    prior[0, 0, 4:12, 4:12, 4:12], prior[0, 0, 14:20, 12:22, 10:18] = 1, 2
    inputs = torch.cat([torch.rand(1, 1, 24, 24, 24), prior], dim=1)
    seen = []

    def recording(network):
        return lambda crops: seen.append(crops.is_contiguous(memory_format=CHANNELS_LAST)) or network(crops)

    scores = {}
    with torch.no_grad():
        for channels_last in (False, True):
            network = network_on_device(copy.deepcopy(refine).eval(), "cpu", channels_last=channels_last)
            inferer = OrganRefinementInferer(crop_size=(16, 16, 16), num_classes=3, channels_last=channels_last)
            scores[channels_last] = inferer(inputs, recording(network))
    assert seen == [False, True]  # both organs' crops in one call each time; reordered only when asked
    torch.testing.assert_close(scores[True], scores[False], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_inference_in_channels_last_writes_the_same_segmentations(run_bundle, phantom_dataset, trained_model, tmp_path):
    outputs = {}
    for channels_last in ("false", "true"):
        outputs[channels_last] = tmp_path / channels_last
        run_bundle(["inference"], ["--dataset_dir", phantom_dataset, "--ckpt_dir", trained_model.ckpt_dir,
                                   "--output_dir", outputs[channels_last], "--channels_last", channels_last,
                                   *TINY_INFERENCE_ARGS])
    written = sorted(path.name for path in outputs["false"].glob("*_seg.nii.gz"))
    assert written and written == sorted(path.name for path in outputs["true"].glob("*_seg.nii.gz"))
    for name in written:
        contiguous, channels_last = (np.asarray(nib.load(outputs[k] / name).dataobj) for k in ("false", "true"))
        assert np.array_equal(contiguous, channels_last)
