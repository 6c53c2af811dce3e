"""``EncoderWarmup``: the encoder's learning rate ramps up from 0 while the freshly initialised decoder trains."""

from __future__ import annotations

from ignite.engine import Engine, Events
from ignite.handlers import PiecewiseLinear
from torch.optim import Optimizer

__all__ = ["EncoderWarmup"]


class EncoderWarmup:
    """Ramp the learning rate of the optimizer's encoder parameter group linearly from 0 over the first epochs.

    A pretrained encoder joined to a random decoder receives large, random gradients in the first steps, which can
    overwrite what pretraining learned before the decoder makes use of it. With a warm-up the decoder trains at its
    full rate from the start and the encoder follows: at iteration ``i`` (1-based) of a run the encoder group's rate
    is ``base * min(1, (i - 1) / (warmup_epochs * epoch_length))``, ignite's ``PiecewiseLinear`` on that group. Its
    position is set from the engine's iteration, so a run resumed from a checkpoint continues the ramp where it
    stopped. ``warmup_epochs=0`` attaches nothing.

    The encoder group is the optimizer's parameter group named ``group_name``
    (:func:`semcl_components.networks.encoder_parameter_groups` names it ``"encoder"``).

    Args:
        optimizer: the trainer's optimizer, built from named parameter groups.
        warmup_epochs: epochs over which the encoder's rate rises to its configured value (>= 0).
        group_name: the ``"name"`` of the encoder's parameter group.

    Raises:
        ValueError: ``warmup_epochs`` is negative, or it is positive and no parameter group has that name.
    """

    def __init__(self, optimizer: Optimizer, warmup_epochs: int, group_name: str = "encoder") -> None:
        if warmup_epochs < 0:
            raise ValueError(f"encoder warm-up epochs must be >= 0, got {warmup_epochs}.")
        self.optimizer = optimizer
        self.warmup_epochs = int(warmup_epochs)
        names = [group.get("name") for group in optimizer.param_groups]
        self.group_index = names.index(group_name) if group_name in names else None
        if self.warmup_epochs and self.group_index is None:
            raise ValueError(
                f"encoder warm-up: the optimizer has no parameter group named {group_name!r} (its groups: {names}); "
                "build its parameters with semcl_components.networks.encoder_parameter_groups."
            )
        # read before a checkpoint is loaded into the optimizer: the configured rate, not a warmed-up fraction of it
        self.base_lr = None if self.group_index is None else float(optimizer.param_groups[self.group_index]["lr"])
        self.scheduler: PiecewiseLinear | None = None

    def attach(self, engine: Engine) -> None:
        if self.warmup_epochs:
            engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        iterations = self.warmup_epochs * (engine.state.epoch_length or 1)
        if self.scheduler is None or self.scheduler.milestones[-1] != iterations:
            ramp = [(0, 0.0), (iterations, self.base_lr)]
            self.scheduler = PiecewiseLinear(self.optimizer, "lr", ramp, param_group_index=self.group_index)
        self.scheduler.event_index = engine.state.iteration - 1  # from the engine: a resumed run continues the ramp
        self.scheduler(engine)
