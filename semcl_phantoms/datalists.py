"""Fixed low-label splits written as an MSD-style datalist.

The splits are disjoint: a pretraining pool, nested finetune subsets of 1, 2, 4 and 8 labelled volumes
(``finetune_1`` is inside ``finetune_2`` ... inside ``finetune_8``), a validation set and a held-out test set.
Every key holds a list of ``{"image": ..., "label": ...}`` entries, so ``monai.data.load_decathlon_datalist(path,
data_list_key="finetune_4", base_dir=dataset_dir)`` reads any of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["FINETUNE_SIZES", "make_low_label_splits"]

FINETUNE_SIZES: tuple[int, ...] = (1, 2, 4, 8)


def make_low_label_splits(
    items: Sequence[dict], seed: int = 0, test_fraction: float = 0.15, val_fraction: float = 0.1
) -> dict[str, list[dict]]:
    """Split ``items`` into pretrain / finetune_{1,2,4,8} / validation / test.

    Args:
        items: datalist entries (at least 4).
        seed: seeds the permutation; the same items and seed give the same splits.
        test_fraction: share of the held-out test set (at least one item).
        val_fraction: share of the validation set (at least one item).

    Returns:
        dict with keys ``pretrain``, ``finetune_1`` ... ``finetune_8`` (the sizes the data allows: the labelled pool is
        the largest of 1, 2, 4, 8 that leaves at least one item for pretraining), ``validation``, ``test``.
    """
    n = len(items)
    if n < 4:
        raise ValueError(f"need at least 4 items to make pretrain/finetune/validation/test splits, got {n}.")
    order = np.random.default_rng(np.random.SeedSequence((seed, 1))).permutation(n)
    shuffled = [items[i] for i in order]
    n_test = max(1, round(test_fraction * n))
    n_val = max(1, round(val_fraction * n))
    n_finetune = max(k for k in FINETUNE_SIZES if k <= max(n - n_test - n_val - 1, 1))
    test, rest = shuffled[:n_test], shuffled[n_test:]
    validation, rest = rest[:n_val], rest[n_val:]
    finetune, pretrain = rest[:n_finetune], rest[n_finetune:]
    splits: dict[str, list[dict]] = {"pretrain": pretrain}
    for size in FINETUNE_SIZES:
        if size <= n_finetune:
            splits[f"finetune_{size}"] = finetune[:size]
    splits["validation"] = validation
    splits["test"] = test
    return splits
