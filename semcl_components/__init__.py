"""Semantic-aware contrastive learning for multi-object medical image segmentation (MONAI components).

Modules:
    transforms: semantic attention-mask generation (array + dictionary transforms).
    losses: the semantic-aware supervised contrastive loss.
    networks: encoders, object-embedding model, encoder -> segmentation transfer.
    cascade: stage 2 of the coarse-to-fine cascade (organ-by-organ refinement of a prior, stitched).
    engines: the contrastive training step for MONAI/ignite trainers.
    collate, distributed, metrics, embedding_quality: batching of object lists, gathering across ranks, embedding
        monitors and organ separation.
    bundle_runtime: what the bundle's workflows need besides the method (input checks, override checks, datalists,
        handlers, atomic writing, run locks).

The bundle configs find the package through one item (``semcl_components: "$...pkgutil.resolve_name(...)"``: the
installed package, else the copy in a model-zoo bundle's ``scripts/`` folder), name its components by their dotted
paths with ``_requires_: '@semcl_components'``, and reach its functions through that item in the few expressions
they keep; importing the package imports every module those use.
"""

__version__ = "0.1.0"

from . import (  # noqa: E402  (after __version__, which the submodules may read)
    bundle_runtime,
    cascade,
    collate,
    distributed,
    embedding_quality,
    engines,
    losses,
    metrics,
    networks,
    transforms,
)

__all__ = [
    "bundle_runtime",
    "cascade",
    "collate",
    "distributed",
    "embedding_quality",
    "engines",
    "losses",
    "metrics",
    "networks",
    "transforms",
]
