"""The report's first lines: whether the method beats its baselines.

v1 (:func:`verdict`): a method arm (name ``semcl...``) beats ``scratch`` when it gains at least :data:`TARGET_GAIN`
test Dice, and any other baseline when it gains anything, with the 95% interval above 0 and p < :data:`ALPHA` (see
:func:`beats`). v2 (:func:`primary_verdict`): the primary endpoint declared in ``docs/PROTOCOL.md``, each test with its
Holm-adjusted p over the primary family (:mod:`.endpoints`).
"""

from __future__ import annotations

from . import endpoints
from .comparison import ALPHA, TARGET_GAIN, beats, compare, format_difference, format_p, is_method

__all__ = ["primary_verdict", "verdict"]


def verdict(finetunes, arms, settings) -> list[str]:
    """One line per setting, method arm and baseline: whether the method beats the baseline, with the numbers."""
    methods = [a for a in arms if is_method(a)]
    baselines = [a for a in arms if not is_method(a)]
    if not methods or not baselines:
        return ["**No verdict yet**: the finished runs do not yet hold a method arm and a baseline side by side."]
    lines = ["## Verdict", ""]
    for setting in settings:
        for method in methods:
            for baseline in baselines:
                comparison = compare(finetunes, method, baseline, setting)
                if comparison is None:
                    continue
                difference, p, n = comparison
                target = TARGET_GAIN if baseline == "scratch" else 0.0
                outcome = "beats" if beats(comparison, target) else "does **not** (yet) beat"
                need = f" by >= {target:.2f}" if target else ""
                lines.append(
                    f"- {setting}: `{method}` {outcome} `{baseline}`{need} at p < {ALPHA}: difference "
                    f"{format_difference(difference, n)}, p = {format_p(p)}, {n} paired seeds."
                )
    if len(lines) == 2:
        lines.append("No paired comparison is complete yet.")
    return lines


def primary_verdict(outcomes, target: float = TARGET_GAIN) -> list[str]:
    """The primary endpoint's verdict (v2): one line per declared test, with its raw and Holm-adjusted p.

    A test shows a gain (or a loss) when its Holm-adjusted p over the primary family is below
    :data:`~.endpoints.ALPHA` (v1's :data:`ALPHA` applies to v1's verdict only); each line also says whether the
    estimate reaches the ``target`` gain.
    """
    declared = len(endpoints.primary_family())
    if not outcomes:
        return ["## Verdict (primary endpoint)", "",
                f"**No verdict yet**: none of the {declared} primary tests (`docs/PROTOCOL.md`) has paired runs."]
    lines = ["## Verdict (primary endpoint)", "",
             f"Mean test Dice at the validation plateau, method against `scratch`, paired by seed; two-sided Wilcoxon "
             f"p, Holm-adjusted over the {declared} declared primary tests (a test without results yet counted as "
             "p = 1); 95% intervals by crossed bootstrap over seeds and the shared test cases.", ""]
    for o in outcomes:
        t = o.test
        reach = "reaches" if o.difference.mean >= target else "is below"
        disagree = (" (the bootstrap interval still includes 0)"
                    if o.significant and o.difference.low <= 0 <= o.difference.high else "")
        lines.append(f"- {t.setting}: `{t.method}` vs `{t.baseline}`: **{o.direction}**{disagree}, difference "
                     f"{format_difference(o.difference, o.seeds)}, p = {format_p(o.p)}, Holm p = "
                     f"{format_p(o.holm_p)}, {o.seeds} paired seeds; the estimate {reach} the +{target:.2f} target.")
    gains = sum(o.direction == "gain" for o in outcomes)
    losses = sum(o.direction == "loss" for o in outcomes)
    missing = f" ({declared - len(outcomes)} of {declared} without results yet)" if len(outcomes) < declared else ""
    lines += ["", f"Of {len(outcomes)} primary tests with results{missing}, {gains} show a significant gain and "
                  f"{losses} a significant loss (Holm p < {endpoints.ALPHA})."
              + endpoints.too_few_seeds(outcomes, declared)]
    return lines
