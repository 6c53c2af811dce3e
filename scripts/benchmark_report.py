"""The benchmark report, regenerated from the result JSON files alone (see ``scripts/benchmark.py``).

Statistics take the training run as the unit: per arm and setting, the mean test Dice with a two-level bootstrap 95%
interval over seeds and test cases; each method arm against each baseline, the paired difference (same seeds, same
cases) with its interval and a two-sided Wilcoxon signed-rank p-value over seeds. Where the method does not beat a
baseline, the report's first lines say so, followed by what bounds the gain, measured from the same runs (what a
second labelled volume is worth, run-to-run noise, whether organ separation predicts Dice, the shortcut study, organs
that no arm learns).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from semcl_components.atomic_io import atomic_write
from semcl_components.embedding_quality import plot_embedding_projections
from semcl_components.handlers.confusion_matrix import plot_confusion_matrix
from semcl_components.statistics import Estimate, hierarchical_bootstrap, paired_wilcoxon

__all__ = ["compare", "load_results", "mean_dice", "write_report"]

TARGET_GAIN = 0.05  # the target: +5 Dice points over random init
ALPHA = 0.01


def _load(planned: Sequence, result_file: Callable) -> dict[str, dict]:
    """The result of every planned run whose file exists with the run's configuration hash, by run key."""
    found = {}
    for run in planned:
        path = result_file(run)
        if path.is_file():
            result = json.loads(path.read_text())
            if result.get("config_hash") == run.hash:
                found[run.key] = result
    return found


def _case_means(result: dict) -> np.ndarray:
    """Mean Dice over the organs of every test case of one run (organs absent from a case left out)."""
    dice = np.array([[np.nan if v is None else v for v in row] for row in result["test"]["dice"]], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nanmean(dice, axis=1)


def mean_dice(result: dict) -> float:
    """A run's mean test Dice: the mean over test cases of each case's mean organ Dice."""
    return float(np.nanmean(_case_means(result)))


def _grid(runs: dict[int, dict], seeds: Sequence[int], organ: int | None = None) -> np.ndarray:
    """``(seeds, cases)`` of the case-mean Dice (or one organ's Dice) of the given seeds' runs."""
    rows = []
    for seed in seeds:
        result = runs[seed]
        if organ is None:
            rows.append(_case_means(result))
        else:
            rows.append([np.nan if row[organ] is None else row[organ] for row in result["test"]["dice"]])
    return np.asarray(rows, dtype=np.float64)


MIN_SEEDS_FOR_INTERVAL = 2  # one run is one sample: resampling its test cases alone would feign precision


def _fmt(estimate: Estimate, seeds: int) -> str:
    if seeds < MIN_SEEDS_FOR_INTERVAL:
        return f"{estimate.mean:.3f} [no interval: 1 seed]"
    return f"{estimate.mean:.3f} [{estimate.low:.3f}, {estimate.high:.3f}]"


def _signed(estimate: Estimate, seeds: int) -> str:
    if seeds < MIN_SEEDS_FOR_INTERVAL:
        return f"{estimate.mean:+.3f} [no interval: 1 seed]"
    return f"{estimate.mean:+.3f} [{estimate.low:+.3f}, {estimate.high:+.3f}]"


def _p(p: float) -> str:
    return "n/a" if p != p else f"{p:.4f}"


def load_results(planned: Sequence, result_file: Callable, results: dict[str, dict] | None = None) -> tuple[dict, dict, dict]:
    """The finished runs among ``planned``, by stage: ``(finetunes, pretrains, embeddings)``.

    ``finetunes[arm, setting, probe][seed]``, ``pretrains[arm][seed]`` and ``embeddings[arm][seed]`` are the result
    dicts of the runs whose file (``result_file(run)``) exists with the run's configuration hash (or of ``results``,
    such runs already read, by run key).
    """
    finetunes: dict[tuple[str, str, bool], dict[int, dict]] = defaultdict(dict)
    pretrains: dict[str, dict[int, dict]] = defaultdict(dict)
    embeddings: dict[str, dict[int, dict]] = defaultdict(dict)
    for result in (_load(planned, result_file) if results is None else results).values():
        config = result["config"]
        if config["stage"] == "finetune":
            finetunes[config["arm"], config["setting"], config["probe"]][config["seed"]] = result
        else:
            (pretrains if config["stage"] == "pretrain" else embeddings)[config["arm"]][config["seed"]] = result
    return finetunes, pretrains, embeddings


def write_report(size, planned: Sequence, result_file: Callable, report: Path, command: str) -> None:
    """Write ``report`` (Markdown) and its plots (``<report folder or results>/plots``) from the finished runs."""
    results = _load(planned, result_file)
    finetunes, pretrains, embeddings = load_results(planned, result_file, results)
    plots = Path(result_file(planned[0]).parent if planned else report.parent) / "plots"
    arms = [arm for arm in size.arms if any(key[0] == arm for key in finetunes)]
    settings = [s for s in size.settings if any(key[1] == s for key in finetunes)]
    lines: list[str] = [f"# Benchmark results: {size.name} size", ""]
    lines += _verdict(finetunes, arms, settings)
    lines += ["", f"Runs finished: {len(results)} of {len(planned)} planned ({size.notes}).", ""]
    lines += _diagnosis(finetunes, embeddings, arms, settings, size)
    lines += _headline(finetunes, arms, settings)
    lines += _comparisons(finetunes, arms, settings)
    lines += _per_organ(finetunes, arms, settings)
    lines += _probe(finetunes, size)
    lines += _pretraining(pretrains, [a for a in size.arms if a in pretrains])
    lines += _cost(finetunes, pretrains, arms)
    lines += _embedding(embeddings, [a for a in size.arms if a in embeddings], plots, report)
    lines += _embedding_during_pretraining(pretrains, [a for a in size.arms if a in pretrains], plots, report)
    lines += _steps_to_scratch(finetunes, arms, settings)
    lines += _study(finetunes, pretrains, embeddings, size, planned)
    lines += _plots(finetunes, arms, settings, plots, report)
    lines += _provenance(results, command, size)
    with atomic_write(report) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _verdict(finetunes, arms, settings) -> list[str]:
    methods = [a for a in arms if a.startswith("semcl")]
    baselines = [a for a in arms if not a.startswith("semcl")]
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
                verdict = "beats" if _beats(comparison, target) else "does **not** (yet) beat"
                need = f" by >= {target:.2f}" if target else ""
                lines.append(
                    f"- {setting}: `{method}` {verdict} `{baseline}`{need} at p < {ALPHA}: difference "
                    f"{_signed(difference, n)}, p = {_p(p)}, {n} paired seeds."
                )
    if len(lines) == 2:
        lines.append("No paired comparison is complete yet.")
    return lines


def _beats(comparison, target: float) -> bool:
    """Whether a :func:`compare` result shows a gain of at least ``target``, its interval above 0, at p < ALPHA."""
    difference, p, n = comparison
    return n >= MIN_SEEDS_FOR_INTERVAL and difference.mean >= target and difference.low > 0 and p < ALPHA


def _seed_differences(runs: dict[int, dict], baseline: dict[int, dict]) -> list[float]:
    """Mean test Dice of ``runs`` minus that of ``baseline``, one per seed both hold."""
    return [mean_dice(runs[s]) - mean_dice(baseline[s]) for s in sorted(set(runs) & set(baseline))]


SMALL_ORGAN_DICE = 0.5  # organs below this in every arm and setting are named in the diagnosis


def _diagnosis(finetunes, embeddings, arms, settings, size) -> list[str]:
    """What bounds the method's gain, each point a measurement from the finished runs.

    - headroom: what a second labelled volume is worth to ``scratch`` (paired by seed), beside the target;
    - noise: on how many seeds each method is ahead of ``scratch``, and what p < ALPHA demands of the seeds;
    - transfer: whether the organ separation the method learns (held-out silhouette) predicts fine-tuned Dice;
    - the shortcut study: whether any variant is ahead of ``scratch``;
    - organs that stay below :data:`SMALL_ORGAN_DICE` whatever the arm and the number of labelled volumes.
    """
    methods = [a for a in arms if a.startswith("semcl")]
    if "scratch" not in arms or not methods:
        return []
    met = any(
        _beats(comparison, TARGET_GAIN)
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
            f"{_signed(difference, n)} test Dice to `scratch` (paired by seed, p = {_p(p)}, {n} seeds). The target "
            f"asks pretraining for +{TARGET_GAIN:.2f} over `scratch`{ratio}: "
            + ("on this data the low-label regime leaves little for any initialisation to add."
               if little else "more labels do help here, so there is room for pretraining.")
        )
    wins, spreads, seeds = [], [], 0
    for method in methods:
        for setting in settings:
            differences = _seed_differences(finetunes.get((method, setting, False), {}), scratch.get(setting, {}))
            if len(differences) > 1:
                wins.append(f"`{method}`, {setting}: {sum(d > 0 for d in differences)} of {len(differences)}")
                spreads.append(float(np.std(differences, ddof=1)))
                seeds = max(seeds, len(differences))
    if wins:
        lines.append(
            f"- **Run-to-run noise.** Seeds on which the method is ahead of `scratch`: "
            f"{'; '.join(wins)}. The paired difference varies between seeds with a standard deviation of "
            f"{min(spreads):.3f}-{max(spreads):.3f}. With {seeds} seeds the smallest two-sided Wilcoxon p is "
            f"{2 / 2 ** seeds:.4f}, reached only when the method is ahead on every seed."
        )
    lines += _early_lead(finetunes, arms, settings)
    lines += _transfer(finetunes, embeddings, methods, size.study_setting or settings[0])
    lines += _study_summary(finetunes, size)
    lines += _organs_below(finetunes, arms, settings)
    return lines + [""]


def _early_lead(finetunes, arms, settings) -> list[str]:
    """Validation Dice of each pretrained arm minus ``scratch`` early in fine-tuning, paired by seed.

    "Early" is the first validation epoch at which ``scratch``'s validation Dice, averaged over seeds, reaches half of
    its best (averaged likewise): where an initialisation can still make a difference before the labels have taught
    every arm. The comparison needs that epoch in the validation curves of both runs of a seed.
    """
    parts, fades = [], False
    for setting in settings:
        scratch = {s: dict(r["validation_curve"]) for s, r in finetunes.get(("scratch", setting, False), {}).items()
                   if r.get("validation_curve")}
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
            pairs = [(dict(runs[s]["validation_curve"]).get(early), scratch[s][early])
                     for s in sorted(set(runs) & set(scratch))]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            if len(pairs) < MIN_SEEDS_FOR_INTERVAL:
                continue
            ours, theirs = np.array(pairs).T
            lead = float(np.mean(ours - theirs))
            cells.append(f"`{arm}` {lead:+.3f} ({int(np.sum(ours > theirs))} of {len(pairs)}, "
                         f"p = {_p(paired_wilcoxon(ours, theirs))})")
            final = compare(finetunes, arm, "scratch", setting)
            fades |= arm.startswith("semcl") and lead > 0 and final is not None and final[0].mean < lead / 2
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
            f"{relation} (Spearman rho = {rho:+.2f}, p = {_p(p)})"
            + ("." if predicts else ": fine-tuning learns the organs from the labels whatever the encoder knew.")]


def _study_summary(finetunes, size) -> list[str]:
    """The shortcut study in one line: how many variants are ahead of ``scratch``, and the best of them."""
    setting = size.study_setting
    differences = {}
    for arm in size.study_arms:
        paired = _seed_differences(finetunes.get((arm, setting, False), {}), finetunes.get(("scratch", setting, False), {}))
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


def _organs_below(finetunes, arms, settings) -> list[str]:
    """Organs below :data:`SMALL_ORGAN_DICE` in every arm and setting, with their size in the test cases."""
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
                means[name].append(float(np.nanmean(_grid(runs, sorted(runs), organ))))
            matrix = example["confusion_matrix"]
            counts = np.asarray(matrix["counts"]).sum(axis=1) / len(example["test"]["cases"])
            voxels.update(zip(matrix["classes"], counts))
    low = [name for name in classes if means[name] and max(means[name]) < SMALL_ORGAN_DICE]
    if not low:
        return []
    named = ", ".join(f"{name} ({voxels.get(name, float('nan')):.0f} voxels per test case, Dice "
                      f"{min(means[name]):.2f}-{max(means[name]):.2f})" for name in low)
    return [f"- **A ceiling that labels and initialisation do not lift.** Below {SMALL_ORGAN_DICE} in every arm and "
            f"setting: {named}. They stay low whatever the initialisation and the number of labelled volumes; they are "
            "small at this image size, where a voxel of boundary weighs heavily in Dice."]


def compare(finetunes, method: str, baseline: str, setting: str, probe: bool = False):
    """``method`` against ``baseline`` in ``setting``, paired by seed: ``(difference, Wilcoxon p, seeds)`` or ``None``.

    ``difference`` is the two-level bootstrap estimate (mean and 95% interval over seeds and test cases) of the
    difference in case-mean test Dice; ``p`` is NaN with one seed.
    """
    a, b = finetunes.get((method, setting, probe), {}), finetunes.get((baseline, setting, probe), {})
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    grid_a, grid_b = _grid(a, seeds), _grid(b, seeds)
    difference = hierarchical_bootstrap(grid_a, grid_b)
    p = paired_wilcoxon(np.nanmean(grid_a, axis=1), np.nanmean(grid_b, axis=1)) if len(seeds) > 1 else float("nan")
    return difference, p, len(seeds)


def _headline(finetunes, arms, settings) -> list[str]:
    lines = ["## Mean test Dice per arm (95% CI over seeds and test cases)", ""]
    lines.append("| arm | " + " | ".join(settings) + " |")
    lines.append("| --- |" + " --- |" * len(settings))
    for arm in arms:
        cells = []
        for setting in settings:
            runs = finetunes.get((arm, setting, False), {})
            cells.append(f"{_fmt(hierarchical_bootstrap(_grid(runs, sorted(runs))), len(runs))} (n={len(runs)})" if runs else "-")
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    return lines + [""]


def _comparisons(finetunes, arms, settings) -> list[str]:
    lines = ["## Method against each baseline (paired by seed)", "",
             "| setting | method | baseline | difference [95% CI] | Wilcoxon p | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for setting in settings:
        for method in [a for a in arms if a.startswith("semcl")]:
            for baseline in [a for a in arms if not a.startswith("semcl")]:
                comparison = compare(finetunes, method, baseline, setting)
                if comparison is not None:
                    difference, p, n = comparison
                    lines.append(f"| {setting} | `{method}` | `{baseline}` | {_signed(difference, n)} | {_p(p)} | {n} |")
    return lines + [""]


def _per_organ(finetunes, arms, settings) -> list[str]:
    lines = []
    for setting in settings:
        runs_by_arm = {arm: finetunes.get((arm, setting, False), {}) for arm in arms}
        example = next((r for runs in runs_by_arm.values() for r in runs.values()), None)
        if example is None:
            continue
        organs = example["test"]["classes"]
        lines += [f"## Per-organ test Dice, {setting} (mean over seeds and cases)", "",
                  "| arm | " + " | ".join(organs) + " |", "| --- |" + " --- |" * len(organs)]
        for arm, runs in runs_by_arm.items():
            if runs:
                cells = [f"{np.nanmean(_grid(runs, sorted(runs), organ)):.3f}" for organ in range(len(organs))]
                lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _probe(finetunes, size) -> list[str]:
    probes = {key[0]: runs for key, runs in finetunes.items() if key[2]}
    if not probes:
        return []
    lines = [f"## Frozen-encoder probe ({size.probe_setting}: only the decoder trains)", "",
             "| arm | test Dice [95% CI] | seeds |", "| --- | --- | --- |"]
    for arm, runs in probes.items():
        lines.append(f"| `{arm}` | {_fmt(hierarchical_bootstrap(_grid(runs, sorted(runs))), len(runs))} | {len(runs)} |")
    return lines + [""]


def _pretraining(pretrains, arms) -> list[str]:
    """How each contrastive pretraining ended: the collapse monitors of its last epoch (mean over seeds)."""
    contrastive = [a for a in arms if any("final_negative_cosine" in r["summary"] for r in pretrains[a].values())]
    if not contrastive:
        return []
    lines = ["## Contrastive pretraining at its last epoch (collapse monitors, mean over seeds)", "",
             "A negative cosine near the positive one (both near 1) and an embedding spread near 0 mean the embeddings "
             "collapsed onto one point: that arm learned nothing from its pretext task.", "",
             "| arm | loss | positive cosine | negative cosine | effective rank | embedding spread | collapsed seeds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for arm in contrastive:
        runs = [r["summary"] for r in pretrains[arm].values()]
        mean = {k: np.mean([r[f"final_{k}"] for r in runs]) for k in
                ("loss", "positive_cosine", "negative_cosine", "effective_rank", "embedding_std")}
        collapsed = sum(r["final_negative_cosine"] > 0.99 for r in runs)
        lines.append(f"| `{arm}` | {mean['loss']:.3f} | {mean['positive_cosine']:.3f} | {mean['negative_cosine']:.3f} | "
                     f"{mean['effective_rank']:.2f} | {mean['embedding_std']:.4f} | {collapsed} of {len(runs)} |")
    return lines + [""]


def _cost(finetunes, pretrains, arms) -> list[str]:
    lines = ["## Cost per run (wall time and peak memory of each process; one CPU thread per run)", "",
             "| arm | pretraining s | fine-tuning s (mean) | fine-tuning epochs (mean) | peak memory MB (max) |",
             "| --- | --- | --- | --- | --- |"]
    for arm in arms:
        pre = [r["cost"]["seconds"] for r in pretrains.get(arm, {}).values()]
        fine = [r for (a, _, probe), runs in finetunes.items() if a == arm and not probe for r in runs.values()]
        memory = [r["cost"]["peak_memory_mb"] for r in pretrains.get(arm, {}).values()]
        memory += [r["cost"]["train"]["peak_memory_mb"] for r in fine]
        lines.append(
            f"| `{arm}` | {np.mean(pre):.0f} | " if pre else f"| `{arm}` | - | "
        )
        lines[-1] += (f"{np.mean([r['cost']['train']['seconds'] for r in fine]):.0f} | "
                      f"{np.mean([r['epochs'] for r in fine]):.0f} | {max(memory):.0f} |") if fine else "- | - | - |"
    return lines + [""] + _step_cost(STEP_BENCHMARK)


STEP_BENCHMARK = Path(__file__).resolve().parents[1] / "docs" / "results" / "step_benchmark.json"


def _step_cost(path: Path) -> list[str]:
    """The method's two embedding modes per training step, from the step micro-benchmark's committed result."""
    if not path.is_file():
        return []
    step = json.loads(path.read_text())
    arms, settings, machine = step["arms"], step["settings"], step["environment"]
    return [f"Pretraining step of the method's embedding modes (`scripts/benchmark_step.py`, `{path.name}`; one process, "
            f"arms interleaved; {settings['views']} views of {settings['size']}^3 crops holding "
            f"{step['objects']['total']} organs, SegResNet width {settings['init_filters']}, {settings['threads']} threads, "
            f"{machine['cpu_model']}): `pool` {arms['pool']['median_s']:.2f} s, `channel` {arms['channel']['median_s']:.2f} s "
            f"median per step, a `channel`/`pool` ratio of {arms['channel']['median_s'] / arms['pool']['median_s']:.1f}; "
            f"a plain segmentation step {arms['seg']['median_s']:.2f} s.", ""]


def _embedding(embeddings, arms, plots: Path, report: Path) -> list[str]:
    if not arms:
        return []
    lines = ["## Embedding quality (encoder features of each organ; held-out test subjects vs the pretraining pool)", "",
             "Object feature: the layer-normalised deepest encoder features averaged inside the organ's mask, before any "
             "projection head. kNN: share of held-out organs whose 5 nearest pretraining-pool organs (cosine) vote "
             "for the right organ. Silhouette by organ (cosine), on held-out and on pool organs. Mean (min-max) over "
             "seeds.", "",
             "| arm | kNN organ accuracy | silhouette, held-out | silhouette, pool | seeds |", "| --- | --- | --- | --- | --- |"]

    def cell(values: list[float]) -> str:
        return f"{np.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    for arm in arms:
        runs = list(embeddings[arm].values())
        lines.append(f"| `{arm}` | {cell([r['knn_accuracy'] for r in runs])} | {cell([r['silhouette_test'] for r in runs])} "
                     f"| {cell([r['silhouette_pretrain'] for r in runs])} | {len(runs)} |")
    panels = {}
    for arm in arms:
        seed = min(embeddings[arm])
        pca = embeddings[arm][seed]["pca"]
        panels[f"{arm} (seed {seed})"] = (pca["xy"], pca["labels"], pca["held_out"])
    plot_embedding_projections(panels, plots / "embedding_pca.png",
                               title="PCA of organ features: dots = pretraining pool, crosses = held-out subjects")
    return lines + ["", f"![embedding PCA]({os.path.relpath(plots, report.parent)}/embedding_pca.png)", ""]


def _embedding_during_pretraining(pretrains, arms, plots: Path, report: Path) -> list[str]:
    """kNN organ accuracy of held-out subjects against the pretraining epoch (EmbeddingQualityHandler's records)."""
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for arm in arms:
        for run in pretrains[arm].values():
            points = [(h["epoch"], h["metrics"]["embedding_knn_accuracy"]) for h in run.get("history", [])
                      if "embedding_knn_accuracy" in h.get("metrics", {})]
            if points:
                curves.setdefault(arm, []).append(points)
    if not curves:
        return []
    lines = ["## Embedding quality during pretraining (held-out validation subjects vs the pretraining pool)", "",
             "Measured by the pretraining workflow itself (`EmbeddingQualityHandler`, every "
             "`embedding_quality_interval` epochs; runs of older code did not record it). Mean over seeds.", "",
             "| arm | kNN organ accuracy, first measurement | kNN, last | silhouette (held-out), last | seeds |",
             "| --- | --- | --- | --- | --- |"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5.5, 4))
    for arm, runs in curves.items():
        last = [run["history"][-1]["metrics"] for run in pretrains[arm].values()
                if "embedding_knn_accuracy" in run.get("history", [{}])[-1].get("metrics", {})]
        silhouette = np.nanmean([m["embedding_silhouette_held_out"] for m in last]) if last else float("nan")
        lines.append(f"| `{arm}` (epoch {runs[0][0][0]} to {runs[0][-1][0]}) | "
                     f"{np.mean([r[0][1] for r in runs]):.3f} | {np.mean([r[-1][1] for r in runs]):.3f} | "
                     f"{silhouette:.3f} | {len(runs)} |")
        length = min(len(r) for r in runs)
        axes.plot([e for e, _ in runs[0][:length]], np.mean([[v for _, v in r[:length]] for r in runs], axis=0),
                  marker="o", label=f"{arm} ({len(runs)} seeds)")
    axes.set_xlabel("pretraining epoch")
    axes.set_ylabel("kNN organ accuracy, held-out subjects")
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, plots / "embedding_knn_during_pretraining.png")
    relative = os.path.relpath(plots, report.parent)
    return lines + ["", f"![kNN during pretraining]({relative}/embedding_knn_during_pretraining.png)", ""]


def _steps_to_scratch(finetunes, arms, settings) -> list[str]:
    """Fine-tuning steps each pretrained arm needs to reach the best validation Dice of scratch, paired by seed."""
    lines = ["## Fine-tuning steps to reach scratch's validation Dice (paired by seed)", "",
             "For each seed: the first validation at which the pretrained arm's Dice reaches the best validation Dice "
             "that `scratch` reached with that seed in its whole run; median steps over the seeds where it does, and "
             "scratch's own median steps to its best.", "",
             "| arm | " + " | ".join(settings) + " |", "| --- |" + " --- |" * len(settings)]
    rows = {arm: [] for arm in arms}
    for setting in settings:
        scratch = finetunes.get(("scratch", setting, False), {})
        for arm in arms:
            runs = finetunes.get((arm, setting, False), {})
            reached, paired = [], 0
            for seed, run in runs.items():
                if seed not in scratch or not scratch[seed]["validation_curve"] or not run["validation_curve"]:
                    continue
                paired += 1
                target = max(v for _, v in scratch[seed]["validation_curve"] if v is not None)
                epochs = [e for e, v in run["validation_curve"] if v is not None and v >= target]
                if epochs:
                    reached.append(epochs[0] * run["steps_per_epoch"])
            cell = f"{np.median(reached):.0f} ({len(reached)} of {paired} seeds)" if reached else f"never (0 of {paired})"
            rows[arm].append(cell if paired else "-")
    return lines + [f"| `{arm}` | " + " | ".join(cells) + " |" for arm, cells in rows.items()] + [""]


STUDY_REFERENCES = ("scratch", "semcl_exact", "semcl_coarse")  # main arms the study's variants are read beside


def _variation(run: dict, size) -> str:
    """What a study arm changes, from its fine-tuning run's configuration: pretraining and fine-tuning settings."""
    config = run["config"]
    pretrain = config["pretrain"] or {}
    changes = [f"`{k}={json.dumps(v)}`" for k, v in pretrain.get("arm_settings", {}).items()
               if k not in ("mask_mode", "overlay") and v is not None]
    changes += [f"`{k}={json.dumps(v)}`" for k, v in config["finetune"].items() if size.finetune.get(k) != v]
    text = ", ".join(changes) or "-"
    if pretrain and pretrain.get("arm") != config["arm"]:
        text += f" (`{pretrain['arm']}`'s encoders)"
    return text


def _saturation(history: list[dict]) -> int | None:
    """The first pretraining epoch by which the loss made 90% of its whole drop (a pretext task saturating early)."""
    losses = [(h["epoch"], h["mean_loss"]) for h in history if h.get("mean_loss") is not None]
    if len(losses) < 2 or losses[0][1] <= losses[-1][1]:
        return None
    goal = losses[0][1] - 0.9 * (losses[0][1] - losses[-1][1])
    return next(epoch for epoch, loss in losses if loss <= goal)


def _study(finetunes, pretrains, embeddings, size, planned: Sequence) -> list[str]:
    """The shortcut study: each variant of the method beside scratch and the method's main arms, same seeds."""
    if not size.study_arms:
        return []
    setting, seeds = size.study_setting, list(size.study_seeds)
    study = [a for a in size.study_arms if finetunes.get((a, setting, False))]
    planned_runs = [r for r in planned if r.config["stage"] == "finetune" and r.config["arm"] in size.study_arms]
    finished = sum(len(finetunes.get((a, setting, False), {})) for a in size.study_arms)
    heading = [f"## Shortcut study ({setting}, seeds {', '.join(map(str, seeds))})", ""]
    if not study:
        return heading + [f"No study run has finished yet ({len(planned_runs)} fine-tuning runs planned).", ""]
    lines = heading + [
        "What makes the pretext task stop saturating and the features transfer. Each variant changes one thing of "
        "`semcl_exact` (pretraining or fine-tuning) and is fine-tuned with the same seeds; differences are paired "
        "by seed with `scratch` and with `semcl_exact`. With 3 seeds the smallest two-sided Wilcoxon p is 0.25: "
        "this table points where to look, it proves nothing. Pretext loss: mean over seeds of the first and last "
        "epoch; saturation: the epoch by which the loss made 90% of its drop (median over seeds). Embedding "
        "quality: held-out test subjects against the pretraining pool (as above).", "",
        "| arm | change | pretext loss first -> last | saturation epoch | kNN organ accuracy | silhouette, held-out "
        "| test Dice [95% CI] | vs `scratch` [95% CI], p | vs `semcl_exact` [95% CI], p | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm in [a for a in STUDY_REFERENCES if finetunes.get((a, setting, False))] + study:
        runs = {s: r for s, r in finetunes[arm, setting, False].items() if s in seeds}
        if not runs:
            continue
        first = next(iter(runs.values()))
        source = (first["config"]["pretrain"] or {}).get("arm")
        pre = [pretrains[source][s] for s in runs if source and s in pretrains.get(source, {})]
        emb = [embeddings[source or arm][s] for s in runs if s in embeddings.get(source or arm, {})]
        history = [r.get("history", []) for r in pre]
        loss = (f"{np.mean([h[0]['mean_loss'] for h in history]):.2f} -> {np.mean([h[-1]['mean_loss'] for h in history]):.2f}"
                if history and all(history) else "-")
        saturation = [e for e in (_saturation(h) for h in history) if e is not None]
        cells = [f"`{arm}`", _variation(first, size) if arm in size.study_arms else "(main arm)", loss,
                 f"{np.median(saturation):.0f}" if saturation else "-",
                 f"{np.mean([r['knn_accuracy'] for r in emb]):.3f}" if emb else "-",
                 f"{np.mean([r['silhouette_test'] for r in emb]):.3f}" if emb else "-",
                 _fmt(hierarchical_bootstrap(_grid(runs, sorted(runs))), len(runs))]
        for baseline in ("scratch", "semcl_exact"):
            paired = {s: r for s, r in finetunes.get((baseline, setting, False), {}).items() if s in runs}
            compared = None if baseline == arm else compare({(arm, setting, False): runs,
                                                             (baseline, setting, False): paired}, arm, baseline, setting)
            cells.append("-" if compared is None else f"{_signed(compared[0], compared[2])}, {_p(compared[1])}")
        cells.append(str(len(runs)))
        lines.append("| " + " | ".join(cells) + " |")
    if finished < len(planned_runs):
        lines += ["", f"In progress: {finished} of {len(planned_runs)} planned study fine-tuning runs have finished "
                      "(the seeds column says which variants lack seeds)."]
    return lines + [""]


def _plots(finetunes, arms, settings, plots: Path, report: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not finetunes:
        return []
    plots.mkdir(parents=True, exist_ok=True)
    relative = os.path.relpath(plots, report.parent)
    lines = ["## Plots", ""]
    # Dice against the number of labelled volumes
    figure, axes = plt.subplots(figsize=(5.5, 4))
    volumes = {s: int(s.rsplit("_", 1)[-1]) if s.rsplit("_", 1)[-1].isdigit() else i for i, s in enumerate(settings)}
    for arm in arms:
        points = [(volumes[s], hierarchical_bootstrap(_grid(r, sorted(r)))) for s in settings
                  if (r := finetunes.get((arm, s, False)))]
        if points:
            x = [p[0] for p in points]
            y = np.array([[e.mean, e.mean - e.low, e.high - e.mean] for _, e in points])
            axes.errorbar(x, y[:, 0], yerr=y[:, 1:].T, marker="o", capsize=3, label=arm)
    axes.set_xlabel("labelled volumes")
    axes.set_ylabel("test Dice (mean, 95% CI)")
    axes.set_xticks(sorted(set(volumes.values())))
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save(figure, plots / "dice_vs_labelled_volumes.png")
    lines.append(f"![Dice vs labelled volumes]({relative}/dice_vs_labelled_volumes.png)")
    # validation Dice against fine-tuning steps
    for setting in settings:
        figure, axes = plt.subplots(figsize=(5.5, 4))
        for arm in arms:
            runs = finetunes.get((arm, setting, False), {})
            curves = [np.array(r["validation_curve"], dtype=np.float64) for r in runs.values() if r["validation_curve"]]
            if not curves:
                continue
            steps = next(iter(runs.values()))["steps_per_epoch"]
            length = min(len(c) for c in curves)
            mean = np.nanmean([c[:length, 1] for c in curves], axis=0)
            axes.plot(curves[0][:length, 0] * steps, mean, label=f"{arm} ({len(curves)} seeds)")
        axes.set_xlabel("fine-tuning steps")
        axes.set_ylabel("validation Dice (mean over seeds)")
        axes.legend(fontsize=8)
        figure.tight_layout()
        _save(figure, plots / f"validation_curve_{setting}.png")
        lines.append(f"![validation Dice, {setting}]({relative}/validation_curve_{setting}.png)")
    # confusion matrices of one run per arm
    for arm in arms:
        for setting in settings:
            runs = finetunes.get((arm, setting, False), {})
            if runs:
                seed = min(runs)
                matrix = runs[seed]["confusion_matrix"]
                name = f"confusion_{arm}_{setting}_seed{seed}.png"
                plot_confusion_matrix(np.array(matrix["counts"]), matrix["classes"], plots / name,
                                      title=f"{arm}, {setting}, seed {seed}")
                lines.append(f"![confusion {arm}]({relative}/{name})")
                break
    return lines + [""]


def _save(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_write(path) as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)


def _provenance(results: dict, command: str, size) -> list[str]:
    machines = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores, torch {r['machine']['torch']})"
                       for r in results.values()})
    dates = sorted(r["finished"] for r in results.values())
    codes = sorted({r.get("code", "8c11f62 (not recorded; the first results of 2026-11-26)") for r in results.values()})
    lines = ["## How this was made", "",
             f"- Command: `{command}` (resumable: rerun it to complete the missing runs; `--report-only` rewrites this file).",
             "- Result files: one JSON per run; this report is generated from them alone.",
             f"- Machines: {'; '.join(machines) if machines else 'none yet'}.",
             f"- Code: {', '.join(codes) if codes else '-'}.",
             f"- Runs finished between {dates[0]} and {dates[-1]}." if dates else "- No run finished yet.",
             f"- Report written {time.strftime('%Y-%m-%d %H:%M')}.",
             f"- Size `{size.name}`: data {json.dumps(size.data)}, network {json.dumps(size.network)}, "
             f"pretraining {json.dumps(size.pretrain)}, fine-tuning {json.dumps(size.finetune)}."]
    return lines
