"""``EncoderWarmup``: the encoder's learning rate starts at 0 (frozen, then ramped up) while the new decoder trains."""

from __future__ import annotations

from ignite.engine import Engine, Events
from ignite.handlers import PiecewiseLinear
from torch.optim import Optimizer

__all__ = ["EncoderWarmup"]


class EncoderWarmup:
    """Hold the learning rate of the optimizer's encoder parameter group at 0 for the first epochs, then ramp it
    linearly to its configured value.

    A pretrained encoder joined to a random decoder receives large, random gradients in the first steps, which can
    overwrite what pretraining learned before the decoder makes use of it. Two remedies, alone or together: a freeze
    (``freeze_epochs``: the encoder's rate is 0, so only the decoder learns, on the pretrained features: a linear
    probe, then fine-tuning) and a warm-up (``warmup_epochs``: after the freeze, the rate rises linearly from 0). The
    decoder trains at its full rate from the start. With ``F = freeze_epochs * epoch_length`` and
    ``W = warmup_epochs * epoch_length`` iterations, the encoder group's rate at iteration ``i`` (1-based) of a run is
    ``0`` while ``i - 1 < F``, then ``base * min(1, (i - 1 - F) / W)`` (``W = 0``: ``base`` at once), ignite's
    ``PiecewiseLinear`` on that group. Its position is set from the engine's iteration, so a run resumed from a
    checkpoint continues the schedule where it stopped. ``freeze_epochs = warmup_epochs = 0`` attaches nothing.

    While the rate is 0 the encoder's tensors do not move (AdamW's decoupled weight decay is scaled by the rate too);
    the optimizer still keeps its running gradient moments for them, so the first steps after the freeze use the
    moments of the frozen epochs.

    The encoder group is the optimizer's parameter group named ``group_name``
    (:func:`semcl_components.networks.encoder_parameter_groups` names it ``"encoder"``).

    Args:
        optimizer: the trainer's optimizer, built from named parameter groups.
        warmup_epochs: epochs over which the encoder's rate rises to its configured value, after the freeze (>= 0).
        group_name: the ``"name"`` of the encoder's parameter group.
        freeze_epochs: epochs at the start during which the encoder's rate is 0 (>= 0).

    Raises:
        ValueError: ``warmup_epochs`` or ``freeze_epochs`` is negative, or one is positive and no parameter group has
            that name.
    """

    def __init__(
        self, optimizer: Optimizer, warmup_epochs: int = 0, group_name: str = "encoder", freeze_epochs: int = 0
    ) -> None:
        for what, epochs in (("warm-up", warmup_epochs), ("freeze", freeze_epochs)):
            if epochs < 0:
                raise ValueError(f"encoder {what} epochs must be >= 0, got {epochs}.")
        self.optimizer = optimizer
        self.warmup_epochs, self.freeze_epochs = int(warmup_epochs), int(freeze_epochs)
        names = [group.get("name") for group in optimizer.param_groups]
        self.group_index = names.index(group_name) if group_name in names else None
        if self.scheduled and self.group_index is None:
            raise ValueError(
                f"encoder freeze or warm-up: the optimizer has no parameter group named {group_name!r} (its groups: "
                f"{names}); build its parameters with semcl_components.networks.encoder_parameter_groups."
            )
        # read before a checkpoint is loaded into the optimizer: the configured rate, not a warmed-up fraction of it
        self.base_lr = None if self.group_index is None else float(optimizer.param_groups[self.group_index]["lr"])
        self.scheduler: PiecewiseLinear | None = None

    @property
    def scheduled(self) -> bool:
        """Whether the encoder's rate follows a schedule (a freeze or a warm-up)."""
        return bool(self.warmup_epochs or self.freeze_epochs)

    def milestones(self, epoch_length: int) -> list[tuple[int, float]]:
        """``PiecewiseLinear``'s ``(iteration index, rate)`` points: 0 until the freeze ends, ``base_lr`` once the
        warm-up after it has ended (the rate before the first point is the first point's)."""
        frozen = self.freeze_epochs * epoch_length
        return [(frozen, 0.0), (frozen + self.warmup_epochs * epoch_length, float(self.base_lr or 0.0))]

    def attach(self, engine: Engine) -> None:
        if self.scheduled:
            engine.add_event_handler(Events.ITERATION_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        points = self.milestones(engine.state.epoch_length or 1)
        if self.scheduler is None or self.scheduler.milestones != [i for i, _ in points]:
            self.scheduler = PiecewiseLinear(self.optimizer, "lr", points, param_group_index=self.group_index)
        self.scheduler.event_index = engine.state.iteration - 1  # from the engine: a resumed run continues the schedule
        self.scheduler(engine)
