"""Networks for semantic-aware contrastive learning, one family per module.

- :mod:`.encoders`: ``SegResNetEncoder``, ``SwinUNETREncoder`` and the ``ENCODERS`` registry (``build_encoder``), with
  ``state_dict`` keys identical to those of MONAI's full networks, and ``check_init_filters`` (SegResNet's width);
- :mod:`.object_embedding`: ``ObjectEmbeddingModel`` (``pool`` or ``channel`` embedding of every object), its
  ``ProjectionHead`` and ``masked_average_pool``;
- :mod:`.weight_transfer`: ``load_pretrained_encoder`` (with an ``EncoderLoadReport``) and
  ``encoder_parameter_groups``;
- :mod:`.memory_format`: ``network_on_device`` and ``batch_to_kwargs`` (the network and its batches in channels-last
  memory order, the ``channels_last`` setting).
"""

from .encoders import (
    ENCODERS,
    SEGRESNET_NORM_GROUPS,
    SegResNetEncoder,
    SwinUNETREncoder,
    build_encoder,
    check_init_filters,
)
from .memory_format import batch_to_kwargs, network_on_device
from .object_embedding import (
    EMBEDDING_MODES,
    ObjectEmbeddingModel,
    ProjectionHead,
    encoder_in_channels,
    masked_average_pool,
)
from .weight_transfer import ENCODER_PREFIXES, EncoderLoadReport, encoder_parameter_groups, load_pretrained_encoder

__all__ = [
    "EMBEDDING_MODES",
    "ENCODERS",
    "ENCODER_PREFIXES",
    "EncoderLoadReport",
    "ObjectEmbeddingModel",
    "ProjectionHead",
    "SEGRESNET_NORM_GROUPS",
    "SegResNetEncoder",
    "SwinUNETREncoder",
    "batch_to_kwargs",
    "build_encoder",
    "check_init_filters",
    "encoder_in_channels",
    "encoder_parameter_groups",
    "load_pretrained_encoder",
    "masked_average_pool",
    "network_on_device",
]
