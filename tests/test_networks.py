"""Tests of semcl_components.networks: encoders, object embedding, encoder transfer."""

from __future__ import annotations

import logging
import re

import pytest
import torch
import torch.nn as nn
from monai.networks.nets import SegResNet, SwinUNETR

from semcl_components.networks import (
    EncoderLoadReport,
    ObjectEmbeddingModel,
    ProjectionHead,
    SegResNetEncoder,
    SwinUNETREncoder,
    build_encoder,
    load_pretrained_encoder,
    masked_average_pool,
)

SMALL_SEGRESNET = {"init_filters": 8, "blocks_down": (1, 1, 1)}  # 3 stages: 32 channels at S / 4


pytestmark = pytest.mark.usefixtures("deterministic")


def small_encoder(in_channels: int = 1, spatial_dims: int = 3) -> SegResNetEncoder:
    return SegResNetEncoder(spatial_dims=spatial_dims, in_channels=in_channels, **SMALL_SEGRESNET)


def small_segresnet(in_channels: int = 1) -> SegResNet:
    return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=3, **SMALL_SEGRESNET)


def small_model(mode: str) -> ObjectEmbeddingModel:
    encoder = small_encoder(2 if mode == "channel" else 1)
    return ObjectEmbeddingModel(encoder, embedding_mode=mode, hidden_dim=16, projection_dim=8)


def box_mask(shape, lo, hi) -> torch.Tensor:
    mask = torch.zeros(shape)
    mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = 1.0
    return mask


def random_masks(k: int, size: int = 16) -> torch.Tensor:
    return (torch.rand(k, size, size, size) > 0.5).float()


# ----------------------------------------------------------------------------------------------- encoders


def test_segresnet_encoder_output_shape_3d():
    enc = small_encoder()
    out = enc(torch.rand(2, 1, 16, 16, 16))
    assert enc.out_channels == 32
    assert out.shape == (2, 32, 4, 4, 4)


def test_segresnet_encoder_output_shape_2d():
    enc = SegResNetEncoder(spatial_dims=2, in_channels=3, init_filters=8)  # default 4 stages: S / 8
    out = enc(torch.rand(2, 3, 32, 32))
    assert enc.out_channels == 64
    assert out.shape == (2, 64, 4, 4)


def test_segresnet_encoder_equals_segresnet_encode():
    net = SegResNet(spatial_dims=3, in_channels=1, out_channels=2, init_filters=8, dropout_prob=0.2).eval()
    enc = SegResNetEncoder(spatial_dims=3, in_channels=1, init_filters=8, dropout_prob=0.2).eval()
    enc.load_state_dict({k: v for k, v in net.state_dict().items() if k in enc.state_dict()})
    x = torch.rand(1, 1, 16, 16, 16)
    torch.testing.assert_close(enc(x), net.encode(x)[0])


def test_swinunetr_encoder_output_shape():
    enc = SwinUNETREncoder(spatial_dims=3, in_channels=1, feature_size=12)
    out = enc(torch.rand(1, 1, 32, 32, 32))
    assert enc.out_channels == 16 * 12
    assert out.shape == (1, 192, 1, 1, 1)


def test_swinunetr_encoder_rejects_size_not_divisible_by_32():
    enc = SwinUNETREncoder(feature_size=12)
    with pytest.raises(ValueError, match=r"divisible.*\(1, 1, 24, 32, 32\)"):
        enc(torch.rand(1, 1, 24, 32, 32))


def test_build_encoder_by_name_and_unknown_name_lists_choices():
    encoder = build_encoder("SegResNet", embedding_mode="channel", init_filters=8)
    assert isinstance(encoder, SegResNetEncoder) and encoder.in_channels == 2  # image + mask
    with pytest.raises(ValueError, match=r"'unet'.*\['segresnet', 'swinunetr'\]"):
        build_encoder("unet")


def test_segresnet_encoder_weights_transfer_into_full_segresnet():
    enc, net = small_encoder(), small_segresnet()
    report = load_pretrained_encoder(net, enc.state_dict())
    assert sorted(report.loaded) == sorted(enc.state_dict())
    assert report.missing == [] and report.skipped == [] and report.unexpected == []
    for key, value in enc.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


def test_swinunetr_encoder_weights_transfer_into_full_swinunetr():
    enc = SwinUNETREncoder(feature_size=12)
    net = SwinUNETR(in_channels=1, out_channels=2, feature_size=12)
    report = load_pretrained_encoder(net, enc.state_dict())
    assert sorted(report.loaded) == sorted(enc.state_dict())
    assert report.missing == [] and report.skipped == []
    for key, value in enc.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


# ----------------------------------------------------------------------------------------- object embedding


def test_projection_head_shape_and_single_sample_in_train_mode():
    head = ProjectionHead(32, 16, 8).train()
    assert head(torch.rand(1, 32)).shape == (1, 8)
    assert head(torch.rand(5, 32)).shape == (5, 8)


@pytest.mark.parametrize("mode", ["pool", "channel"])
def test_variable_objects_per_item_give_unit_embeddings(mode):
    model = small_model(mode)
    masks = [random_masks(3), random_masks(0), random_masks(1)]
    out = model(torch.rand(3, 1, 16, 16, 16), masks)
    assert out.shape == (4, 8)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))


@pytest.mark.parametrize("mode", ["pool", "channel"])
def test_no_objects_gives_empty_embedding_connected_to_encoder(mode):
    model = small_model(mode)
    out = model(torch.rand(2, 1, 16, 16, 16), [random_masks(0), random_masks(0)])
    assert out.shape == (0, 8)
    out.sum().backward()
    assert model.encoder.convInit.conv.weight.grad is not None


@pytest.mark.parametrize("mode", ["pool", "channel"])
def test_outputs_are_batch_major_and_follow_object_order(mode):
    model = small_model(mode)
    model.eval()
    image, masks = torch.rand(2, 1, 16, 16, 16), [random_masks(3), random_masks(2)]
    out = model(image, masks)
    per_item = torch.cat([model(image[b : b + 1], [masks[b]]) for b in range(2)])
    torch.testing.assert_close(out, per_item, atol=1e-5, rtol=1e-4)
    perm = torch.tensor([2, 0, 1])
    permuted = model(image, [masks[0][perm], masks[1]])
    torch.testing.assert_close(permuted[:3], out[perm], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(permuted[3:], out[3:], atol=1e-5, rtol=1e-4)


def test_pool_mode_runs_encoder_once_and_gradient_reaches_it():
    model = ObjectEmbeddingModel(small_encoder(), embedding_mode="pool", hidden_dim=16, projection_dim=8)
    calls = []
    model.encoder.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    out = model(torch.rand(2, 1, 16, 16, 16), [random_masks(4), random_masks(3)])
    (out[:, 0] - out[:, 1]).pow(2).sum().backward()
    assert calls == [torch.Size([2, 1, 16, 16, 16])]
    assert model.encoder.convInit.conv.weight.grad.abs().sum() > 0


def test_pool_mode_feature_norm_removes_encoder_scale():
    encoder = small_encoder()
    scaled = nn.Sequential(encoder, nn.Identity())
    scaled.out_channels = encoder.out_channels
    scaled.register_forward_hook(lambda module, args, output: output * 8.0)
    image, masks = torch.rand(1, 1, 16, 16, 16), [random_masks(2)]
    for norm, should_match in ((True, True), ("instance", True), (False, False)):
        plain = ObjectEmbeddingModel(encoder, feature_norm=norm).eval().embed_objects(image, masks)
        grown = ObjectEmbeddingModel(scaled, feature_norm=norm).eval().embed_objects(image, masks)
        assert torch.allclose(plain, grown, atol=1e-4) == should_match, norm


def test_masked_average_pool_area_averages_the_mask():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    top_left = box_mask((4, 4), (0, 0), (2, 2))
    top_left_and_half_right = box_mask((4, 4), (0, 0), (2, 3))
    pooled = masked_average_pool(features, torch.stack([top_left, top_left_and_half_right])[None])
    torch.testing.assert_close(pooled[0, :, 0], torch.tensor([1.0, (4 * 1 + 2 * 2) / 6]), atol=1e-5, rtol=0)


def test_channel_mode_batches_objects_in_one_object_centred_crop_call():
    model = ObjectEmbeddingModel(small_encoder(2), embedding_mode="channel", object_crop_size=(8, 8, 8), hidden_dim=16)
    inputs = []
    model.encoder.register_forward_hook(lambda module, args, output: inputs.append(args[0]))
    inside = box_mask((16, 16, 16), (5, 5, 5), (9, 9, 9))  # centre 6.5: window [3, 11)
    corner = box_mask((16, 16, 16), (0, 0, 0), (2, 2, 2))  # clipped to [0, 8)
    image = torch.arange(16.0).reshape(1, 1, 16, 1, 1).expand(2, 1, 16, 16, 16)
    model(image, [torch.stack([inside]), torch.stack([corner])])
    assert len(inputs) == 1 and inputs[0].shape == (2, 2, 8, 8, 8)
    assert inputs[0][0, 1].sum() == inside.sum() and inputs[0][1, 1].sum() == corner.sum()
    assert inputs[0][0, 0, :, 0, 0].tolist() == list(range(3, 11))
    assert inputs[0][1, 0, :, 0, 0].tolist() == list(range(0, 8))


def test_channel_mode_rejects_encoder_with_wrong_input_channels():
    model = ObjectEmbeddingModel(small_encoder(1), embedding_mode="channel")
    with pytest.raises(ValueError, match=r"= 2 channels.*in_channels = 1"):
        model(torch.rand(1, 1, 16, 16, 16), [random_masks(1)])


def test_mask_count_and_shape_are_validated():
    model = ObjectEmbeddingModel(small_encoder(), embedding_mode="pool")
    image = torch.rand(2, 1, 16, 16, 16)
    with pytest.raises(ValueError, match="1 mask tensors for a batch of 2"):
        model(image, [random_masks(1)])
    with pytest.raises(ValueError, match=re.escape("got (1, 8, 16, 16)")):
        model(image, [random_masks(1), torch.zeros(1, 8, 16, 16)])


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="'patch'"):
        ObjectEmbeddingModel(small_encoder(), embedding_mode="patch")


# ------------------------------------------------------------------------------------------ encoder transfer


def test_object_embedding_checkpoint_loads_encoder_and_reports_head_unexpected(caplog):
    model = ObjectEmbeddingModel(small_encoder(), hidden_dim=16, projection_dim=8)
    net = small_segresnet()
    with caplog.at_level(logging.INFO, logger="semcl_components.networks"):
        report = load_pretrained_encoder(net, model.state_dict())
    assert sorted(report.loaded) == sorted(model.encoder.state_dict())
    assert report.missing == [] and report.skipped == []
    assert report.unexpected and all(k.startswith("projection.") for k in report.unexpected)
    assert "loaded" in caplog.text and f"{len(report.unexpected)} unexpected" in caplog.text


def test_channel_mode_encoder_first_conv_is_adapted_to_image_channel():
    enc, net = small_encoder(in_channels=2), small_segresnet(in_channels=1)
    report = load_pretrained_encoder(net, {"encoder": enc.state_dict()})
    key = "convInit.conv.weight"
    assert report.adapted == [(key, (8, 2, 3, 3, 3), (8, 1, 3, 3, 3))]
    assert key in report.loaded and report.skipped == []
    assert torch.equal(net.state_dict()[key], enc.state_dict()[key][:, :1])
    assert "1 adapted" in str(report)


def test_shape_mismatch_is_skipped_when_adaptation_is_off():
    enc, net = small_encoder(in_channels=2), small_segresnet(in_channels=1)
    before = net.state_dict()["convInit.conv.weight"].clone()
    report = load_pretrained_encoder(net, enc.state_dict(), adapt_input_channels=False, min_loaded_fraction=0.0)
    assert report.skipped == [("convInit.conv.weight", (8, 2, 3, 3, 3), (8, 1, 3, 3, 3))]
    assert torch.equal(net.state_dict()["convInit.conv.weight"], before)
    assert len(report.loaded) == len(enc.state_dict()) - 1


def test_missing_lists_encoder_keys_only_not_decoder_keys():
    state = small_encoder().state_dict()
    dropped = "down_layers.2.1.conv2.conv.weight"
    state.pop(dropped)
    report = load_pretrained_encoder(small_segresnet(), {"state_dict": state}, min_loaded_fraction=0.0)
    assert report.missing == [dropped]


def test_prefix_places_encoder_inside_a_wrapper():
    wrapper = nn.Module()
    wrapper.model = small_segresnet()
    report = load_pretrained_encoder(wrapper, small_encoder().state_dict(), prefix="model.")
    assert report.loaded and all(k.startswith("model.") for k in report.loaded) and report.missing == []


def test_missing_checkpoint_file_names_the_path(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_pretrained_encoder(small_segresnet(), path)


def test_nothing_matched_raises_with_example_keys():
    enc = SwinUNETREncoder(feature_size=12)
    with pytest.raises(ValueError, match=r"0 tensors loaded.*swinViT.*convInit"):
        load_pretrained_encoder(small_segresnet(), enc.state_dict())


def test_encoder_file_of_pretraining_round_trip(tmp_path):
    """The pretrain workflow's saver writes ``{"encoder": encoder.state_dict()}``: it loads with nothing missing."""
    model = ObjectEmbeddingModel(small_encoder(), hidden_dim=16, projection_dim=8)
    path = tmp_path / "pretrained_encoder.pt"
    torch.save({"encoder": model.encoder.state_dict()}, path)
    net = small_segresnet()
    report = load_pretrained_encoder(net, path)
    assert isinstance(report, EncoderLoadReport) and report.unexpected == [] and report.missing == []
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(net.state_dict()[key], value), key


def test_encoder_parameter_groups_split_encoder_and_decoder():
    from monai.networks.nets import SegResNet

    from semcl_components.networks import encoder_parameter_groups

    net = SegResNet(spatial_dims=3, in_channels=1, out_channels=3, init_filters=8, blocks_down=(1, 1), blocks_up=(1,))
    groups = encoder_parameter_groups(net, lr=1e-3, encoder_lr_multiplier=0.1)
    encoder_names = {n for n, _ in net.named_parameters() if n.split(".")[0] in ("convInit", "down_layers")}
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 1e-3])
    assert {id(p) for p in groups[0]["params"]} == {id(p) for n, p in net.named_parameters() if n in encoder_names}
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-4, 1e-3])


def test_encoder_parameter_groups_reject_bad_settings():
    from semcl_components.networks import encoder_parameter_groups

    with pytest.raises(ValueError, match="encoder_lr_multiplier must be >= 0"):
        encoder_parameter_groups(torch.nn.Linear(2, 2), lr=1e-3, encoder_lr_multiplier=-1.0)
    with pytest.raises(ValueError, match="no parameter under"):
        encoder_parameter_groups(torch.nn.Linear(2, 2), lr=1e-3, encoder_lr_multiplier=0.5)
    assert len(encoder_parameter_groups(torch.nn.Linear(2, 2), lr=1e-3)) == 1


def test_partly_fitting_encoder_is_refused_below_the_threshold():
    """An encoder pretrained with fewer blocks fills only part of the network's encoder: refused, nothing loaded."""
    enc = SegResNetEncoder(in_channels=1, init_filters=8, blocks_down=(1, 1, 1))
    net = SegResNet(spatial_dims=3, in_channels=1, out_channels=3, init_filters=8, blocks_down=(1, 2, 1), blocks_up=(1, 1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match=r"only \d+ of the network's \d+ encoder tensors fit .*blocks_down"):
        load_pretrained_encoder(net, enc.state_dict())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    report = load_pretrained_encoder(net, enc.state_dict(), min_loaded_fraction=0.5)
    assert report.loaded and report.missing
    summary = report.summary()  # what train.yaml records in its run summary (encoder_load)
    assert summary["loaded"] == len(report.loaded) and summary["missing"] == len(report.missing)
    assert summary["loaded_fraction"] == pytest.approx(len(report.loaded) / (len(report.loaded) + len(report.missing)))
    assert 0.5 <= summary["loaded_fraction"] < 1


def test_file_that_is_not_a_checkpoint_is_named(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not weights")
    with pytest.raises(ValueError, match=f"encoder checkpoint {path} is not a readable PyTorch weights file"):
        load_pretrained_encoder(small_segresnet(), path)


def test_whole_segmentation_checkpoint_transfers_only_its_encoder():
    """Supervised pretraining's model.pt holds a decoder too: only the encoder modules are loaded."""
    source, target = small_segresnet(), small_segresnet()
    before = target.state_dict()
    report = load_pretrained_encoder(target, source.state_dict())
    assert report.loaded and all(k.split(".")[0] in ("convInit", "down_layers") for k in report.loaded)
    decoder = [k for k in source.state_dict() if k.split(".")[0] not in ("convInit", "down_layers")]
    assert decoder and sorted(report.unexpected) == sorted(decoder)
    assert all(torch.equal(target.state_dict()[k], before[k]) for k in decoder)


@pytest.mark.parametrize("init_filters", [4, 12, 0])
def test_init_filters_not_a_multiple_of_the_norm_groups_names_the_setting(init_filters):
    """Issue 19, finding 10: ``--init_filters 4`` failed inside GroupNorm without naming the setting."""
    from semcl_components.networks import check_init_filters

    message = rf"init_filters must be a positive multiple of 8 .*group normalisation.*, got {init_filters}"
    with pytest.raises(ValueError, match=message):
        check_init_filters(init_filters)
    with pytest.raises(ValueError, match=message):
        SegResNetEncoder(init_filters=init_filters)


def test_init_filters_multiple_of_eight_passes_unchanged():
    from semcl_components.networks import check_init_filters

    assert check_init_filters(24) == 24
