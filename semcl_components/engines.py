"""The contrastive training step for MONAI's ``SupervisedTrainer``.

``SupervisedTrainer._iteration`` feeds ``network(image)`` to ``loss_function(pred, label)``. Contrastive pretraining
needs more: the network takes the attention masks beside the image, and the loss takes the objects' class ids,
instance ids and mask intensities, all of which vary in number from one batch item to the next. The trainer stays
MONAI's; :class:`ContrastiveIteration` replaces only its per-iteration step, through ``iteration_update``::

    from monai.engines import SupervisedTrainer
    from monai.handlers import StatsHandler, from_engine

    model = ObjectEmbeddingModel(build_encoder("segresnet"), embedding_mode="pool")
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=100,
        train_data_loader=loader,  # batches of semcl_components.collate.ObjectListCollate
        network=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=5e-4, momentum=0.9, weight_decay=1e-4),
        loss_function=SemanticSupConLoss(temperature=0.3),
        iteration_update=ContrastiveIteration(positives="class"),
        decollate=False,  # required, see ContrastiveIteration
        train_handlers=[
            StatsHandler(tag_name="train_loss", output_transform=from_engine(["loss"], first=True)),
            StatsHandler(name="collapse", output_transform=CollapseMonitors(), iteration_log=True, epoch_log=False),
        ],
    )

:class:`CollapseMonitors` is an ``output_transform`` that lets MONAI's ``StatsHandler`` and
``TensorBoardStatsHandler`` log the per-iteration collapse monitors (positive/negative cosine, effective rank...).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ignite.distributed as idist
import torch
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys, convert_to_tensor

from .collate import DEFAULT_OBJECT_KEYS, SAMPLE_INDEX_KEY
from .losses import positive_pair_mask
from .metrics import embedding_collapse_stats

__all__ = ["COLLAPSE_MONITOR_KEYS", "POSITIVES", "CollapseMonitors", "ContrastiveIteration", "step_output_dict"]

#: What makes two samples positives in :class:`ContrastiveIteration`: the same class id, or the same object.
POSITIVES = ("class", "instance")

#: Entries of the step output that :class:`CollapseMonitors` passes to the stats handlers by default.
COLLAPSE_MONITOR_KEYS = (
    "positive_cosine",
    "negative_cosine",
    "effective_rank",
    "embedding_std",
    "num_objects",
    "num_positive_pairs",
    "skipped_step",
)

_DECOLLATE_HINT = (
    "a handler of IterationEvents.MODEL_COMPLETED failed. If it is MONAI's decollate (SupervisedTrainer's default "
    "decollate=True), build the trainer with decollate=False: the per-object lists of a contrastive batch cannot be "
    "decollated (a view without objects has a (0, *spatial) mask) and ContrastiveIteration already returns its "
    "output in the decollated form, a list of one dict."
)


@dataclass
class _Objects:
    """The contrastive samples of one batch, on the device.

    Attributes:
        image: ``(B, C, *S)`` network input.
        masks: ``B`` tensors ``(K_b, *S)``; ``N = sum_b K_b`` samples.
        class_ids: ``(N,)`` class of every sample.
        instance_ids: ``(N,)`` physical object of every sample, shared by its views.
        intensities: ``(N,)`` mean image intensity inside every mask, clamped to [0, 1].
    """

    image: torch.Tensor
    masks: list[torch.Tensor]
    class_ids: torch.Tensor
    instance_ids: torch.Tensor
    intensities: torch.Tensor


class ContrastiveIteration:
    """One contrastive training step, for ``SupervisedTrainer(iteration_update=ContrastiveIteration(...))``.

    Expects the batches of :class:`semcl_components.collate.ObjectListCollate`: ``image`` ``(B, C, *S)``
    (intensities scaled to about [0, 1]), ``masks`` a list of ``B`` tensors ``(K_b, *S)``, ``class_ids`` and
    ``object_ids`` lists of ``(K_b,)`` and ``sample_index`` ``(B,)`` (the views of one sample share it). The trainer's
    ``network`` is an :class:`~semcl_components.networks.ObjectEmbeddingModel` (``network(image, masks) -> (N, D)``).

    Every object of every view is a sample (``N = sum_b K_b``). The caller chooses the positives (``positives``):
    ``"class"`` passes the objects' class ids to the loss (semantic-aware SupCon), ``"instance"`` their instance ids,
    ``sample_index * (max object id + 1) + object_id``, shared by the views of one physical object and unique
    otherwise. The loss is called as ``loss_function(embeddings, labels, intensities=...)``
    (:class:`~semcl_components.losses.SemanticSupConLoss`), ``intensities`` being the mean image intensity (over
    channels) inside each soft mask, clamped to [0, 1]. The image-level SimCLR baseline is the same step with
    ``"instance"`` positives over one whole-view mask per view (``GenerateAttentionMasksd(mask_mode="whole")``).

    The step (as ``SupervisedTrainer._iteration``): ``network.train()``, ``optimizer.zero_grad``, forward (under
    ``torch.autocast`` when the trainer has ``amp`` and a ``scaler``), the loss on float32 embeddings, backward
    (scaled by the trainer's ``scaler`` when present), ``optimizer.step``. The ``IterationEvents``
    ``FORWARD_COMPLETED``, ``LOSS_COMPLETED``, ``BACKWARD_COMPLETED`` and ``MODEL_COMPLETED`` fire in that order.

    Skipped steps: when the batch has no positive pair (no two samples share a label, e.g. crops without
    foreground), there is nothing to learn: the loss (an exact 0 for ``SemanticSupConLoss``) is still
    backpropagated, so that every rank takes part in the collectives of ``gather_distributed`` and DDP, but
    ``optimizer.step`` is not called and the output says ``skipped_step=True``. Under ``torch.distributed`` the
    positive pairs are summed over ranks first, so all ranks skip together; a step is skipped when no rank has a
    positive pair among its own samples.

    Output (``engine.state.output``, also returned): a list holding one dict, the form a MONAI trainer's output
    takes after decollation, so that ``from_engine(["loss"], first=True)`` and the ``StatsHandler`` default
    ``output_transform`` (``x[0]``) work. The dict holds ``"loss"`` (detached 0-dim tensor), ``"num_objects"``
    (``N``), ``"num_positive_pairs"`` (ordered pairs ``(i, p)``, so the two views of one object count 2),
    ``"skipped_step"`` (bool) and, with ``log_stats``, the floats of
    :func:`~semcl_components.metrics.embedding_collapse_stats` computed on the detached embeddings with the same
    labels as the loss (``positive_cosine``, ``negative_cosine``, ``effective_rank``, ``embedding_std``; NaN where
    there is no pair to average).

    The trainer must be built with ``decollate=False``: MONAI's decollation cannot split the per-object lists of the
    batch (it fails on a view without objects). Gradient accumulation (``accumulation_steps > 1``) is not supported.
    The batch is read here, so the trainer's ``prepare_batch`` is not used; tensors are moved to
    ``engine.state.device`` with the trainer's ``non_blocking`` and ``to_kwargs`` (image only), and MONAI
    ``MetaTensor`` inputs become plain tensors.

    The batch keys are those the package writes: ``image`` (MONAI's ``CommonKeys.IMAGE``), ``masks``, ``class_ids``
    and ``object_ids`` (``GenerateAttentionMasksd``'s defaults, ``ObjectListCollate``'s object keys) and
    ``sample_index`` (``ObjectListCollate``).

    Args:
        positives: one of :data:`POSITIVES`: ``"class"`` or ``"instance"``.
        log_stats: add the collapse monitors to the output.

    Raises:
        ValueError: for unknown positives, or (when called) a batch that lacks a key or whose entries disagree.
    """

    image_key = CommonKeys.IMAGE
    masks_key, class_ids_key, object_ids_key = DEFAULT_OBJECT_KEYS
    sample_index_key = SAMPLE_INDEX_KEY

    def __init__(self, positives: str = "class", log_stats: bool = True) -> None:
        if positives not in POSITIVES:
            raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}.")
        if not isinstance(log_stats, bool):
            raise ValueError(f"log_stats must be a bool, got {log_stats!r}.")
        self.positives = positives
        self.log_stats = log_stats

    def __call__(self, engine: Any, batchdata: Mapping[Hashable, Any]) -> list[dict[str, Any]]:
        """Run one step on ``batchdata`` with ``engine.network``/``optimizer``/``loss_function``; see the class doc."""
        _check_engine(engine)
        objects = self._prepare(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        labels = objects.class_ids if self.positives == "class" else objects.instance_ids
        output: dict[str, Any] = {}
        engine.state.output = [output]
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=getattr(engine, "optim_set_to_none", False))
        scaler = engine.scaler if engine.amp else None
        autocast = torch.autocast(objects.image.device.type, **engine.amp_kwargs) if scaler is not None else None
        with autocast or contextlib.nullcontext():
            embeddings = engine.network(objects.image, objects.masks)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        embeddings = embeddings.float()  # the contrastive logits (cosine / temperature) in float32, AMP or not
        loss = engine.loss_function(embeddings, labels, intensities=objects.intensities)
        num_positive_pairs = int(positive_pair_mask(labels).sum())
        # reported: the mean of the ranks' losses, which with SemanticSupConLoss(gather_distributed=True) is the loss
        # of the global batch (one process: its own loss); the counts are this process's
        reported = idist.all_reduce(loss.detach().clone()) / idist.get_world_size()
        output.update(loss=reported, num_objects=int(embeddings.shape[0]), num_positive_pairs=num_positive_pairs)
        engine.fire_event(IterationEvents.LOSS_COMPLETED)

        skip = idist.all_reduce(num_positive_pairs) == 0  # summed over the ranks
        if loss.requires_grad:
            (scaler.scale(loss) if scaler is not None else loss).backward()
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        if not skip:
            _optimizer_step(engine.optimizer, scaler)
        output["skipped_step"] = skip
        if self.log_stats:
            stats = embedding_collapse_stats(embeddings.detach().float(), labels)
            output.update({k: v for k, v in stats.items() if k != "num_samples"})
        _fire_model_completed(engine)
        return engine.state.output

    def _prepare(
        self,
        batchdata: Mapping[Hashable, Any],
        device: torch.device | str | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> _Objects:
        """Read the contrastive samples of a batch onto ``device`` (``kwargs`` go to the image's ``Tensor.to``)."""
        if not isinstance(batchdata, Mapping):
            raise ValueError(f"batchdata must be a dict (ObjectListCollate's batch), got {type(batchdata).__name__}.")
        image = _plain(self._get(batchdata, self.image_key)).to(device=device, non_blocking=non_blocking, **kwargs)
        if image.ndim < 3:
            raise ValueError(f"'{self.image_key}' must be (B, C, *spatial), got shape {tuple(image.shape)}.")
        sample_index = _plain(self._get(batchdata, self.sample_index_key)).to(image.device).long()
        if sample_index.shape != image.shape[:1]:
            raise ValueError(
                f"'{self.sample_index_key}' must be ({image.shape[0]},) for a batch of {image.shape[0]} images, got "
                f"shape {tuple(sample_index.shape)}."
            )
        masks, class_ids, object_ids = (
            [_plain(v).to(image.device, non_blocking=non_blocking) for v in self._object_list(batchdata, key, image)]
            for key in (self.masks_key, self.class_ids_key, self.object_ids_key)
        )
        self._check_objects(masks, class_ids, object_ids)
        return _objects(image, sample_index, masks, class_ids, object_ids)

    def _get(self, batchdata: Mapping[Hashable, Any], key: str) -> Any:
        if key not in batchdata:
            hint = " (batch it with semcl_components.collate.ObjectListCollate)"
            hint = hint if key == self.sample_index_key else ""
            keys = sorted(map(str, batchdata))
            raise ValueError(f"the contrastive step needs the batch key '{key}'{hint}; got keys {keys}.")
        return batchdata[key]

    def _object_list(self, batchdata: Mapping[Hashable, Any], key: str, image: torch.Tensor) -> Sequence[Any]:
        values = self._get(batchdata, key)
        if isinstance(values, torch.Tensor) or not isinstance(values, Sequence) or len(values) != image.shape[0]:
            length = len(values) if hasattr(values, "__len__") else "?"
            raise ValueError(
                f"'{key}' must be a list of {image.shape[0]} per-item tensors (ObjectListCollate), got "
                f"{type(values).__name__} of length {length}."
            )
        return values

    def _check_objects(
        self, masks: list[torch.Tensor], class_ids: list[torch.Tensor], object_ids: list[torch.Tensor]
    ) -> None:
        for b, (mask, classes, objects) in enumerate(zip(masks, class_ids, object_ids)):
            if classes.shape != mask.shape[:1] or objects.shape != mask.shape[:1]:
                raise ValueError(
                    f"item {b}: '{self.class_ids_key}' {tuple(classes.shape)} and '{self.object_ids_key}' "
                    f"{tuple(objects.shape)} must be (K,) for '{self.masks_key}' of shape {tuple(mask.shape)}."
                )
            if objects.numel() and int(objects.min()) < 0:
                raise ValueError(f"item {b}: '{self.object_ids_key}' must be >= 0, got {objects.tolist()}.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(positives={self.positives!r}, log_stats={self.log_stats})"


class CollapseMonitors:
    """``output_transform`` that hands the contrastive step's monitors to MONAI's stats handlers.

    Picks ``keys`` from the output of :class:`ContrastiveIteration` as a ``{name: float}`` dict, which
    ``monai.handlers.StatsHandler`` prints and ``TensorBoardStatsHandler`` writes as one scalar each (tags are
    ``prefix + name``). NaN entries (nothing to average in this batch) and absent keys are left out.

    Example (bundle config)::

        {"_target_": "TensorBoardStatsHandler", "log_dir": "@output_dir", "iteration_log": 10,
         "output_transform": {"_target_": "semcl_components.engines.CollapseMonitors", "prefix": "collapse/"}}

    Args:
        keys: output entries to pass on.
        prefix: prepended to every name.
    """

    def __init__(self, keys: Sequence[str] = COLLAPSE_MONITOR_KEYS, prefix: str = "") -> None:
        self.keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.prefix = prefix

    def __call__(self, output: Any) -> dict[str, float]:
        """``output``: ``engine.state.output`` (a list holding one dict, or a dict)."""
        items = step_output_dict(output)
        if items is None:
            raise ValueError(
                f"expected the output of ContrastiveIteration (a list of one dict), got {type(output).__name__}."
            )
        picked = {}
        for key in self.keys:
            if key in items:
                value = float(items[key])
                if not math.isnan(value):
                    picked[self.prefix + key] = value
        return picked

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={self.keys}, prefix={self.prefix!r})"


def _objects(
    image: torch.Tensor,
    sample_index: torch.Tensor,
    masks: list[torch.Tensor],
    class_ids: list[torch.Tensor],
    object_ids: list[torch.Tensor],
) -> _Objects:
    """Every object of every view is a sample, with its class, its physical object and its mask intensity."""
    masks = [m.to(image.dtype) for m in masks]
    counts = torch.tensor([m.shape[0] for m in masks], device=image.device)
    return _Objects(
        image=image,
        masks=masks,
        class_ids=torch.cat(class_ids).long(),
        instance_ids=_instance_ids(sample_index.repeat_interleave(counts), torch.cat(object_ids).long()),
        intensities=_mask_intensities(image, masks),
    )


def step_output_dict(output: Any) -> Mapping[str, Any] | None:
    """The dict of a step's output: ``output`` itself, or the first entry of a decollated list of dicts; else None."""
    if isinstance(output, Sequence) and output and isinstance(output[0], Mapping):
        return output[0]
    return output if isinstance(output, Mapping) else None


def _plain(value: Any) -> torch.Tensor:
    """A plain tensor (MetaTensor meta data dropped; numbers and numpy arrays converted)."""
    return convert_to_tensor(value, track_meta=False)


def _check_engine(engine: Any) -> None:
    steps = getattr(engine, "accumulation_steps", 1)
    if steps != 1:
        raise ValueError(
            f"ContrastiveIteration does not support gradient accumulation, got accumulation_steps={steps}."
        )


def _instance_ids(sample_index: torch.Tensor, object_ids: torch.Tensor) -> torch.Tensor:
    """``(N,)`` ``sample_index * (max object id + 1) + object_id``: one id per physical object, shared by its views."""
    base = int(object_ids.max()) + 1 if object_ids.numel() else 1
    return sample_index * base + object_ids


def _mask_intensities(image: torch.Tensor, masks: Sequence[torch.Tensor], eps: float = 1e-6) -> torch.Tensor:
    """``(N,)`` mean of the channel-averaged image inside every soft mask, clamped to [0, 1] (0 for an empty mask)."""
    with torch.no_grad():
        intensity = image.mean(dim=1).flatten(1)  # (B, V)
        means = [(m.flatten(1) @ intensity[b]) / (m.flatten(1).sum(dim=1) + eps) for b, m in enumerate(masks)]
        return torch.cat(means).clamp(0.0, 1.0) if means else image.new_zeros(0)


def _optimizer_step(optimizer: torch.optim.Optimizer, scaler: Any | None) -> None:
    if scaler is None:
        optimizer.step()
        return
    scaler.step(optimizer)
    scaler.update()


def _fire_model_completed(engine: Any) -> None:
    try:
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
    except Exception as err:
        raise RuntimeError(_DECOLLATE_HINT) from err
