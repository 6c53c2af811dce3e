"""Tests of semcl_components.engines: the contrastive step inside MONAI's SupervisedTrainer."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
from monai.data import DataLoader, Dataset
from monai.engines import IterationEvents, SupervisedTrainer
from monai.handlers import StatsHandler, from_engine
from monai.losses import ContrastiveLoss
from monai.transforms import Compose, RandFlipd, RandGaussianNoised

from semcl_components.collate import ObjectListCollate, object_list_collate
from semcl_components.engines import COLLAPSE_MONITOR_KEYS, CollapseMonitors, ContrastiveIteration
from semcl_components.losses import SemanticSupConLoss
from semcl_components.networks import ObjectEmbeddingModel, SegResNetEncoder
from semcl_components.transforms import DropEmptyMasksd, GenerateAttentionMasksd, RandMultiViewd

SIZE = 16
CPU = torch.device("cpu")
OUTPUT_KEYS = {"loss", "num_objects", "num_positive_pairs", "skipped_step"} | {
    "positive_cosine",
    "negative_cosine",
    "effective_rank",
    "embedding_std",
}
# three cube "organs" (class id -> corner, edge) and their intensities; class 3 is brighter than 1 (clamp test)
ORGANS = {1: ((2, 2, 2), 5), 2: ((9, 2, 4), 5), 3: ((5, 9, 9), 5)}
INTENSITY = {1: 0.3, 2: 0.6, 3: 1.4}


pytestmark = pytest.mark.usefixtures("deterministic")


def make_sample(classes=(1, 2, 3), shift: int = 0) -> dict:
    """A 16^3 image/label pair holding cubes of ``classes`` (moved by ``shift`` voxels along x)."""
    label = torch.zeros(1, SIZE, SIZE, SIZE)
    image = torch.full((1, SIZE, SIZE, SIZE), 0.05)
    for k in classes:
        (x, y, z), edge = ORGANS[k]
        region = (0, slice(x + shift, x + shift + edge), slice(y, y + edge), slice(z, z + edge))
        label[region] = k
        image[region] = INTENSITY[k]
    return {"image": image, "label": label}


def two_view_pipeline(mask_mode: str = "exact") -> Compose:
    view = Compose(
        [
            RandFlipd(keys=["image", "masks"], prob=0.5, spatial_axis=0),
            RandGaussianNoised(keys=["image"], prob=1.0, std=0.02),
            DropEmptyMasksd(),
        ]
    )
    pipeline = Compose([GenerateAttentionMasksd(keys="label", mask_mode=mask_mode), RandMultiViewd(view, num_views=2)])
    pipeline.set_random_state(seed=0)
    return pipeline


def make_batch(samples: list[dict] | None = None, mask_mode: str = "exact") -> dict:
    """2 samples x 2 views through the real transforms and collate function."""
    samples = samples if samples is not None else [make_sample(shift=0), make_sample((1, 2), shift=1)]
    pipeline = two_view_pipeline(mask_mode)
    return object_list_collate([pipeline(s) for s in samples])


def make_network(mode: str = "pool") -> ObjectEmbeddingModel:
    encoder = SegResNetEncoder(in_channels=2 if mode == "channel" else 1, init_filters=8, blocks_down=(1, 1))
    return ObjectEmbeddingModel(encoder, embedding_mode=mode, hidden_dim=32, projection_dim=16)


def make_trainer(loader, network, loss_function, positives="class", max_epochs=2, lr=0.05, **kwargs):
    return SupervisedTrainer(
        device=CPU,
        max_epochs=max_epochs,
        train_data_loader=loader,
        network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=lr),
        loss_function=loss_function,
        iteration_update=ContrastiveIteration(positives=positives),
        **{"decollate": False, **kwargs},
    )


def snapshot(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.named_parameters()}


def changed(before: dict[str, torch.Tensor], network: torch.nn.Module) -> list[str]:
    return [k for k, v in network.named_parameters() if not torch.equal(before[k], v.detach())]


class RecordingLoss(SemanticSupConLoss):
    """SemanticSupConLoss that keeps the arguments of every call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls: list[dict] = []

    def forward(self, embeddings, labels, intensities=None):
        self.calls.append({"labels": labels, "intensities": intensities})
        return super().forward(embeddings, labels, intensities)


def flat_objects(batch: dict) -> list[tuple[int, int, int, torch.Tensor, torch.Tensor]]:
    """``(sample index, object id, class id, mask, image)`` of every object, batch-major."""
    rows = []
    for b, (mask, classes, objects) in enumerate(zip(batch["masks"], batch["class_ids"], batch["object_ids"])):
        for k in range(mask.shape[0]):
            rows.append((int(batch["sample_index"][b]), int(objects[k]), int(classes[k]), mask[k], batch["image"][b]))
    return rows


# ------------------------------------------------------------------------------------------------ semantic mode


@pytest.mark.parametrize("mode", ["pool", "channel"])
def test_semantic_step_trains_through_supervised_trainer(mode):
    samples = [make_sample(shift=0), make_sample((1, 2), shift=1)]
    loader = DataLoader(Dataset(samples, two_view_pipeline()), batch_size=2, collate_fn=ObjectListCollate())
    network = make_network(mode)
    before = snapshot(network)
    trainer = make_trainer(loader, network, SemanticSupConLoss(), max_epochs=3)
    trainer.run()

    (output,) = trainer.state.output
    assert trainer.state.iteration == 3
    assert set(output) == OUTPUT_KEYS
    assert isinstance(output["loss"], torch.Tensor) and output["loss"].ndim == 0 and not output["loss"].requires_grad
    assert math.isfinite(output["loss"].item()) and output["loss"].item() > 0
    assert output["num_objects"] == 10 and output["skipped_step"] is False
    assert all(isinstance(output[k], float) for k in ("positive_cosine", "negative_cosine", "effective_rank"))
    assert {"encoder.convInit.conv.weight", "projection.net.3.weight"} <= set(changed(before, network))


@pytest.mark.parametrize("positives", ["class", "instance"])
def test_num_positive_pairs_matches_hand_count(positives):
    batch = make_batch()
    trainer = make_trainer([batch], make_network(), SemanticSupConLoss(), positives=positives, max_epochs=1)
    trainer.run()

    rows = flat_objects(batch)
    key = (lambda r: r[2]) if positives == "class" else (lambda r: (r[0], r[1]))
    expected = sum(key(a) == key(b) for i, a in enumerate(rows) for j, b in enumerate(rows) if i != j)
    assert expected > 0
    assert trainer.state.output[0]["num_positive_pairs"] == expected


def test_instance_ids_are_shared_by_the_views_of_one_object_only():
    batch = make_batch()
    loss = RecordingLoss()
    make_trainer([batch], make_network(), loss, positives="instance", max_epochs=1).run()

    ids = loss.calls[0]["labels"].tolist()
    keys = [(r[0], r[1]) for r in flat_objects(batch)]
    for i in range(len(ids)):
        for j in range(len(ids)):
            assert (ids[i] == ids[j]) == (keys[i] == keys[j]), (i, j, ids, keys)


def test_intensities_are_the_clamped_mean_inside_each_mask():
    batch = make_batch()
    loss = RecordingLoss(intensity_weighting=True)
    network = make_network()
    before = snapshot(network)
    trainer = make_trainer([batch], network, loss, max_epochs=1)
    trainer.run()

    expected = [float(((image[0] * mask).sum() / mask.sum()).clamp(0, 1)) for *_, mask, image in flat_objects(batch)]
    assert loss.calls[0]["intensities"].tolist() == pytest.approx(expected, abs=1e-5)
    assert max(expected) == 1.0  # the bright organ (1.4) is clamped
    assert trainer.state.output[0]["skipped_step"] is False and changed(before, network)


@pytest.mark.parametrize(
    "samples",
    [
        [make_sample(classes=()), make_sample(classes=())],  # no foreground at all
        [make_sample(classes=(1,))],  # a single object per view: positives need 2 views ...
    ],
    ids=["no_foreground", "one_view_one_object"],
)
def test_batch_without_positive_pair_skips_the_step(samples):
    if len(samples) == 1:  # ... so keep only the first view of the single sample
        item = GenerateAttentionMasksd(keys="label")(samples[0])
        batch = object_list_collate([item])
    else:
        batch = make_batch(samples)
    network = make_network()
    before = snapshot(network)
    trainer = make_trainer([batch], network, SemanticSupConLoss(), max_epochs=1)
    trainer.run()

    (output,) = trainer.state.output
    assert output["loss"].item() == 0.0
    assert output["skipped_step"] is True and output["num_positive_pairs"] == 0
    assert changed(before, network) == []


def test_learning_separates_two_classes():
    batch = make_batch([make_sample((1, 2), shift=0), make_sample((1, 2), shift=2)])
    network = make_network("pool")
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    trainer = SupervisedTrainer(
        device=CPU,
        max_epochs=15,
        train_data_loader=[batch],
        network=network,
        optimizer=optimizer,
        loss_function=SemanticSupConLoss(),
        iteration_update=ContrastiveIteration(),
        decollate=False,
    )
    gaps = []
    trainer.add_event_handler(
        IterationEvents.MODEL_COMPLETED,
        lambda e: gaps.append(e.state.output[0]["positive_cosine"] - e.state.output[0]["negative_cosine"]),
    )
    trainer.run()

    final = trainer.state.output[0]
    assert final["positive_cosine"] > final["negative_cosine"] + 0.5
    assert gaps[-1] > gaps[0] + 0.3


@pytest.mark.filterwarnings("ignore:.*GradScaler")
def test_amp_runs_the_forward_under_autocast_and_steps():
    network = make_network()
    before = snapshot(network)
    autocast_states = []
    network.register_forward_hook(lambda *_: autocast_states.append(torch.is_autocast_enabled("cpu")))
    trainer = make_trainer([make_batch()], network, SemanticSupConLoss(), max_epochs=1, amp=True)
    trainer.run()

    assert autocast_states == [True]
    assert trainer.state.output[0]["loss"].dtype == torch.float32
    assert math.isfinite(trainer.state.output[0]["loss"].item()) and changed(before, network)


# ------------------------------------------------------------------------------------------- SimCLR baseline


def test_whole_view_masks_with_instance_positives_are_monai_contrastive_loss():
    """The image-level baseline is the same step: one whole-view mask per view and instance positives."""
    batch = make_batch(mask_mode="whole")
    network = make_network()
    reference = copy.deepcopy(network)
    loss_function = SemanticSupConLoss(temperature=0.5, base_temperature=0.5)
    trainer = make_trainer([batch], network, loss_function, positives="instance", max_epochs=1)
    trainer.run()

    with torch.no_grad():
        z = reference(batch["image"], [torch.ones(1, SIZE, SIZE, SIZE)] * 4)
    view0 = [i for i in range(4) if batch["view_id"][i] == 0]
    view1 = [i for i in range(4) if batch["view_id"][i] == 1]
    assert batch["sample_index"][view0].tolist() == batch["sample_index"][view1].tolist()
    expected = ContrastiveLoss(temperature=0.5)(z[view0], z[view1])
    (output,) = trainer.state.output
    assert output["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert output["num_objects"] == 4 and output["num_positive_pairs"] == 4 and output["skipped_step"] is False
    assert changed(snapshot(reference), network)


# ------------------------------------------------------------------------------------- events, logging, errors


def test_iteration_events_fire_in_order():
    events = []
    trainer = make_trainer([make_batch()], make_network(), SemanticSupConLoss(), max_epochs=2)
    for event in ("FORWARD_COMPLETED", "LOSS_COMPLETED", "BACKWARD_COMPLETED", "MODEL_COMPLETED"):
        trainer.add_event_handler(getattr(IterationEvents, event), lambda e, name=event: events.append(name))
    trainer.run()
    assert events == ["FORWARD_COMPLETED", "LOSS_COMPLETED", "BACKWARD_COMPLETED", "MODEL_COMPLETED"] * 2


def test_stats_handlers_log_loss_and_collapse_monitors(caplog):
    name = "test_engines.stats"
    trainer = make_trainer(
        [make_batch()],
        make_network(),
        SemanticSupConLoss(),
        max_epochs=1,
        train_handlers=[
            StatsHandler(name=name, tag_name="train_loss", output_transform=from_engine(["loss"], first=True)),
            StatsHandler(name=name, output_transform=CollapseMonitors(), epoch_log=False),
        ],
    )
    logging.getLogger(name).addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger=name):
            trainer.run()
    finally:
        logging.getLogger(name).removeHandler(caplog.handler)
    text = caplog.text
    assert "train_loss: " in text
    assert "positive_cosine: " in text and "effective_rank: " in text and "skipped_step: " in text


def test_collapse_monitors_pick_keys_and_drop_nan():
    output = [{"loss": torch.tensor(1.0), "positive_cosine": 0.5, "negative_cosine": float("nan"), "num_objects": 3}]
    picked = CollapseMonitors(prefix="collapse/")(output)
    assert picked == {"collapse/positive_cosine": 0.5, "collapse/num_objects": 3.0}
    assert set(CollapseMonitors()({k: 1.0 for k in COLLAPSE_MONITOR_KEYS})) == set(COLLAPSE_MONITOR_KEYS)


def test_default_decollate_gets_a_clear_error():
    batch = make_batch([make_sample(classes=()), make_sample()])  # views without objects: (0, *S) masks
    trainer = make_trainer([batch], make_network(), SemanticSupConLoss(), max_epochs=1, decollate=True)
    with pytest.raises(RuntimeError, match="decollate=False"):
        trainer.run()


def test_missing_sample_index_names_the_collate_function():
    batch = make_batch()
    del batch["sample_index"]
    trainer = make_trainer([batch], make_network(), SemanticSupConLoss(), max_epochs=1)
    with pytest.raises(ValueError, match="ObjectListCollate"):
        trainer.run()


def test_mismatched_object_entries_are_refused():
    batch = make_batch()
    batch["class_ids"][0] = batch["class_ids"][0][:-1]
    trainer = make_trainer([batch], make_network(), SemanticSupConLoss(), max_epochs=1)
    with pytest.raises(ValueError, match="item 0"):
        trainer.run()


def test_gradient_accumulation_is_refused():
    trainer = make_trainer([make_batch()], make_network(), SemanticSupConLoss(), max_epochs=1, accumulation_steps=2)
    with pytest.raises(ValueError, match="accumulation_steps=2"):
        trainer.run()


def test_unknown_positives_are_refused():
    with pytest.raises(ValueError, match="'simclr'"):
        ContrastiveIteration(positives="simclr")
