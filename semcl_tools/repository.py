"""Where things are in the source checkout: the tools and the benchmark run the repository's own bundle.

The packages are installed in editable mode (``pip install -e .``, as ``scripts/setup_env.sh`` does), so the checkout
is the folder above this package.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUNDLE", "CONFIGS", "ROOT"]

ROOT = Path(__file__).resolve().parents[1]
"""The repository checkout."""

BUNDLE = ROOT / "bundles" / "abdomen_ct_semcl_segmentation"
"""The bundle folder."""

CONFIGS = BUNDLE / "configs"
"""The bundle's config files."""
