"""Stage 2 of the cascade: organ-centred refinement stitched into one label map, and the channel encoder's transfer."""

from __future__ import annotations

import logging

import torch
from monai.data import MetaTensor
from monai.networks.nets import SegResNet

from semcl_components.cascade import CascadeInferer, OrganRefinementInferer, stitch_scores
from semcl_components.networks import build_encoder, load_pretrained_encoder
from semcl_components.transforms import RandCoarseMask


def _truth() -> torch.Tensor:
    label = torch.zeros(40, 40, 32, dtype=torch.long)
    label[6:12, 6:14, 5:10] = 1
    label[16:34, 12:32, 8:26] = 2
    return label


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def oracle_from_image(crops: torch.Tensor) -> torch.Tensor:
    """A 'refinement network' that reads the organ from the image channel inside the prior's neighbourhood: logits
    (background, organ) = (0.5, image): the image holds the true organ as 1 inside the crop's object. Stands in for a
    trained stage 2 to test the geometry end to end."""
    image = crops[:, :1]
    return torch.cat([torch.full_like(image, 0.5), image], dim=1) * 20.0


def test_stitching_keeps_the_prior_outside_the_crops_and_the_refined_organ_inside():
    prior = torch.tensor([[1, 1, 2, 2, 0, 3]])
    covered = torch.tensor([[True, True, True, False, False, False]])
    refined = {
        1: (torch.tensor([[0.9, 0.2, 0.7, 0.0, 0.0, 0.0]]), covered),
        2: (torch.tensor([[0.1, 0.1, 0.6, 0.0, 0.0, 0.0]]), covered),
    }
    labels = stitch_scores(prior, refined, num_classes=4).argmax(0)
    # voxel 0: organ 1 (0.9); voxel 1: nothing above 0.5 -> background; voxel 2: the higher of 0.7 and 0.6;
    # voxels 3-5: not covered -> the prior's 2, 0, 3
    assert labels.tolist() == [[1, 0, 1, 2, 0, 3]]


def test_refinement_recovers_the_truth_from_a_coarse_prior():
    truth = _truth()
    simulator = RandCoarseMask(
        coarsen=2, max_radius=2, smooth_sigma=1.0, drop_prob=1.0, max_drop_fraction=0.2, max_shift=1
    )
    simulator.set_random_state(0)
    prior = simulator(truth[None])[0]
    # the image channel holds the truth of the organ whose crop it is; one organ per image: run each organ alone
    inferer = OrganRefinementInferer(crop_size=(32, 32, 32), num_classes=3, margin=0.4)
    for organ in (1, 2):
        image = (truth == organ).float()[None]
        prior_k = torch.where(prior == organ, prior, torch.zeros_like(prior))
        inputs = MetaTensor(torch.cat([image, prior_k[None].float()])[None], affine=torch.eye(4))
        labels = inferer(inputs, oracle_from_image).argmax(1)[0]
        assert _dice(labels == organ, truth == organ) > 0.95 > _dice(prior == organ, truth == organ)


def test_cascade_output_has_the_input_grid_and_every_prior_organ(caplog):
    truth = _truth()
    network = SegResNet(
        spatial_dims=3, in_channels=2, out_channels=2, init_filters=8, blocks_down=(1, 1), blocks_up=(1,)
    ).eval()
    inferer = OrganRefinementInferer(
        crop_size=(16, 16, 16), num_classes=4, batch_size=1, class_names=["spleen", "liver", "aorta"]
    )
    inputs = torch.cat([torch.rand(1, 40, 40, 32), truth[None].float()])[None]
    with caplog.at_level(logging.WARNING), torch.no_grad():
        scores = inferer(inputs, network)
    assert scores.shape == (1, 4, 40, 40, 32)
    assert "the prior has no aorta" in caplog.text  # organ 3 absent from the prior: named in the log
    with torch.no_grad():
        refined = inferer.refine(inputs[0, :1], truth[None], (1.0, 1.0, 1.0), network)
    assert sorted(refined) == [1, 2]
    covered = refined[1][1] | refined[2][1]
    labels = scores[0].argmax(0)
    assert (~covered).any() and torch.equal(labels[~covered], truth[~covered])  # the prior outside every crop
    assert set(labels[covered].unique().tolist()) <= {0, 1, 2}  # refined voxels: background or a cropped organ


def test_channel_encoder_loads_whole_into_the_refinement_network():
    """A channel-mode encoder (image + mask) transfers into stage 2 (input [image, prior of organ k]) with every
    tensor, the mask channel's first-layer weights included."""
    encoder = build_encoder(
        "segresnet", image_channels=1, embedding_mode="channel", init_filters=8, blocks_down=(1, 1, 1)
    )
    network = SegResNet(
        spatial_dims=3, in_channels=2, out_channels=2, init_filters=8, blocks_down=(1, 1, 1), blocks_up=(1, 1)
    )
    report = load_pretrained_encoder(network, encoder.state_dict())
    assert report.loaded_fraction == 1.0 and not report.adapted and not report.skipped
    assert torch.equal(network.convInit.conv.weight[:, 1], encoder.convInit.conv.weight[:, 1])  # the mask channel


def test_cascade_runs_stage_1_on_its_coarser_grid_unless_a_prior_is_given():
    truth = _truth()
    seen = []

    def stage1(image: torch.Tensor) -> torch.Tensor:  # a 'network' that returns the truth, one-hot, at its grid
        seen.append(tuple(image.shape))
        small = torch.nn.functional.interpolate(truth[None, None].float(), size=image.shape[2:], mode="nearest")
        return torch.nn.functional.one_hot(small[0, 0].long(), 3).permute(3, 0, 1, 2)[None].float()

    refine = OrganRefinementInferer(crop_size=(24, 24, 24), num_classes=3, margin=0.4)
    cascade = CascadeInferer(lambda x, net: net(x), refine, torch.nn.Identity(), image_channels=1, stage1_scale=0.5)
    image = torch.cat([(truth > 0).float()[None]])[None]  # the oracle below reads the organ from the image
    labels = cascade(image, stage1).argmax(1)[0]
    assert seen == [(1, 1, 20, 20, 16)]  # stage 1 saw the image at half the resolution
    assert labels.shape == truth.shape and set(labels.unique().tolist()) == {0, 1, 2}
    cascade.refine_network = oracle_from_image
    with_prior = torch.cat([image, truth[None, None].float()], dim=1)
    labels = cascade(with_prior, stage1).argmax(1)[0]
    assert len(seen) == 1  # a given prior: no stage 1
    assert _dice(labels == 2, truth == 2) > 0.95


def test_cascade_stage_1_sees_the_grid_the_stage_1_workflows_spacing_makes():
    """Before: stage 1 got the image by F.interpolate, its voxels half a coarse voxel off the Spacingd grid it was
    trained on (1.4 mm at 2.8125 -> 5.625 mm)."""
    from monai.transforms import Spacing

    image = torch.arange(40.0).reshape(1, 1, 40, 1, 1).expand(1, 1, 40, 8, 6).clone()  # value = voxel index along x
    seen = []

    def stage1(coarse: torch.Tensor) -> torch.Tensor:  # organ 1 where the image (a position) is at least 20
        seen.append(coarse)
        organ = (coarse[:, 0] >= 20).float()
        return torch.stack([1 - organ, organ], dim=1)

    cascade = CascadeInferer(
        lambda x, net: net(x), OrganRefinementInferer(crop_size=(8, 8, 8), num_classes=2), None, stage1_scale=0.5
    )
    labels = cascade(image, stage1).argmax(1)[0]
    spaced = Spacing(pixdim=(2.0, 2.0, 2.0), mode="bilinear", padding_mode="border")(
        MetaTensor(image[0], affine=torch.eye(4))
    )
    assert torch.equal(seen[0][0], spaced.as_tensor())  # what inference.yaml's Spacingd gives stage 1
    assert torch.allclose(seen[0][0, 0, :, 0, 0], torch.arange(0.0, 40.0, 2.0), atol=1e-4)  # coarse i on input 2i
    assert torch.equal(labels, (image[0, 0] >= 20).long())  # back on the input's grid without a shift


def test_cascade_without_stage_2_scores_stage_1_alone():
    truth = _truth()
    refine = OrganRefinementInferer(crop_size=(16, 16, 16), num_classes=3)
    cascade = CascadeInferer(lambda x, net: net(x), refine, None, image_channels=1)
    with_prior = torch.cat([torch.rand(1, 1, 40, 40, 32), truth[None, None].float()], dim=1)
    scores = cascade(with_prior, None)
    assert scores.shape == (1, 3, 40, 40, 32) and torch.equal(scores.argmax(1)[0], truth)
