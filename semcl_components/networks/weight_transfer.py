"""Weight transfer: a pretrained encoder into a segmentation network, by key name, with a report.

Weight-loading mismatches are the most common complaint users file against peer projects, so
:func:`load_pretrained_encoder` says exactly which keys were loaded, adapted, skipped and missing
(:class:`EncoderLoadReport`). :func:`encoder_parameter_groups` gives the loaded encoder its own learning rate.
The key and shape matching is MONAI's ``copy_model_state``; what stays here is the report and the input-channel
adaptation of ``channel``-mode encoders, which MONAI does not do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from monai.networks.utils import copy_model_state

from ..bundle_runtime.weights_file import read_weights_file

__all__ = ["ENCODER_PREFIXES", "EncoderLoadReport", "encoder_parameter_groups", "load_pretrained_encoder"]

_LOGGER = logging.getLogger(__name__)


@dataclass
class EncoderLoadReport:
    """What :func:`load_pretrained_encoder` did, key by key (network keys, i.e. with ``prefix``).

    Attributes:
        loaded: keys whose values were copied (including the ``adapted`` ones).
        adapted: ``(key, checkpoint shape, network shape)`` of input convolutions loaded by keeping the leading
            (image) input channels of a wider checkpoint weight, e.g. a ``channel``-mode encoder (image + mask).
        skipped: ``(key, checkpoint shape, network shape)`` of shape mismatches that were not loaded.
        missing: keys of the network's encoder part (top-level modules that appear in the checkpoint, e.g.
            ``convInit``, ``down_layers``, ``swinViT``) without a checkpoint entry; decoder keys are not missing.
        unexpected: checkpoint keys with no counterpart in the network (e.g. a projection head).
    """

    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    adapted: list[tuple[str, tuple, tuple]] = field(default_factory=list)

    @property
    def loaded_fraction(self) -> float:
        """The share of the network's encoder tensors that were loaded (loaded / (loaded + skipped + missing))."""
        encoder_tensors = len(self.loaded) + len(self.skipped) + len(self.missing)
        return len(self.loaded) / encoder_tensors if encoder_tensors else 0.0

    def summary(self) -> dict:
        """The counts and the loaded fraction, for a run summary: ``{"loaded", "adapted", "skipped", "missing",
        "unexpected", "loaded_fraction"}``."""
        counts = {name: len(getattr(self, name)) for name in ("loaded", "adapted", "skipped", "missing", "unexpected")}
        return {**counts, "loaded_fraction": round(self.loaded_fraction, 6)}

    def __str__(self) -> str:
        lines = [
            f"encoder weights: {len(self.loaded)} loaded ({len(self.adapted)} adapted), {len(self.skipped)} skipped "
            f"(shape mismatch), {len(self.missing)} missing, {len(self.unexpected)} unexpected"
        ]
        lines += [f"  adapted {k}: checkpoint {tuple(c)} -> network {tuple(n)}" for k, c, n in self.adapted]
        lines += [f"  skipped {k}: checkpoint {tuple(c)} vs network {tuple(n)}" for k, c, n in self.skipped]
        lines += [f"  missing {k}" for k in self.missing]
        lines += [f"  unexpected {k}" for k in self.unexpected]
        return "\n".join(lines)


#: Top-level module names of the encoder inside MONAI's SegResNet and SwinUNETR (what the encoders above keep).
ENCODER_PREFIXES: tuple[str, ...] = ("convInit", "down_layers", "swinViT")

_STATE_DICT_KEYS = ("encoder", "state_dict", "model")


def _read_checkpoint(checkpoint: str | os.PathLike | Mapping[str, torch.Tensor]) -> Mapping:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"encoder checkpoint not found: {path}")
    return read_weights_file(
        path, what="encoder checkpoint", fix="Give the pretrained_encoder.pt that configs/pretrain.yaml wrote."
    )


def _encoder_state_dict(checkpoint: Mapping) -> dict[str, object]:
    """Unwrap ``{"encoder"|"state_dict"|"model": sd}`` and strip ``module.`` (DDP) and ``encoder.`` prefixes.

    Keys of an ``ObjectEmbeddingModel`` state dict outside ``encoder.`` (the projection head) are kept unchanged
    and end up ``unexpected``.
    """
    for key in _STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            checkpoint = checkpoint[key]
            break
    state = dict(checkpoint)
    for wrapper in ("module.", "encoder."):
        if state and any(k.startswith(wrapper) for k in state):
            state = {k[len(wrapper) :] if k.startswith(wrapper) else k: v for k, v in state.items()}
    return state


def _adapt_input_channels(value: torch.Tensor, target_shape: torch.Size) -> torch.Tensor | None:
    """Keep the leading input channels of a conv weight ``(O, C_ckpt, *k)`` -> ``(O, C_net, *k)``, else ``None``."""
    if value.ndim < 3 or value.ndim != len(target_shape):
        return None
    same_elsewhere = value.shape[0] == target_shape[0] and value.shape[2:] == target_shape[2:]
    if not same_elsewhere or value.shape[1] <= target_shape[1]:
        return None
    return value[:, : target_shape[1]]


def load_pretrained_encoder(
    network: nn.Module,
    checkpoint: str | os.PathLike | Mapping[str, torch.Tensor],
    prefix: str = "",
    logger: logging.Logger | None = None,
    adapt_input_channels: bool = True,
    min_loaded_fraction: float = 1.0,
    encoder_modules: Sequence[str] | None = ENCODER_PREFIXES,
) -> EncoderLoadReport:
    """Copy pretrained encoder weights into a segmentation network by key name, and report what happened.

    Works for the encoders of this module and the matching MONAI networks (``SegResNet``: ``convInit.*``,
    ``down_layers.*``; ``SwinUNETR``: ``swinViT.*``) built with the same encoder arguments.

    Args:
        network: the segmentation network (e.g. ``monai.networks.nets.SegResNet``) to initialise in place.
        checkpoint: a file (read with ``torch.load(weights_only=True)``) or a mapping: a raw encoder state dict,
            ``{"encoder" | "state_dict" | "model": state_dict}``, or a whole :class:`ObjectEmbeddingModel` state
            dict (``encoder.`` is stripped; the projection head keys are reported ``unexpected``). A DDP ``module.``
            prefix is stripped.
        prefix: prepended to every checkpoint key to form the network key, when the segmentation network sits
            inside ``network`` (e.g. ``"model."``).
        logger: where the report is logged at INFO (default: this module's logger).
        adapt_input_channels: when a conv weight has more input channels in the checkpoint than in the network
            (``channel``-mode encoder: image + mask), load its leading (image) channels; reported as ``adapted``.
        min_loaded_fraction: the share of the network's encoder tensors (those under the top-level modules the
            checkpoint covers) that must be loaded; below it nothing is loaded and ``ValueError`` is raised, since an
            encoder that only partly fits (e.g. pretrained with other ``blocks_down``) is most often a mistake.
            0 accepts any partial load.
        encoder_modules: the top-level modules of a checkpoint that make up the encoder; its other keys (a
            projection head, or the decoder of a whole segmentation network used as a supervised-pretraining
            baseline) are reported ``unexpected`` and not loaded. ``None``: every matching key.

    Returns:
        :class:`EncoderLoadReport`.

    Raises:
        FileNotFoundError: ``checkpoint`` is a path that does not exist.
        ValueError: the file is not a weights file, no tensor could be loaded (the message shows a few checkpoint and
            network keys), or fewer than ``min_loaded_fraction`` of the encoder tensors fit.
    """
    state = _encoder_state_dict(_read_checkpoint(checkpoint))
    target = network.state_dict()
    report = EncoderLoadReport()
    source: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = prefix + key
        outside = encoder_modules is not None and key.split(".", 1)[0] not in encoder_modules
        if outside or name not in target or not isinstance(value, torch.Tensor):
            report.unexpected.append(name)
            continue
        adapted = None
        if adapt_input_channels and value.shape != target[name].shape:
            adapted = _adapt_input_channels(value, target[name].shape)
        if adapted is not None:
            report.adapted.append((name, tuple(value.shape), tuple(target[name].shape)))
        source[key] = value if adapted is None else adapted
    # MONAI matches the keys (with the prefix) and shapes; what it leaves unchanged differs in shape
    updated_state, loaded, _ = copy_model_state(target, source, dst_prefix=prefix, inplace=False)
    report.loaded = loaded
    report.skipped = [
        (prefix + key, tuple(value.shape), tuple(target[prefix + key].shape))
        for key, value in source.items()
        if prefix + key not in loaded
    ]
    if not loaded and report.skipped:
        shown = "; ".join(f"{k}: checkpoint {a} vs network {b}" for k, a, b in report.skipped[:3])
        raise ValueError(
            f"no encoder weight fits the network (0 tensors loaded): all {len(report.skipped)} matching keys differ "
            f"in shape, e.g. {shown}. Was the encoder pretrained with other settings (init_filters, blocks_down)?"
        )
    if not loaded:
        raise ValueError(
            "no encoder weight matched the network (0 tensors loaded). "
            f"First checkpoint keys: {list(state)[:5]}; first network keys: {list(target)[:5]}; prefix={prefix!r}."
        )
    report.missing = _missing_encoder_keys(target, state, prefix)
    encoder_tensors = len(report.loaded) + len(report.skipped) + len(report.missing)
    if len(report.loaded) < min_loaded_fraction * encoder_tensors:
        source = checkpoint if not isinstance(checkpoint, Mapping) else "the checkpoint"
        raise ValueError(
            f"only {len(report.loaded)} of the network's {encoder_tensors} encoder tensors fit {source} (required: "
            f"{min_loaded_fraction:.0%}); was the encoder pretrained with other settings (init_filters, blocks_down)? "
            f"Nothing was loaded. Pass min_loaded_fraction (--encoder_min_loaded_fraction) lower to accept it.\n{report}"
        )
    network.load_state_dict(updated_state)
    (logger or _LOGGER).info("load_pretrained_encoder: %s", report)
    return report


def _missing_encoder_keys(target: Mapping[str, torch.Tensor], state: Mapping[str, object], prefix: str) -> list[str]:
    """Network keys under a top-level module that the checkpoint covers (its encoder part) but absent from it."""
    named = {prefix + key for key in state}
    top_levels = tuple({prefix + key.split(".", 1)[0] + "." for key in state})
    return [k for k in target if k not in named and k.startswith(top_levels)]


def encoder_parameter_groups(
    network: nn.Module,
    lr: float,
    encoder_lr_multiplier: float = 1.0,
    encoder_prefixes: Sequence[str] = ENCODER_PREFIXES,
) -> list[dict]:
    """Optimizer parameter groups that give a segmentation network's encoder its own learning rate.

    A pretrained encoder can be finetuned more gently than the freshly initialised decoder:
    ``encoder_lr_multiplier`` < 1 scales the encoder's rate, 0 freezes it in effect, 1 trains everything alike.

    Args:
        network: e.g. ``monai.networks.nets.SegResNet``.
        lr: the base learning rate (decoder and everything outside the encoder).
        encoder_lr_multiplier: factor on ``lr`` for parameters under ``encoder_prefixes`` (>= 0).
        encoder_prefixes: top-level module names that make up the encoder.

    Returns:
        ``[{"params": encoder parameters, "lr": lr * multiplier, "name": "encoder"}, {"params": the rest, "lr": lr,
        "name": "rest"}]``, empty groups left out, for ``torch.optim.AdamW(encoder_parameter_groups(...), lr=lr)``.
        The names let :class:`semcl_components.bundle_runtime.handlers.EncoderWarmup` find the encoder's group.
    """
    if encoder_lr_multiplier < 0:
        raise ValueError(f"encoder_lr_multiplier must be >= 0, got {encoder_lr_multiplier}.")
    encoder, rest = [], []
    for name, parameter in network.named_parameters():
        (encoder if name.split(".")[0] in encoder_prefixes else rest).append(parameter)
    if not encoder and encoder_lr_multiplier != 1.0:
        top = sorted({n.split(".")[0] for n, _ in network.named_parameters()})
        raise ValueError(f"no parameter under {tuple(encoder_prefixes)} in the network (its modules: {top}).")
    groups = [
        {"params": encoder, "lr": lr * encoder_lr_multiplier, "name": "encoder"},
        {"params": rest, "lr": lr, "name": "rest"},
    ]
    return [g for g in groups if g["params"]]
