"""``FinalValidationHandler``: MONAI's ``ValidationHandler`` that also validates the last epoch."""

from __future__ import annotations

from ignite.engine import Engine, Events
from monai.handlers import ValidationHandler

__all__ = ["FinalValidationHandler"]


class FinalValidationHandler(ValidationHandler):
    """``ValidationHandler`` that validates every ``interval`` epochs *and* after the last epoch.

    With MONAI's handler a run of ``max_epochs`` not divisible by ``interval`` (e.g. 3 epochs, validation every 5)
    never validates its last epochs, so its key-metric saver writes no ``model.pt`` (or keeps one from an earlier
    epoch) and nothing says so. Here the validator also runs when training completes, unless the last epoch was
    just validated. Epoch-level only; arguments are those of ``ValidationHandler``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not self.epoch_level:
            raise ValueError("FinalValidationHandler validates epochs: epoch_level must be True.")
        self._validated_epoch = -1

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.COMPLETED, self._validate_last_epoch)

    def __call__(self, engine: Engine) -> None:
        super().__call__(engine)
        self._validated_epoch = engine.state.epoch

    def _validate_last_epoch(self, engine: Engine) -> None:
        if engine.state.epoch > 0 and engine.state.epoch != self._validated_epoch:
            self(engine)
