"""Object embedding: one L2-normalised projection per (image, attention mask) pair.

The method of Lee et al. (arXiv 2106.01596, IEEE JBHI 2023) embeds *each object* of an image, highlighted by its
attention mask, into its own semantic cluster. :class:`ObjectEmbeddingModel` does it in ``"pool"`` mode (one encoder
pass per image, mask-weighted average of the deepest features) or ``"channel"`` mode (the paper's: the mask is an
extra input channel, one encoder pass per object), followed by a :class:`ProjectionHead`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["EMBEDDING_MODES", "ObjectEmbeddingModel", "ProjectionHead", "encoder_in_channels", "masked_average_pool"]

#: Supported ``embedding_mode`` values of :class:`ObjectEmbeddingModel`.
EMBEDDING_MODES = ("pool", "channel")


def encoder_in_channels(image_channels: int, embedding_mode: str) -> int:
    """Input channels of the encoder: the image's in ``pool`` mode, image + attention mask in ``channel`` mode."""
    if embedding_mode not in EMBEDDING_MODES:
        raise ValueError(f"embedding_mode must be one of {EMBEDDING_MODES}, got {embedding_mode!r}.")
    return int(image_channels) + (1 if embedding_mode == "channel" else 0)


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

    Args:
        encoder: maps ``(N, C_in, *S)`` to ``(N, F, *s)``; ``in_channels``/``out_channels`` attributes are used
            when present (see :func:`~semcl_components.networks.build_encoder`).
        embedding_mode: one of :data:`EMBEDDING_MODES`, ``"pool"`` or ``"channel"``.
        feature_channels: ``F``; default ``encoder.out_channels``.
        hidden_dim: hidden size of the projection head.
        projection_dim: embedding size ``D``.
        feature_norm: ``True``/``"layer"``, ``"instance"`` or ``False``/``None`` (see above).
        object_crop_size: ``channel`` mode only: spatial size of the object-centred window (``None``: whole image).

    Example::

        >>> model = ObjectEmbeddingModel(build_encoder("segresnet", init_filters=8), embedding_mode="pool")
        >>> image = torch.rand(2, 1, 32, 32, 32)
        >>> masks = [torch.rand(3, 32, 32, 32) > 0.5, torch.zeros(0, 32, 32, 32)]  # K_0 = 3, K_1 = 0
        >>> model(image, masks).shape
        torch.Size([3, 128])
    """

    def __init__(
        self,
        encoder: nn.Module,
        embedding_mode: str = "pool",
        feature_channels: int | None = None,
        hidden_dim: int = 512,
        projection_dim: int = 128,
        feature_norm: bool | str | None = True,
        object_crop_size: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if embedding_mode not in EMBEDDING_MODES:
            raise ValueError(f"embedding_mode must be one of {EMBEDDING_MODES}, got {embedding_mode!r}.")
        if feature_channels is None:
            feature_channels = getattr(encoder, "out_channels", None)
            if feature_channels is None:
                raise ValueError("feature_channels is required when the encoder has no `out_channels` attribute.")
        self.norm_kind = self._norm_kind(feature_norm)
        if object_crop_size is not None:
            object_crop_size = tuple(int(s) for s in object_crop_size)
            if any(s < 1 for s in object_crop_size):
                raise ValueError(f"object_crop_size must be positive, got {object_crop_size}.")
            if embedding_mode == "pool":
                warnings.warn("object_crop_size is used in 'channel' mode only; ignored in 'pool' mode.", stacklevel=2)
        self.encoder = encoder
        self.embedding_mode = embedding_mode
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
        if self.embedding_mode == "pool":
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
        expected = encoder_in_channels(image.shape[1], self.embedding_mode)
        encoder_in = getattr(self.encoder, "in_channels", None)
        if encoder_in is not None and encoder_in != expected:
            inputs = f"[image, mask] = {image.shape[1]} + 1" if self.embedding_mode == "channel" else "the image's"
            raise ValueError(
                f"{self.embedding_mode!r} mode feeds the encoder {inputs} = {expected} channels, "
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
