"""``StopOnNonFiniteLoss``: a NaN or infinite loss stops training at once, naming the files of the batch."""

from __future__ import annotations

import math
from typing import Any

from ignite.engine import Engine
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys

from ...engines import step_output_dict
from ..input_checks import source_name

__all__ = ["NonFiniteLossError", "StopOnNonFiniteLoss"]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss:
    """Raise :class:`NonFiniteLossError` when a step's loss is not finite, before its backward pass and update.

    Attached to a MONAI trainer (``SupervisedTrainer``, or one stepping with ``ContrastiveIteration``), it checks the
    loss at ``IterationEvents.LOSS_COMPLETED``, so the weights never take a non-finite update and no checkpoint or
    ``model.pt`` with NaN weights is written; the message names the images of the batch. ignite's
    ``TerminateOnNan`` ends the run quietly instead, with exit code 0 and the last weights saved.

    Args:
        loss_key: the loss entry of the step output.
        image_key: the batch entry whose meta data names the files.
    """

    def __init__(self, loss_key: str = CommonKeys.LOSS, image_key: str = CommonKeys.IMAGE) -> None:
        self.loss_key = loss_key
        self.image_key = image_key

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        output = step_output_dict(engine.state.output)
        loss = None if output is None else output.get(self.loss_key)
        if loss is None:
            return
        value = float(loss.detach().float().mean()) if hasattr(loss, "detach") else float(loss)
        if math.isfinite(value):
            return
        batch: Any = engine.state.batch
        files = source_name(batch.get(self.image_key) if isinstance(batch, dict) else None, "unknown files")
        raise NonFiniteLossError(
            f"the loss became {value} at epoch {engine.state.epoch}, iteration {engine.state.iteration}, on a batch of "
            f"{files}. Nothing was written from this step. Check these images for NaN or extreme values, or lower the "
            "learning rate; then resume (the last checkpoint is intact) or start over with --resume false."
        )
