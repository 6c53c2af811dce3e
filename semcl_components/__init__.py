"""Semantic-aware contrastive learning for multi-object medical image segmentation (MONAI components).

Modules:
    transforms: semantic attention-mask generation (array + dictionary transforms).
    losses: the semantic-aware supervised contrastive loss.
    networks: encoders, object-embedding model, encoder -> segmentation transfer.
    engines: the contrastive training step for MONAI/ignite trainers.
    data: the embedded multi-organ CT phantom generator and its datalists.
"""

__version__ = "0.1.0"
