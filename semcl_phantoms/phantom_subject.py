"""One generated phantom subject, whatever preset drew it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["HU_MAX", "HU_MIN", "PhantomSubject"]

# the int16 range a CT scanner writes (Hounsfield units)
HU_MIN, HU_MAX = -1024, 3071


@dataclass
class PhantomSubject:
    """One generated subject.

    Attributes:
        image: int16 Hounsfield units, shape (X, Y, Z).
        label: uint8 organ labels, shape (X, Y, Z); names in ``anatomy.LABEL_NAMES``.
        phase: the contrast phase of the subject: one of ``anatomy.CONTRAST_PHASES`` (``simple``) or of
            ``enhancement.PHASE_BUCKETS`` (``realistic``: the bucket of ``contrast_time_s``).
        present: organ names present in the label map.
        contrast_time_s: seconds from the start of the contrast injection to the scan; None for an unenhanced
            (native) scan and for the ``simple`` preset, which has no contrast timing.
        spacing_mm: (x, y, z) voxel spacing in mm that matches the drawn anatomy; None where the writer decides it
            (``simple``: the anatomy fills any field of view).
    """

    image: np.ndarray
    label: np.ndarray
    phase: str
    present: list[str] = field(default_factory=list)
    contrast_time_s: float | None = None
    spacing_mm: tuple[float, float, float] | None = None
