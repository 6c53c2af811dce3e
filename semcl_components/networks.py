# Copyright (c) 2024 semcl_components contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Encoders, object embedding and encoder -> segmentation-network weight transfer.

The method of Lee et al. (arXiv 2106.01596, IEEE JBHI 2023) embeds *each object* of an image, highlighted by its
attention mask, into its own semantic cluster. This module provides:

- :class:`SegResNetEncoder`, :class:`SwinUNETREncoder`, :func:`build_encoder`: the encoder halves of MONAI's
  ``SegResNet`` and ``SwinUNETR``, built by MONAI's own code so that their ``state_dict`` keys are *identical* to
  the corresponding keys of the full segmentation network (``convInit.*``/``down_layers.*``, ``swinViT.*``);
- :class:`ProjectionHead` and :class:`ObjectEmbeddingModel`: one L2-normalised projection per (image, mask) pair,
  in ``"pool"`` mode (one encoder pass per image, mask-weighted average of the deepest features) or ``"channel"``
  mode (the paper's: the mask is an extra input channel, one encoder pass per object);
- :func:`embedding_collapse_stats`: cheap per-iteration diagnostics (positive/negative cosine, effective rank);
- :func:`load_pretrained_encoder`, :class:`EncoderLoadReport`, :func:`save_encoder`: transfer of the pretrained
  encoder into a segmentation network by key name, with a report of what was loaded, adapted, skipped and missing.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.nets import SegResNet, SwinUNETR

__all__ = [
    "SegResNetEncoder",
    "SwinUNETREncoder",
    "build_encoder",
    "ProjectionHead",
    "ObjectEmbeddingModel",
    "masked_average_pool",
    "embedding_collapse_stats",
    "EncoderLoadReport",
    "load_pretrained_encoder",
    "save_encoder",
    "ENCODER_PREFIXES",
    "encoder_parameter_groups",
]

_LOGGER = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------------------------------------------


class SegResNetEncoder(nn.Module):
    """The encoder of :class:`monai.networks.nets.SegResNet` (``convInit`` + ``down_layers``).

    The modules are built by ``SegResNet`` itself (a SegResNet without up-sampling path is constructed and its
    encoder modules are kept), so the ``state_dict`` keys (``convInit.*``, ``down_layers.*``) and the computation
    are those of ``SegResNet.encode``: the weights transfer by name into a ``SegResNet`` with the same arguments.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (``C`` for ``pool`` mode, ``C + 1`` for ``channel`` mode).
        init_filters: output channels of the first convolution; doubled at each down-sampling stage.
        blocks_down: number of residual blocks per stage (``len(blocks_down) - 1`` stride-2 down-samplings).
        norm: normalisation type and arguments, as for ``SegResNet``.
        dropout_prob: dropout after the first convolution, as in ``SegResNet`` (``None``: no dropout).
        act: activation type and arguments, as for ``SegResNet``.

    Shapes:
        ``forward``: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S / 2 ** (len(blocks_down) - 1))``
        with ``out_channels = init_filters * 2 ** (len(blocks_down) - 1)``.

    Example::

        >>> enc = SegResNetEncoder(spatial_dims=3, in_channels=1, init_filters=8)
        >>> enc(torch.rand(2, 1, 32, 32, 32)).shape
        torch.Size([2, 64, 4, 4, 4])
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        init_filters: int = 16,
        blocks_down: Sequence[int] = (1, 2, 2, 4),
        norm: tuple | str = ("GROUP", {"num_groups": 8}),
        dropout_prob: float | None = None,
        act: tuple | str = ("RELU", {"inplace": True}),
    ) -> None:
        super().__init__()
        if len(blocks_down) < 1:
            raise ValueError(f"blocks_down must name at least one stage, got {blocks_down}.")
        net = SegResNet(
            spatial_dims=spatial_dims,
            init_filters=init_filters,
            in_channels=in_channels,
            dropout_prob=dropout_prob,
            act=act,
            norm=norm,
            blocks_down=tuple(blocks_down),
            blocks_up=(),
        )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = init_filters * 2 ** (len(blocks_down) - 1)
        self.convInit = net.convInit
        self.dropout = net.dropout if dropout_prob is not None else None
        self.down_layers = net.down_layers

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of every stage, shallow to deep: ``[(B, init_filters * 2**i, *S / 2**i)]``."""
        x = self.convInit(x)
        if self.dropout is not None:
            x = self.dropout(x)
        features = []
        for down in self.down_layers:
            x = down(x)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> deepest feature map ``(B, out_channels, *s)``."""
        return self.forward_features(x)[-1]


class SwinUNETREncoder(nn.Module):
    """The Swin transformer encoder (``swinViT``) of :class:`monai.networks.nets.SwinUNETR`.

    A ``SwinUNETR`` is constructed with the given arguments and only its ``swinViT`` is kept, so the keys
    (``swinViT.*``) equal those of the full network. MONAI 1.6's ``SwinUNETR`` has no ``img_size`` argument;
    the input spatial size must be divisible by ``patch_size ** 5`` (32 for the default ``patch_size=2``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        feature_size: embedding size of the first stage (divisible by 12); doubled at each of the 4 stages.
        patch_size: patch-embedding size.
        depths: number of transformer blocks of each of the 4 stages.
        num_heads: attention heads of each stage.
        window_size: local window size.
        normalize: layer-normalise the hidden states over channels, as ``SwinUNETR`` does (default ``True``).
        kwargs: further ``SwinUNETR`` arguments (``use_v2``, ``drop_rate``, ``use_checkpoint``, ...).

    Shapes:
        ``forward``: ``(B, in_channels, *S)`` -> deepest hidden state
        ``(B, 16 * feature_size, *S / (16 * patch_size))``.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        feature_size: int = 24,
        patch_size: int = 2,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: Sequence[int] | int = 7,
        normalize: bool = True,
        **kwargs,
    ) -> None:
        super().__init__()
        if len(depths) != 4:
            raise ValueError(f"SwinUNETR has 4 stages: depths must have 4 entries, got {depths}.")
        net = SwinUNETR(
            in_channels=in_channels,
            out_channels=1,
            patch_size=patch_size,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            feature_size=feature_size,
            normalize=normalize,
            spatial_dims=spatial_dims,
            **kwargs,
        )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.normalize = normalize
        self.out_channels = feature_size * 2 ** len(depths)
        self.swinViT = net.swinViT

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Patch embedding + 4 stage hidden states: ``(B, feature_size * 2**i, *S / (patch_size * 2**i))``, i = 0..4."""
        divisor = self.patch_size**5
        if any(s % divisor for s in x.shape[2:]):
            raise ValueError(
                f"SwinUNETREncoder needs spatial sizes divisible by patch_size**5 = {divisor}, got input shape "
                f"{tuple(x.shape)}."
            )
        return self.swinViT(x, self.normalize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> deepest hidden state ``(B, out_channels, *S / 32)`` (``patch_size=2``)."""
        return self.forward_features(x)[-1]


_ENCODERS: dict[str, type[nn.Module]] = {"segresnet": SegResNetEncoder, "swinunetr": SwinUNETREncoder}


def build_encoder(name: str, spatial_dims: int = 3, in_channels: int = 1, **kwargs) -> nn.Module:
    """Build an encoder by backbone name (case-insensitive): ``"segresnet"`` or ``"swinunetr"``.

    ``kwargs`` go to :class:`SegResNetEncoder` or :class:`SwinUNETREncoder`. Use the same arguments as the
    segmentation network that will receive the weights (``init_filters``/``blocks_down`` or ``feature_size``...).
    """
    key = name.lower()
    if key not in _ENCODERS:
        raise ValueError(f"Unknown encoder {name!r}; choose one of {sorted(_ENCODERS)}.")
    return _ENCODERS[key](spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Object embedding
# ---------------------------------------------------------------------------------------------------------------


class ProjectionHead(nn.Module):
    """MLP projection head ``Linear -> LayerNorm -> ReLU -> Linear``: ``(N, in_features)`` -> ``(N, out_features)``.

    LayerNorm (not BatchNorm1d) because the number of objects in a batch may be 0 or 1.

    Args:
        in_features: input feature size ``F``.
        hidden_features: hidden layer size.
        out_features: projection size ``D``.
        layer_norm: apply LayerNorm after the hidden layer (default ``True``).
    """

    def __init__(self, in_features: int, hidden_features: int = 512, out_features: int = 128, layer_norm: bool = True):
        super().__init__()
        for name, value in (("in_features", in_features), ("hidden_features", hidden_features)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}.")
        if out_features < 1:
            raise ValueError(f"out_features must be positive, got {out_features}.")
        self.in_features = in_features
        self.out_features = out_features
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden_features),
            nn.LayerNorm(hidden_features) if layer_norm else nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_features, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_features)`` -> ``(N, out_features)``."""
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"ProjectionHead expects (N, {self.in_features}) input, got shape {tuple(x.shape)}.")
        return self.net(x)


def masked_average_pool(features: torch.Tensor, masks: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mask-weighted spatial average of a feature map, one vector per mask.

    The soft masks are area-averaged onto the feature grid (``F.interpolate(mode="area")``, i.e. the fraction of
    each coarse voxel covered by the mask, not nearest-neighbour sampling), then
    ``out[b, k] = sum_v f[b, :, v] * a[b, k, v] / (sum_v a[b, k, v] + eps)``.

    Args:
        features: ``(B, F, *s)``.
        masks: ``(B, K, *S)`` soft or binary masks (any real or bool dtype).
        eps: added to the mask mass; a mask that vanishes on the feature grid gives a zero vector.

    Returns:
        ``(B, K, F)``.
    """
    spatial = features.shape[2:]
    if masks.ndim != features.ndim or masks.shape[0] != features.shape[0]:
        raise ValueError(
            f"masks must be (B, K, *S) with B and the number of spatial dims of features {tuple(features.shape)}, "
            f"got {tuple(masks.shape)}."
        )
    masks = masks.to(device=features.device, dtype=features.dtype)
    if masks.shape[2:] != spatial:
        # objects go along the batch dim: adaptive pooling rejects an empty channel dim (K = 0) but not B * K = 0
        batch, objects = masks.shape[:2]
        masks = F.interpolate(masks.flatten(0, 1)[:, None], size=spatial, mode="area").reshape(batch, objects, *spatial)
    weights = masks.flatten(2)  # (B, K, V)
    # b: batch item, k: object, f: feature channel, v: voxel of the feature grid
    pooled = torch.einsum("bfv,bkv->bkf", features.flatten(2), weights)
    return pooled / (weights.sum(-1, keepdim=True) + eps)


def _normalize_feature_map(features: torch.Tensor, kind: str | None) -> torch.Tensor:
    """Parameter-free norm of ``(B, F, *s)``: ``"layer"`` over channels per voxel, ``"instance"`` per channel."""
    if kind is None:
        return features
    if kind == "layer":
        return F.layer_norm(features.movedim(1, -1), features.shape[1:2]).movedim(-1, 1)
    return F.instance_norm(features)


def _object_windows(masks: torch.Tensor, size: Sequence[int]) -> list[tuple[slice, ...]]:
    """Windows of ``size`` centred on each mask's centre of mass, clipped to the image.

    Args:
        masks: ``(K, *S)``; an empty mask is centred on the image centre.
        size: window size, one entry per spatial dim, each ``<= S``.

    Returns:
        ``K`` tuples of slices over the spatial dims.
    """
    spatial = masks.shape[1:]
    weights = masks.detach().float()
    mass = weights.flatten(1).sum(-1)  # (K,)
    starts = []
    for d, (extent, width) in enumerate(zip(spatial, size)):
        other = [i + 1 for i in range(len(spatial)) if i != d]
        profile = weights.sum(dim=other) if other else weights  # (K, extent)
        coords = torch.arange(extent, dtype=weights.dtype, device=weights.device)
        centre = torch.where(mass > 0, (profile * coords).sum(-1) / mass.clamp_min(1e-12), (extent - 1) / 2.0)
        start = torch.round(centre - (width - 1) / 2.0).long().clamp(0, extent - width)
        starts.append(start.tolist())
    return [tuple(slice(s[k], s[k] + w) for s, w in zip(starts, size)) for k in range(masks.shape[0])]


class ObjectEmbeddingModel(nn.Module):
    """One L2-normalised embedding per (image, attention mask) pair, for semantic-aware contrastive learning.

    Two ways to condition the encoder on an object ``a_k`` of image ``x_b``:

    - ``"pool"`` (efficient): ONE encoder pass per image; the object feature is the mask-weighted average
      (:func:`masked_average_pool`) of the deepest feature map, with the mask area-averaged onto that grid.
      A mask of ones gives the image-level (global average pooled) embedding of a SimCLR baseline.
    - ``"channel"`` (paper-faithful): the encoder (built with ``in_channels = C + 1``) sees ``[x_b, a_k]``; all
      objects of the batch go through ONE batched encoder call. The features are averaged *inside* the resampled
      mask (a global average over a crop that holds many organs collapses all objects onto one embedding). With
      ``object_crop_size``, an object-centred window (centre of mass of ``a_k``, clipped to the image) of that
      size is first cropped from image and mask, like the paper's organ-centred patches.

    Feature normalisation (``feature_norm``), applied to the deepest feature map before pooling:
    ``True``/``"layer"`` (default) layer-normalises each voxel's feature vector over channels without affine
    parameters (as SwinUNETR's ``proj_out``), so pooled features are scale-free (norm <= sqrt(F)) and do not depend
    on the other objects in the crop. ``"instance"`` standardises each channel over the image (pooled features then
    describe how an object differs from the rest of its crop). ``False``/``None``: raw features.
    Without normalisation a prototype's deepest features grew 8x in scale and lost effective rank.

    Args:
        encoder: maps ``(N, C_in, *S)`` to ``(N, F, *s)``; ``in_channels``/``out_channels`` attributes are used
            when present (see :func:`build_encoder`).
        mode: ``"pool"`` or ``"channel"``.
        feature_channels: ``F``; default ``encoder.out_channels``.
        hidden_dim: hidden size of the projection head.
        projection_dim: embedding size ``D``.
        feature_norm: ``True``/``"layer"``, ``"instance"`` or ``False``/``None`` (see above).
        object_crop_size: ``channel`` mode only: spatial size of the object-centred window (``None``: whole image).

    Example::

        >>> model = ObjectEmbeddingModel(build_encoder("segresnet", init_filters=8), mode="pool")
        >>> image = torch.rand(2, 1, 32, 32, 32)
        >>> masks = [torch.rand(3, 32, 32, 32) > 0.5, torch.zeros(0, 32, 32, 32)]  # K_0 = 3, K_1 = 0
        >>> model(image, masks).shape
        torch.Size([3, 128])
    """

    modes = ("pool", "channel")

    def __init__(
        self,
        encoder: nn.Module,
        mode: str = "pool",
        feature_channels: int | None = None,
        hidden_dim: int = 512,
        projection_dim: int = 128,
        feature_norm: bool | str | None = True,
        object_crop_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if mode not in self.modes:
            raise ValueError(f"mode must be one of {self.modes}, got {mode!r}.")
        if feature_channels is None:
            feature_channels = getattr(encoder, "out_channels", None)
            if feature_channels is None:
                raise ValueError("feature_channels is required when the encoder has no `out_channels` attribute.")
        self.norm_kind = self._norm_kind(feature_norm)
        if object_crop_size is not None:
            object_crop_size = tuple(int(s) for s in object_crop_size)
            if any(s < 1 for s in object_crop_size):
                raise ValueError(f"object_crop_size must be positive, got {object_crop_size}.")
            if mode == "pool":
                warnings.warn("object_crop_size is used in 'channel' mode only; ignored in 'pool' mode.", stacklevel=2)
        self.encoder = encoder
        self.mode = mode
        self.feature_channels = int(feature_channels)
        self.projection_dim = projection_dim
        self.object_crop_size = object_crop_size
        self.projection = ProjectionHead(self.feature_channels, hidden_dim, projection_dim)

    @staticmethod
    def _norm_kind(feature_norm: bool | str | None) -> str | None:
        if feature_norm is None or feature_norm is False:
            return None
        if feature_norm is True:
            return "layer"
        if feature_norm in ("layer", "instance"):
            return feature_norm
        raise ValueError(f"feature_norm must be a bool, None, 'layer' or 'instance', got {feature_norm!r}.")

    def forward(self, image: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Embed every object of every image.

        Args:
            image: ``(B, C, *S)``.
            masks: ``B`` tensors ``(K_b, *S)``, the attention masks of item ``b`` (``K_b`` may be 0).

        Returns:
            ``(sum_b K_b, projection_dim)``, L2-normalised, batch-major (all objects of item 0, then item 1, ...).
        """
        return F.normalize(self.projection(self.embed_objects(image, masks)), dim=1)

    def embed_objects(self, image: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """Pre-projection object features ``(sum_b K_b, feature_channels)``; arguments as for :meth:`forward`."""
        self._check_inputs(image, masks)
        if self.mode == "pool":
            return self._embed_pool(image, masks)
        return self._embed_channel(image, masks)

    def _check_inputs(self, image: torch.Tensor, masks: Sequence[torch.Tensor]) -> None:
        if image.ndim < 3:
            raise ValueError(f"image must be (B, C, *spatial), got shape {tuple(image.shape)}.")
        if len(masks) != image.shape[0]:
            raise ValueError(f"got {len(masks)} mask tensors for a batch of {image.shape[0]} images.")
        for b, mask in enumerate(masks):
            if mask.ndim != image.ndim - 1 or mask.shape[1:] != image.shape[2:]:
                raise ValueError(
                    f"masks[{b}] must be (K, *{tuple(image.shape[2:])}) to match image {tuple(image.shape)}, "
                    f"got {tuple(mask.shape)}."
                )
        expected = image.shape[1] + (1 if self.mode == "channel" else 0)
        encoder_in = getattr(self.encoder, "in_channels", None)
        if encoder_in is not None and encoder_in != expected:
            inputs = f"[image, mask] = {image.shape[1]} + 1" if self.mode == "channel" else "the image's"
            raise ValueError(
                f"{self.mode!r} mode feeds the encoder {inputs} = {expected} channels, "
                f"but the encoder takes in_channels = {encoder_in}."
            )

    def _normalize_features(self, features: torch.Tensor) -> torch.Tensor:
        return _normalize_feature_map(features, self.norm_kind)

    def _embed_pool(self, image: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        features = self._normalize_features(self.encoder(image))  # (B, F, *s)
        pooled = [masked_average_pool(features[b : b + 1], mask[None])[0] for b, mask in enumerate(masks)]
        return torch.cat(pooled, dim=0)

    def _embed_channel(self, image: torch.Tensor, masks: Sequence[torch.Tensor]) -> torch.Tensor:
        inputs, object_masks = self._channel_inputs(image, masks)
        if inputs.shape[0] == 0:
            # keep every parameter in the graph (zero gradient), e.g. for DistributedDataParallel
            anchor = sum(p.sum() for p in self.encoder.parameters()) * 0.0
            return image.new_zeros(0, self.feature_channels) + anchor
        features = self._normalize_features(self.encoder(inputs))  # (N, F, *s)
        return masked_average_pool(features, object_masks[:, None])[:, 0]

    def _channel_inputs(self, image: torch.Tensor, masks: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack ``[image_b, a_k]`` of every object: ``(N, C + 1, *W)`` inputs and ``(N, *W)`` masks."""
        size = self.object_crop_size
        if size is not None and (len(size) != image.ndim - 2 or any(w > s for w, s in zip(size, image.shape[2:]))):
            raise ValueError(
                f"object_crop_size {size} must have one entry per spatial dim, each <= the image size "
                f"{tuple(image.shape[2:])}."
            )
        inputs, crops = [], []
        for b, mask in enumerate(masks):
            mask = mask.to(device=image.device, dtype=image.dtype)
            windows = _object_windows(mask, size) if size is not None else [(Ellipsis,)] * mask.shape[0]
            for k, window in enumerate(windows):
                crops.append(mask[k][window])
                inputs.append(torch.cat([image[b][(slice(None), *window)], crops[-1][None]], dim=0))
        if not inputs:
            spatial = size if size is not None else tuple(image.shape[2:])
            return image.new_zeros(0, image.shape[1] + 1, *spatial), image.new_zeros(0, *spatial)
        return torch.stack(inputs), torch.stack(crops)


# ---------------------------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------------------------


def _effective_rank(embeddings: torch.Tensor) -> float:
    """Roy & Vetterli (2007) effective rank of the centred ``(N, D)`` matrix; 1.0 when all rows coincide."""
    centred = embeddings - embeddings.mean(dim=0, keepdim=True)
    singular = torch.linalg.svdvals(centred)
    # singular values at the round-off level of the centring are zero (identical rows leave only round-off)
    tol = max(embeddings.shape) * torch.finfo(embeddings.dtype).eps * max(float(embeddings.norm()), 1.0)
    singular = singular[singular > tol]
    if singular.numel() == 0:
        return 1.0
    p = singular / singular.sum()
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def embedding_collapse_stats(embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Collapse diagnostics of a set of embeddings, cheap enough for every iteration.

    Args:
        embeddings: ``(N, D)``; rows are L2-normalised here (cosine similarity).
        labels: ``(N,)`` class ids.

    Returns:
        ``positive_cosine``: mean cosine over pairs ``i != j`` with the same label;
        ``negative_cosine``: mean cosine over pairs with different labels;
        ``effective_rank``: ``exp(entropy(s / sum(s)))`` of the singular values ``s`` of the centred, row-normalised
        embedding matrix (Roy & Vetterli 2007): ~1 when all embeddings coincide (defined as 1.0 for a single
        point), up to ``min(N - 1, D)`` when they spread evenly.
        ``embedding_std``: mean over dimensions of the standard deviation of the row-normalised embeddings,
        ~``1 / sqrt(D)`` when spread and 0 when collapsed (scale-aware, unlike the effective rank, which only
        measures the shape of the spread);
        ``num_samples``: ``N``.
        An entry that has no pair or sample to average (e.g. no two samples share a label, or ``N < 2`` for
        ``embedding_std``) is ``float('nan')``; the other entries stay valid. Nothing is ever NaN otherwise.
    """
    if embeddings.ndim != 2 or labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"expected embeddings (N, D) and labels (N,), got {tuple(embeddings.shape)} and {tuple(labels.shape)}."
        )
    n = embeddings.shape[0]
    keys = ("positive_cosine", "negative_cosine", "effective_rank", "embedding_std")
    stats = {key: float("nan") for key in keys}
    stats["num_samples"] = float(n)
    if n == 0:
        return stats
    z = F.normalize(embeddings.detach().double(), dim=1)
    cosine = z @ z.T
    same = labels.to(z.device)[:, None] == labels.to(z.device)[None, :]
    positive = same & ~torch.eye(n, dtype=torch.bool, device=z.device)
    for key, pairs in (("positive_cosine", positive), ("negative_cosine", ~same)):
        if pairs.any():
            stats[key] = float(cosine[pairs].mean())
    stats["effective_rank"] = _effective_rank(z)
    if n > 1:
        stats["embedding_std"] = float(z.std(dim=0).mean())
    return stats


# ---------------------------------------------------------------------------------------------------------------
# Encoder -> segmentation network transfer
# ---------------------------------------------------------------------------------------------------------------


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


_STATE_DICT_KEYS = ("encoder", "state_dict", "model")


def _read_checkpoint(checkpoint: str | os.PathLike | Mapping[str, torch.Tensor]) -> Mapping:
    if isinstance(checkpoint, Mapping):
        return checkpoint
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"encoder checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


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

    Returns:
        :class:`EncoderLoadReport`.

    Raises:
        FileNotFoundError: ``checkpoint`` is a path that does not exist.
        ValueError: no tensor could be loaded (the message shows a few checkpoint and network keys).
    """
    state = _encoder_state_dict(_read_checkpoint(checkpoint))
    target = network.state_dict()
    report = EncoderLoadReport()
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = prefix + key
        if name not in target or not isinstance(value, torch.Tensor):
            report.unexpected.append(name)
            continue
        if value.shape == target[name].shape:
            to_load[name] = value
            continue
        adapted = _adapt_input_channels(value, target[name].shape) if adapt_input_channels else None
        entry = (name, tuple(value.shape), tuple(target[name].shape))
        if adapted is None:
            report.skipped.append(entry)
        else:
            to_load[name] = adapted
            report.adapted.append(entry)
    if not to_load and report.skipped:
        shown = "; ".join(f"{k}: checkpoint {a} vs network {b}" for k, a, b in report.skipped[:3])
        raise ValueError(
            f"no encoder weight fits the network (0 tensors loaded): all {len(report.skipped)} matching keys differ "
            f"in shape, e.g. {shown}. Was the encoder pretrained with other settings (init_filters, blocks_down)?"
        )
    if not to_load:
        raise ValueError(
            "no encoder weight matched the network (0 tensors loaded). "
            f"First checkpoint keys: {list(state)[:5]}; first network keys: {list(target)[:5]}; prefix={prefix!r}."
        )
    network.load_state_dict(to_load, strict=False)
    report.loaded = list(to_load)
    report.missing = _missing_encoder_keys(target, state, prefix)
    (logger or _LOGGER).info("load_pretrained_encoder: %s", report)
    return report


def _missing_encoder_keys(target: Mapping[str, torch.Tensor], state: Mapping[str, object], prefix: str) -> list[str]:
    """Network keys under a top-level module that the checkpoint covers (its encoder part) but absent from it."""
    named = {prefix + key for key in state}
    top_levels = tuple({prefix + key.split(".", 1)[0] + "." for key in state})
    return [k for k in target if k not in named and k.startswith(top_levels)]


ENCODER_PREFIXES: tuple[str, ...] = ("convInit", "down_layers", "swinViT")
"""Top-level module names of the encoder inside MONAI's SegResNet and SwinUNETR (what the encoders above keep)."""


def encoder_parameter_groups(
    network: nn.Module, lr: float, encoder_lr_multiplier: float = 1.0, encoder_prefixes: Sequence[str] = ENCODER_PREFIXES
) -> list[dict]:
    """Optimizer parameter groups that give a segmentation network's encoder its own learning rate.

    A pretrained encoder can be finetuned more gently than the freshly initialised decoder (a prototype saw
    pretrained encoders slow early finetuning): ``encoder_lr_multiplier`` < 1 scales the encoder's rate, 0 freezes it
    in effect, 1 trains everything alike.

    Args:
        network: e.g. ``monai.networks.nets.SegResNet``.
        lr: the base learning rate (decoder and everything outside the encoder).
        encoder_lr_multiplier: factor on ``lr`` for parameters under ``encoder_prefixes`` (>= 0).
        encoder_prefixes: top-level module names that make up the encoder.

    Returns:
        ``[{"params": encoder parameters, "lr": lr * multiplier}, {"params": the rest, "lr": lr}]``, empty groups left
        out, for ``torch.optim.AdamW(encoder_parameter_groups(...), lr=lr)``.
    """
    if encoder_lr_multiplier < 0:
        raise ValueError(f"encoder_lr_multiplier must be >= 0, got {encoder_lr_multiplier}.")
    encoder, rest = [], []
    for name, parameter in network.named_parameters():
        (encoder if name.split(".")[0] in encoder_prefixes else rest).append(parameter)
    if not encoder and encoder_lr_multiplier != 1.0:
        top = sorted({n.split(".")[0] for n, _ in network.named_parameters()})
        raise ValueError(f"no parameter under {tuple(encoder_prefixes)} in the network (its modules: {top}).")
    groups = [{"params": encoder, "lr": lr * encoder_lr_multiplier}, {"params": rest, "lr": lr}]
    return [g for g in groups if g["params"]]


def save_encoder(model_or_encoder: nn.Module, path: str | os.PathLike) -> str:
    """Write ``{"encoder": encoder.state_dict()}`` atomically (temporary file in the same folder, then ``os.replace``).

    Args:
        model_or_encoder: an encoder, or a model with an ``encoder`` attribute (e.g. :class:`ObjectEmbeddingModel`);
            a ``DataParallel``/``DistributedDataParallel`` wrapper is unwrapped.
        path: destination file; its folder is created if needed.

    Returns:
        the path written, as a string.
    """
    module = model_or_encoder
    if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        module = module.module
    encoder = getattr(module, "encoder", module)
    state = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp_encoder_", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"encoder": state}, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path
