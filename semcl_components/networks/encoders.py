"""Encoders: the encoder halves of MONAI's ``SegResNet`` and ``SwinUNETR``, and a registry to build them by name.

Each encoder is built by MONAI's own network code, so its ``state_dict`` keys are *identical* to the corresponding keys
of the full segmentation network (``convInit.*``/``down_layers.*``, ``swinViT.*``) and pretrained weights transfer by
name (:func:`~semcl_components.networks.load_pretrained_encoder`). Every encoder maps ``(B, in_channels, *S)`` to its
deepest feature map ``(B, out_channels, *s)`` and has ``in_channels``/``out_channels`` attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from monai.networks.nets import SegResNet, SwinUNETR

from .object_embedding import encoder_in_channels

__all__ = [
    "ENCODERS",
    "SEGRESNET_NORM_GROUPS",
    "SegResNetEncoder",
    "SwinUNETREncoder",
    "build_encoder",
    "check_init_filters",
]

#: Groups of ``SegResNet``'s default normalisation (``("GROUP", {"num_groups": 8})``).
SEGRESNET_NORM_GROUPS = 8


def check_init_filters(init_filters: int, num_groups: int = SEGRESNET_NORM_GROUPS) -> int:
    """Return the ``init_filters`` setting of a ``SegResNet`` unchanged, after checking that the network can use it.

    ``SegResNet``'s group normalisation splits the channels of every layer (``init_filters`` and its doublings) into
    ``num_groups`` groups, so ``init_filters`` must be a positive multiple of it; otherwise ``torch`` fails deep inside
    ``GroupNorm`` without naming the setting. The bundle configs pass ``init_filters`` through this function.

    Raises:
        ValueError: naming the setting, the rule and the nearest valid values.
    """
    valid = isinstance(init_filters, int) and not isinstance(init_filters, bool) and init_filters > 0
    if not valid or init_filters % num_groups:
        below = max(num_groups, init_filters - init_filters % num_groups) if valid else num_groups
        raise ValueError(
            f"init_filters must be a positive multiple of {num_groups} (SegResNet's group normalisation splits every "
            f"layer's channels into {num_groups} groups), got {init_filters!r}; use e.g. {below} or "
            f"{below + num_groups} (--init_filters, or init_filters in configs/common.yaml)."
        )
    return init_filters


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
        kwargs: further ``SegResNet`` arguments that shape the encoder (``norm``, ``act``, ``dropout_prob``: dropout
            after the first convolution), with ``SegResNet``'s defaults.

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
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if len(blocks_down) < 1:
            raise ValueError(f"blocks_down must name at least one stage, got {blocks_down}.")
        if "norm" not in kwargs:
            check_init_filters(init_filters)
        arguments = {"blocks_down": tuple(blocks_down), "blocks_up": ()}  # no decoder
        arguments.update(spatial_dims=spatial_dims, init_filters=init_filters, in_channels=in_channels)
        net = SegResNet(**arguments, **kwargs)
        self.in_channels = in_channels
        self.out_channels = init_filters * 2 ** (len(blocks_down) - 1)
        self.convInit = net.convInit
        self.dropout = getattr(net, "dropout", None)  # SegResNet has one only with a dropout_prob
        self.down_layers = net.down_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> deepest feature map ``(B, out_channels, *s)``, as ``SegResNet.encode``."""
        x = self.convInit(x)
        if self.dropout is not None:
            x = self.dropout(x)
        for down in self.down_layers:
            x = down(x)
        return x


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
        normalize: layer-normalise the hidden states over channels, as ``SwinUNETR`` does (default ``True``).
        kwargs: further ``SwinUNETR`` arguments (``num_heads``, ``window_size``, ``use_v2``, ``drop_rate``,
            ``use_checkpoint``, ...), with ``SwinUNETR``'s defaults.

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
        normalize: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if len(depths) != 4:
            raise ValueError(f"SwinUNETR has 4 stages: depths must have 4 entries, got {depths}.")
        arguments = {"in_channels": in_channels, "out_channels": 1, "patch_size": patch_size, "depths": depths}
        arguments.update(feature_size=feature_size, normalize=normalize, spatial_dims=spatial_dims)
        net = SwinUNETR(**arguments, **kwargs)
        self.in_channels = in_channels
        self.patch_size = patch_size
        self.normalize = normalize
        self.out_channels = feature_size * 2 ** len(depths)
        self.swinViT = net.swinViT

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> deepest hidden state ``(B, out_channels, *S / (16 * patch_size))``."""
        divisor = self.patch_size**5
        if any(s % divisor for s in x.shape[2:]):
            raise ValueError(
                f"SwinUNETREncoder needs spatial sizes divisible by patch_size**5 = {divisor}, got input shape "
                f"{tuple(x.shape)}."
            )
        return self.swinViT(x, self.normalize)[-1]


#: Encoder classes by backbone name; a new backbone is one class here and one entry in this registry.
ENCODERS: dict[str, type[nn.Module]] = {"segresnet": SegResNetEncoder, "swinunetr": SwinUNETREncoder}


def build_encoder(
    name: str, image_channels: int = 1, embedding_mode: str = "pool", spatial_dims: int = 3, **kwargs: Any
) -> nn.Module:
    """Build the encoder of an :class:`~semcl_components.networks.ObjectEmbeddingModel` by backbone name.

    The input channels follow from the embedding mode (:func:`encoder_in_channels`): the image's channels in
    ``pool`` mode, one more (the attention mask) in ``channel`` mode.

    Args:
        name: a key of :data:`ENCODERS` (case-insensitive): ``"segresnet"`` or ``"swinunetr"``.
        image_channels: channels ``C`` of the image.
        embedding_mode: ``"pool"`` or ``"channel"`` (see ``ObjectEmbeddingModel``).
        spatial_dims: 2 or 3.
        kwargs: the encoder's own arguments (``init_filters``/``blocks_down`` or ``feature_size``/``depths``...),
            the same as the segmentation network that will receive the weights.

    Raises:
        ValueError: for an unknown backbone name or embedding mode.
    """
    key = name.lower()
    if key not in ENCODERS:
        raise ValueError(f"Unknown encoder {name!r}; choose one of {sorted(ENCODERS)}.")
    in_channels = encoder_in_channels(image_channels, embedding_mode)
    return ENCODERS[key](spatial_dims=spatial_dims, in_channels=in_channels, **kwargs)
