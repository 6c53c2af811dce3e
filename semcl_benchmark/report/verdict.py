"""The report's first lines: whether each method arm beats each baseline, setting by setting.

A method arm (name ``semcl...``) beats ``scratch`` when it gains at least :data:`TARGET_GAIN` test Dice, and any other
baseline when it gains anything, with the 95% interval above 0 and p < :data:`ALPHA` (see :func:`beats`).
"""

from __future__ import annotations

from .comparison import ALPHA, TARGET_GAIN, beats, compare, format_difference, format_p, is_method

__all__ = ["verdict"]


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
