"""Embedding quality of organ features: the functions and the pretraining handler."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events

from semcl_components.embedding_quality import (
    embedding_quality,
    organ_features,
    plot_embedding_projections,
    projection_panel,
)
from semcl_components.bundle_runtime.handlers import EmbeddingQualityHandler
from semcl_components.networks import ObjectEmbeddingModel, build_encoder


def tiny_model() -> ObjectEmbeddingModel:
    torch.manual_seed(0)
    encoder = build_encoder("segresnet", init_filters=8, blocks_down=[1, 1])
    return ObjectEmbeddingModel(encoder, embedding_mode="pool", hidden_dim=16, projection_dim=8)


def volume(organs: dict[int, tuple[slice, slice, slice]], size: int = 16) -> dict[str, torch.Tensor]:
    """An image whose intensity is the organ id / 4 inside each organ box, and its label map."""
    label = torch.zeros(1, size, size, size)
    for organ, box in organs.items():
        label[(0, *box)] = organ
    return {"image": label / 4.0 + 0.01 * torch.randn_like(label), "label": label}


BOXES = {1: (slice(2, 7), slice(2, 7), slice(2, 7)), 2: (slice(9, 14), slice(9, 14), slice(9, 14))}


def test_organ_features_has_one_row_per_organ_present():
    model = tiny_model()
    items = [volume(BOXES), volume({2: BOXES[2]}), volume({1: (slice(0, 1), slice(0, 1), slice(0, 2))})]
    features, labels = organ_features(model, items, classes=[1, 2], min_voxels=8)
    assert features.shape == (3, model.feature_channels)
    assert labels.tolist() == [1, 2, 2]  # the 2-voxel organ of the last volume is below min_voxels
    assert torch.allclose(features[:1], model.embed_objects(items[0]["image"][None], [items[0]["label"] == 1])[:1])
    empty, none = organ_features(model, [], classes=[1, 2])
    assert empty.shape == (0, model.feature_channels) and none.numel() == 0


def test_embedding_quality_separates_clustered_from_mixed_features():
    torch.manual_seed(0)
    centres = torch.eye(3, 8) * 5.0
    labels = torch.arange(3).repeat(10)
    clustered = centres[labels] + 0.1 * torch.randn(30, 8)
    good = embedding_quality(clustered[:15], labels[:15], clustered[15:], labels[15:])
    assert good["knn_accuracy"] == 1.0
    assert good["silhouette_held_out"] > 0.9 and good["silhouette_reference"] > 0.9
    mixed = torch.randn(30, 8)  # no organ structure
    bad = embedding_quality(mixed[:15], labels[:15], mixed[15:], labels[15:])
    assert bad["knn_accuracy"] < 0.8
    assert bad["silhouette_held_out"] < 0.2
    single = embedding_quality(clustered[:15], labels[:15], clustered[:1], labels[:1])
    assert math.isnan(single["silhouette_held_out"])  # one organ cannot be separated from anything


def test_plot_embedding_projections_writes_one_panel_per_encoder(tmp_path):
    torch.manual_seed(0)
    panel = projection_panel(torch.randn(6, 4), torch.tensor([1, 1, 2, 2, 3, 3]), torch.randn(3, 4), torch.tensor([1, 2, 3]))
    assert panel[0].shape == (9, 2) and panel[2].tolist() == [False] * 6 + [True] * 3
    plot_embedding_projections({"simclr": panel, "semcl": panel}, tmp_path / "pca.png", class_names=["bg", "a", "b", "c"])
    assert (tmp_path / "pca.png").read_bytes()[:4] == b"\x89PNG"


def run_epochs(handler: EmbeddingQualityHandler, model: torch.nn.Module, epochs: int) -> list[dict]:
    """Run an engine for ``epochs`` (one iteration each) with ``handler``; the metrics seen at each epoch's end."""
    seen = []
    engine = Engine(lambda engine, batch: None)
    handler.attach(engine)

    @engine.on(Events.EPOCH_COMPLETED)
    def record(engine):
        seen.append({"epoch": engine.state.epoch, "training": model.training, **engine.state.metrics})

    model.train()
    engine.run([0], max_epochs=epochs)
    return seen


def test_handler_measures_every_interval_and_at_the_end_for_that_epoch_only(tmp_path):
    model = tiny_model()
    items = [volume(BOXES), volume(BOXES)]
    handler = EmbeddingQualityHandler(model, items, items[:1], classes=[1, 2], interval=2, min_voxels=8,
                                      plot_file=tmp_path / "pca.png")
    seen = run_epochs(handler, model, epochs=3)
    assert [h["epoch"] for h in handler.history] == [2, 3]  # every 2 epochs, and the last
    assert "embedding_knn_accuracy" not in seen[0]
    assert seen[1]["embedding_knn_accuracy"] == handler.history[0]["embedding_knn_accuracy"]
    assert set(seen[2]) >= {"embedding_knn_accuracy", "embedding_silhouette_held_out", "embedding_silhouette_reference"}
    assert all(record["training"] for record in seen)  # train mode is restored after measuring
    assert (tmp_path / "pca.png").is_file()


def test_handler_interval_zero_is_off_and_bad_interval_is_refused():
    model = tiny_model()
    handler = EmbeddingQualityHandler(model, [volume(BOXES)], [volume(BOXES)], classes=[1, 2], interval=0)
    seen = run_epochs(handler, model, epochs=2)
    assert handler.history == [] and all("embedding_knn_accuracy" not in record for record in seen)
    with pytest.raises(ValueError, match="interval must be an integer >= 0"):
        EmbeddingQualityHandler(model, [], [], classes=[1], interval=-1)
