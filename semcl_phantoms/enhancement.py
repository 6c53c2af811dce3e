"""Contrast timing: the time after injection -> each tissue's enhancement in Hounsfield units, and the phase bucket.

A subject of the ``realistic`` phantom is scanned at a continuous time after the start of an intravenous contrast
injection (or without contrast: a native scan). Each tissue's enhancement over its unenhanced value follows an
:class:`EnhancementCurve`: a first-pass bolus (a gamma variate that rises from the contrast's arrival to its peak and
washes out) plus an equilibrium term that builds up as contrast recirculates and distributes. The curves' timing is
the textbook one (aorta peaking at about 25-35 s, the pancreas and the renal cortex in the late arterial phase, the
liver and the portal vein at 60-75 s, the renal medulla catching up with the cortex in the nephrographic phase); the
values and their sources are tabulated in ``docs/PHANTOMS.md``.

The bucket a time falls into (:func:`phase_bucket`) is what datalists record as ``contrast_phase``, so splits can be
stratified and the organ x phase contrastive labels keep a meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PHASE_BUCKETS", "EnhancementCurve", "phase_bucket"]

PHASE_BUCKETS: tuple[str, ...] = ("native", "arterial", "portal_venous", "delayed")


def phase_bucket(time_s: float | None, arterial_end_s: float = 45.0, portal_venous_end_s: float = 110.0) -> str:
    """The phase bucket of a scan ``time_s`` seconds after injection (None: no contrast -> ``native``).

    Buckets: ``arterial`` below ``arterial_end_s``, ``portal_venous`` up to ``portal_venous_end_s``, then ``delayed``.
    """
    if time_s is None:
        return "native"
    if time_s < arterial_end_s:
        return "arterial"
    return "portal_venous" if time_s < portal_venous_end_s else "delayed"


@dataclass(frozen=True)
class EnhancementCurve:
    """Enhancement (HU above the unenhanced value) of one tissue as a function of the time after injection.

    ``bolus_hu * g(t) + equilibrium_hu * (1 - exp(-(t - arrival_s) / equilibrium_tau_s))`` for ``t > arrival_s``,
    0 before, where ``g`` is a gamma variate ``s^shape * exp(shape * (1 - s))``, ``s = (t - arrival_s) / (peak_s -
    arrival_s)``, equal to 1 at ``peak_s``.

    Attributes:
        arrival_s: seconds after the start of injection when contrast reaches the tissue.
        peak_s: seconds after injection of the first-pass peak.
        bolus_hu: height of the first-pass peak (HU).
        equilibrium_hu: enhancement the recirculating contrast builds up to (HU).
        shape: gamma-variate exponent: larger is a sharper first pass.
        equilibrium_tau_s: time constant of the build-up to equilibrium (seconds).
    """

    arrival_s: float
    peak_s: float
    bolus_hu: float
    equilibrium_hu: float
    shape: float = 2.5
    equilibrium_tau_s: float = 35.0

    def __post_init__(self) -> None:
        if not 0 <= self.arrival_s < self.peak_s:
            raise ValueError(f"need 0 <= arrival_s < peak_s, got arrival {self.arrival_s} s, peak {self.peak_s} s.")

    def bolus(self, time_s: float | None) -> float:
        """The first-pass term alone, normalised to 1 at the peak (0 before arrival and for a native scan)."""
        if time_s is None or time_s <= self.arrival_s:
            return 0.0
        s = (time_s - self.arrival_s) / (self.peak_s - self.arrival_s)
        return float(s**self.shape * np.exp(self.shape * (1.0 - s)))

    def __call__(self, time_s: float | None) -> float:
        """Enhancement in HU at ``time_s`` seconds after injection (0 for a native scan, ``time_s`` None)."""
        if time_s is None or time_s <= self.arrival_s:
            return 0.0
        build_up = 1.0 - np.exp(-(time_s - self.arrival_s) / self.equilibrium_tau_s)
        return float(self.bolus_hu * self.bolus(time_s) + self.equilibrium_hu * build_up)
