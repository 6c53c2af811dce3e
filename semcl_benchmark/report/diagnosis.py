"""What bounds the method's gain, each point a measurement from the finished runs (the report's second section).

:func:`diagnosis` is v1's; :func:`diagnosis_v2` makes no claim that the runs do not measure (issue 21, item 6).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..statistics import crossed_bootstrap, paired_wilcoxon
from .baselines import capped_counts, collapse, contrastive_runs, pretrain_budget
from .comparison import (
    MIN_SEEDS_FOR_INTERVAL,
    TARGET_GAIN,
    beats,
    compare,
    dice_grid,
    format_difference,
    format_mean_dice,
    format_p,
    is_method,
    mean_dice,
    seed_differences,
)
from .endpoints import UPPER_BOUND_SETTING, is_atlas, probe_family, run_family, too_few_seeds
from .records import validation_points
from .time_to_accuracy import declared_reaches, reach_family

__all__ = ["SMALL_ORGAN_DICE", "diagnosis", "diagnosis_v2"]

SMALL_ORGAN_DICE = 0.5  # organs below this in every arm and setting are named in the diagnosis


def diagnosis(finetunes, embeddings, arms, settings, size) -> list[str]:
    """What bounds the method's gain, each point a measurement from the finished runs.

    - headroom: what a second labelled volume is worth to ``scratch`` (paired by seed), beside the target;
    - noise: on how many seeds each method is ahead of ``scratch``, and what p < ALPHA demands of the seeds;
    - transfer: whether the organ separation the method learns (held-out silhouette) predicts fine-tuned Dice;
    - the shortcut study: whether any variant is ahead of ``scratch``;
    - organs that stay below :data:`SMALL_ORGAN_DICE` whatever the arm and the number of labelled volumes.
    """
    methods = [a for a in arms if is_method(a)]
    if "scratch" not in arms or not methods:
        return []
    met = any(
        beats(comparison, TARGET_GAIN)
        for setting in settings
        for method in methods
        if (comparison := compare(finetunes, method, "scratch", setting)) is not None
    )
    lines = ["## What bounds the gain" if met else "## Why the method misses the target", "",
             "Each point is computed from the same result files as the tables below.", ""]
    scratch = {s: finetunes.get(("scratch", s, False), {}) for s in settings}
    if len(settings) > 1 and scratch[settings[0]] and scratch[settings[1]]:
        low, high = settings[0], settings[1]
        runs = {("more", "x", False): scratch[high], ("fewer", "x", False): scratch[low]}
        difference, p, n = compare(runs, "more", "fewer", "x")
        ratio = f", {TARGET_GAIN / difference.mean:.1f} times that" if difference.mean > 0 else ""
        little = difference.mean < TARGET_GAIN
        lines.append(
            f"- **{'Little headroom' if little else 'Headroom'}.** Going from `{low}` to `{high}` is worth "
            f"{format_difference(difference, n)} test Dice to `scratch` (paired by seed, p = {format_p(p)}, {n} seeds). The target "
            f"asks pretraining for +{TARGET_GAIN:.2f} over `scratch`{ratio}: "
            + ("on this data the low-label regime leaves little for any initialisation to add."
               if little else "more labels do help here, so there is room for pretraining.")
        )
    lines += _noise(finetunes, methods, settings, scratch)
    lines += _early_lead(finetunes, arms, settings)
    lines += _transfer(finetunes, embeddings, methods, size.study_setting or settings[0])
    lines += _study_summary(finetunes, size)
    lines += _organs_below(finetunes, arms, settings)
    return lines + [""]


def _noise(finetunes, methods, settings, scratch) -> list[str]:
    """On how many seeds each method is ahead of ``scratch``, the spread of the paired difference, the smallest p."""
    wins, spreads, seeds = [], [], 0
    for method in methods:
        for setting in settings:
            differences = seed_differences(finetunes.get((method, setting, False), {}), scratch.get(setting, {}))
            if len(differences) > 1:
                wins.append(f"`{method}`, {setting}: {sum(d > 0 for d in differences)} of {len(differences)}")
                spreads.append(float(np.std(differences, ddof=1)))
                seeds = max(seeds, len(differences))
    if wins:
        return [
            f"- **Run-to-run noise.** Seeds on which the method is ahead of `scratch`: "
            f"{'; '.join(wins)}. The paired difference varies between seeds with a standard deviation of "
            f"{min(spreads):.3f}-{max(spreads):.3f}. With {seeds} seeds the smallest two-sided Wilcoxon p is "
            f"{2 / 2 ** seeds:.4f}, reached only when the method is ahead on every seed."
        ]
    return []


def _curve(result: dict) -> dict[int, float | None]:
    """A fine-tuning run's validation Dice by epoch."""
    return {point.epoch: point.dice for point in validation_points(result)}


def _early_lead(finetunes, arms, settings) -> list[str]:
    """Validation Dice of each pretrained arm minus ``scratch`` early in fine-tuning, paired by seed.

    "Early" is the first validation epoch at which ``scratch``'s validation Dice, averaged over seeds, reaches half of
    its best (averaged likewise): where an initialisation can still make a difference before the labels have taught
    every arm. The comparison needs that epoch in the validation curves of both runs of a seed.
    """
    parts, fades = [], False
    for setting in settings:
        scratch = {s: curve for s, r in finetunes.get(("scratch", setting, False), {}).items()
                   if (curve := _curve(r))}
        if len(scratch) < MIN_SEEDS_FOR_INTERVAL:
            continue
        epochs = sorted(set.intersection(*(set(c) for c in scratch.values())))
        best = np.mean([max(v for v in c.values() if v is not None) for c in scratch.values()])
        early = next((e for e in epochs if np.mean([c[e] for c in scratch.values()]) >= best / 2), None)
        if early is None:
            continue
        cells = []
        for arm in [a for a in arms if a != "scratch"]:
            runs = finetunes.get((arm, setting, False), {})
            pairs = [(_curve(runs[s]).get(early), scratch[s][early])
                     for s in sorted(set(runs) & set(scratch))]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if len(pairs) < MIN_SEEDS_FOR_INTERVAL:
                continue
            ours, theirs = np.array(pairs).T
            lead = float(np.mean(ours - theirs))
            cells.append(f"`{arm}` {lead:+.3f} ({int(np.sum(ours > theirs))} of {len(pairs)}, "
                         f"p = {format_p(paired_wilcoxon(ours, theirs))})")
            final = compare(finetunes, arm, "scratch", setting)
            fades |= is_method(arm) and lead > 0 and final is not None and final[0].mean < lead / 2
        steps = next(iter(finetunes["scratch", setting, False].values()))["steps_per_epoch"] * early
        if cells:
            parts.append(f"{setting} (step {steps}): " + ", ".join(cells))
    if not parts:
        return []
    return [f"- **Early in fine-tuning.** Validation Dice minus `scratch`'s, paired by seed (seeds ahead, Wilcoxon p), "
            f"at the step where `scratch` reaches half its best; {'; '.join(parts)}."
            + (" By the plateau the method's lead is gone or below half (test Dice, tables below): pretraining "
               "speeds the start of fine-tuning more than it raises where fine-tuning ends." if fades else "")]


def _transfer(finetunes, embeddings, methods, setting: str) -> list[str]:
    """Whether the organ separation of pretrained encoders (held-out silhouette) predicts their fine-tuned Dice."""
    from scipy.stats import spearmanr

    silhouettes, dice = [], []
    for (arm, s, probe), runs in finetunes.items():
        if s != setting or probe or arm == "scratch":
            continue
        for seed, run in runs.items():
            source = (run["config"]["pretrain"] or {}).get("arm") or arm
            if seed in embeddings.get(source, {}):
                silhouettes.append(embeddings[source][seed]["silhouette_test"])
                dice.append(mean_dice(run))
    learned = [r["silhouette_test"] for m in methods for r in embeddings.get(m, {}).values()]
    random = [r["silhouette_test"] for r in embeddings.get("scratch", {}).values()]
    if len(silhouettes) < 3 or not learned or not random:
        return []
    rho, p = spearmanr(silhouettes, dice)
    predicts = p < 0.05
    relation = "predicts test Dice" if predicts and rho > 0 else "predicts *lower* test Dice" if predicts else (
        "does not predict test Dice")
    return [f"- **{'Organ separation and Dice go together' if predicts else 'What the method learns does not carry over'}"
            f".** Organs of held-out subjects separate with a silhouette of {np.mean(learned):.2f} in the method's "
            f"encoders against {np.mean(random):.2f} in random ones. Across the {len(silhouettes)} fine-tuning runs of "
            f"pretrained encoders on {setting} (every arm and study variant), the held-out silhouette of the encoder "
            f"{relation} (Spearman rho = {rho:+.2f}, p = {format_p(p)})"
            + ("." if predicts else ": fine-tuning learns the organs from the labels whatever the encoder knew.")]


def _study_summary(finetunes, size) -> list[str]:
    """The shortcut study in one line: how many variants are ahead of ``scratch``, and the best of them."""
    setting = size.study_setting
    differences = {}
    for arm in size.study_arms:
        paired = seed_differences(finetunes.get((arm, setting, False), {}), finetunes.get(("scratch", setting, False), {}))
        if paired:
            differences[arm] = (float(np.mean(paired)), len(paired))
    if not differences:
        return []
    best = max(differences, key=lambda a: differences[a][0])
    ahead = sum(d > 0 for d, _ in differences.values())
    short = differences[best][0] < TARGET_GAIN
    return [f"- **{'No shortcut found' if short else 'Shortcut study'}.** {ahead} of the {len(differences)} "
            f"shortcut-study variants {'is' if ahead == 1 else 'are'} ahead of `scratch` on {setting} (mean paired "
            f"difference; best `{best}`, {differences[best][0]:+.3f} over {differences[best][1]} seeds; table below)"
            + (f": no change brings the method near the +{TARGET_GAIN:.2f} target." if short else ".")]


def _low_organs(finetunes, arms, settings) -> tuple[list[str], dict[str, list[float]], dict[str, float]]:
    """Organs below :data:`SMALL_ORGAN_DICE` in every arm and setting: names, their means per arm and setting, and
    their voxels per test case."""
    means: dict[str, list[float]] = defaultdict(list)
    voxels: dict[str, float] = {}
    classes: list[str] = []
    for arm in arms:
        for setting in settings:
            runs = finetunes.get((arm, setting, False), {})
            if not runs:
                continue
            example = next(iter(runs.values()))
            classes = example["test"]["classes"]
            for organ, name in enumerate(classes):
                means[name].append(float(np.nanmean(dice_grid(runs, sorted(runs), organ))))
            matrix = example.get("confusion_matrix")
            if matrix:
                counts = np.asarray(matrix["counts"]).sum(axis=1) / len(example["test"]["cases"])
                voxels.update(zip(matrix["classes"], counts))
    return [name for name in classes if means[name] and max(means[name]) < SMALL_ORGAN_DICE], means, voxels


def _organs_named(low, means, voxels) -> str:
    return ", ".join(f"{name} ({voxels.get(name, float('nan')):.0f} voxels per test case, Dice "
                     f"{min(means[name]):.2f}-{max(means[name]):.2f})" for name in low)


def _organs_below(finetunes, arms, settings) -> list[str]:
    """Organs below :data:`SMALL_ORGAN_DICE` in every arm and setting, with their size in the test cases."""
    low, means, voxels = _low_organs(finetunes, arms, settings)
    if not low:
        return []
    return [f"- **A ceiling that labels and initialisation do not lift.** Below {SMALL_ORGAN_DICE} in every arm and "
            f"setting: {_organs_named(low, means, voxels)}. They stay low whatever the initialisation and the number of "
            "labelled volumes; they are small at this image size, where a voxel of boundary weighs heavily in Dice."]


def _seeds(n: int) -> str:
    """``n`` seeds, in words: "1 seed", "3 seeds"."""
    return f"{n} seed{'s' if n != 1 else ''}"


def diagnosis_v2(finetunes, pretrains, arms, settings, size, keys=None) -> list[str]:
    """The v2 diagnosis: each point a measurement, and no claim the runs do not measure (issue 21, item 6).

    - headroom only from the upper-bound row (``scratch`` with every training volume labelled), else "not measured";
    - each atlas against ``scratch``: whether the labelled maps alone already hold the answer;
    - run-to-run noise; time to accuracy; the frozen probes against a frozen random encoder (Holm p);
    - whether the baselines were trained to their best (budget caps, contrastive collapse, supervised plateau);
    - organs below :data:`SMALL_ORGAN_DICE` in every trained arm and setting, with the upper bound's Dice for them.

    The upper bound and the atlases are reference rows (``docs/PROTOCOL.md``, section 5): paired differences with their
    intervals, no test. ``keys``: the planned ``(arm, setting, probe)``, whose probes make the probe family (default:
    the probes with results).
    """
    methods = [a for a in arms if is_method(a)]
    if "scratch" not in arms or not methods:
        return []
    trained = [a for a in arms if not is_atlas(a)]
    limited = [s for s in settings if s != UPPER_BOUND_SETTING]
    scratch = {s: finetunes.get(("scratch", s, False), {}) for s in settings}
    lines = ["## Diagnosis", "", "Each point is computed from the same result files as the tables below.", ""]
    upper = finetunes.get(("scratch", UPPER_BOUND_SETTING, False), {})
    if upper:
        gaps = []
        for s in limited:
            pair = {("all", s, False): upper, ("scratch", s, False): scratch[s]}
            if (comparison := compare(pair, "all", "scratch", s, bootstrap=crossed_bootstrap)) is not None:
                d, _, n = comparison
                gaps.append(f"over `{s}` {format_difference(d, n)} (paired over {_seeds(n)})")
        seeds = _seeds(len(upper))
        lines.append(f"- **Headroom.** `scratch` with every training volume labelled (`{UPPER_BOUND_SETTING}`, {seeds}) "
                     f"reaches {format_mean_dice(upper, crossed_bootstrap)} test Dice; " + "; ".join(gaps)
                     + " (a reference row: no test).")
    else:
        lines.append(f"- **Headroom not measured.** No upper-bound run (`scratch` on `{UPPER_BOUND_SETTING}`) has "
                     "finished, so this report says nothing about how much room labels or initialisation leave.")
    for atlas in [a for a in arms if is_atlas(a)]:
        parts = []
        for s in limited:
            comparison = compare(finetunes, "scratch", atlas, s, bootstrap=crossed_bootstrap)
            if comparison is None:
                continue
            d, _, n = comparison
            relation = ("training beats the atlas" if d.low > 0 else "the atlas beats training" if d.high < 0
                        else "the interval includes 0")
            parts.append(f"{s}: `scratch` minus `{atlas}` {format_difference(d, n)} ({relation})")
        if parts:
            lines.append(f"- **Atlas `{atlas}` (no training).** " + "; ".join(parts) + ".")
    lines += _noise(finetunes, methods, limited, scratch)
    family = reach_family(finetunes, declared_reaches(
        {(a, s, False) for a in arms for s in settings} if keys is None else keys, settings))
    reaches = [r for r in family if r.arm in methods and r.setting in limited and r.paired > 1]
    if reaches:
        lines.append("- **Time to accuracy.** Seeds on which the method's validation Dice reaches `scratch`'s best: "
                     + "; ".join(f"`{r.arm}`, {r.setting}: {r.reached} of {r.paired}"
                                 + (f" (median step ratio {np.median(r.ratios):.2f})" if r.ratios else "")
                                 + f", Holm p = {format_p(r.holm_p)}" for r in reaches) + " (table below).")
    probe_tests = probe_family(finetunes if keys is None else keys, size.probe_setting)
    probes = run_family(finetunes, probe_tests)
    if probes:
        lines.append(f"- **Frozen probe.** Decoder trained on a frozen encoder, against a frozen *random* encoder "
                     f"({size.probe_setting}): " + "; ".join(
                         f"`{o.test.method}` {format_difference(o.difference, o.seeds)} (Holm p = {format_p(o.holm_p)}"
                         f", {o.direction})" for o in probes) + "."
                     + too_few_seeds(probes, len(probe_tests), len(size.probe_seeds) or None))
    total, capped, improving = capped_counts(finetunes)
    best = [f"{improving} of {total} fine-tuning runs ended at their budget cap while still improving ({capped} at "
            "the cap)"]
    contrastive = contrastive_runs(pretrains)
    for arm, runs in pretrains.items():
        if arm in contrastive and not is_method(arm):
            states = [collapse(record) for record in contrastive[arm].values()]
            best.append(f"`{arm}` collapsed in {states.count('collapsed')} and was near collapse in "
                        f"{states.count('near collapse')} of {len(states)} seeds")
        validating = [r["summary"] for r in runs.values() if pretrain_budget(r)]
        if validating:
            last = sum(s["best_metric_epoch"] >= s["epochs_completed"] for s in validating)
            best.append(f"`{arm}` pretraining had its best validation at its last epoch in {last} of {len(validating)} "
                        "seeds")
    lines.append("- **Baselines at their best?** " + "; ".join(best) + ". A comparison against a run that was still "
                 "improving, or an encoder that collapsed, is against less than that arm's best (table below).")
    low, means, voxels = _low_organs(finetunes, trained, limited)
    if low:
        lift = ""
        if upper:
            classes = next(iter(upper.values()))["test"]["classes"]
            lift = " With every training volume labelled, `scratch` reaches " + ", ".join(
                f"{name} {np.nanmean(dice_grid(upper, sorted(upper), classes.index(name))):.2f}" for name in low) + "."
        lines.append(f"- **Organs below {SMALL_ORGAN_DICE} in every trained arm and setting:** "
                     f"{_organs_named(low, means, voxels)}.{lift}")
    return lines + [""]
