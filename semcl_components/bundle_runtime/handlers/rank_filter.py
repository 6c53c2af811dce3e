"""``handlers_for_rank``: the handlers a process of a distributed run attaches (log and TensorBoard writers on rank 0)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ignite.distributed as idist
from monai.handlers import StatsHandler, TensorBoardStatsHandler

__all__ = ["RANK_ZERO_ONLY", "handlers_for_rank"]

#: MONAI handlers that write logs or files from every process they run in, so only rank 0 attaches them.
RANK_ZERO_ONLY = (StatsHandler, TensorBoardStatsHandler)


def handlers_for_rank(handlers: Sequence[Any] | None) -> list[Any]:
    """``handlers`` as this process should attach them: all on rank 0 (or without torch.distributed); on the other
    ranks without :data:`RANK_ZERO_ONLY`.

    The other handlers stay on every rank: validation (every rank evaluates its share and MONAI gathers the metrics),
    checkpoint loading, and the writers that are rank-aware themselves, some of them through collectives that every
    rank must join: MONAI's ``CheckpointSaver`` and ``MetricsSaver``, and this package's ``RunSummaryWriter``,
    ``ConfusionMatrixWriter`` (counts summed over ranks), ``EmbeddingQualityHandler`` and ``CheckpointResumer``.
    """
    handlers = list(handlers or [])
    if idist.get_rank() == 0:
        return handlers
    return [handler for handler in handlers if not isinstance(handler, RANK_ZERO_ONLY)]
