"""The benchmark report, regenerated from the result JSON files alone (see ``semcl_benchmark``).

Statistics take the training run as the unit (:mod:`.comparison`). Where the method does not beat a baseline, the
report's first lines say so (:mod:`.verdict`), followed by what bounds the gain, measured from the same runs
(:mod:`.diagnosis`: what a second labelled volume is worth, run-to-run noise, early lead, whether organ separation
predicts Dice, the shortcut study, organs that no arm learns); then the tables (:mod:`.tables`, :mod:`.study`) and
plots (:mod:`.plots`).

A v2 size (one with ``splits``: :func:`.records.is_v2`) gets benchmark v2's report instead: the endpoints declared in
``docs/PROTOCOL.md`` with Holm-adjusted p and crossed bootstrap intervals (:mod:`.endpoints`), deviations from the
protocol, time to accuracy (:mod:`.time_to_accuracy`), whether every arm was trained to its best (:mod:`.baselines`)
and every result file's provenance (:mod:`.provenance`); a size with ``difficulty_criteria: true`` also the testbed's
difficulty criteria (:mod:`.difficulty`). What it reads from the result files beyond v1's fields, and in which
format, is in :mod:`.records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from semcl_components.bundle_runtime.atomic_io import atomic_write

from ..plan import Run
from ..protocol import Size
from ..results import ResultStore, by_stage
from ..statistics import crossed_bootstrap
from . import endpoints, tables
from .baselines import baselines_at_their_best
from .comparison import compare, is_method, mean_dice
from .diagnosis import diagnosis, diagnosis_v2
from .difficulty import difficulty_criteria, read_cost_ratio
from .plots import plots_section
from .provenance import file_provenance, unfinished
from .records import is_v2
from .study import study
from .time_to_accuracy import time_to_accuracy
from .verdict import primary_verdict, verdict

__all__ = [
    "compare",
    "diagnosis",
    "diagnosis_v2",
    "difficulty_criteria",
    "mean_dice",
    "report_v1",
    "report_v2",
    "verdict",
    "write_report",
]


def write_report(size: Size, planned: Sequence[Run], store: ResultStore, report: Path, command: str) -> None:
    """Write ``report`` (Markdown) and its plots (``<results folder>/plots``) from the finished runs of ``planned``.

    A v2 size (with ``splits``) gets the v2 report (:func:`report_v2`), a v1 size v1's (:func:`report_v1`), so v1's
    committed report regenerates unchanged.

    Args:
        size: the benchmark size (its arms, settings and study give the report's rows and columns).
        planned: the runs; those whose result file holds their configuration hash count.
        store: the result files.
        report: the Markdown file to write.
        command: the command that makes (and completes) the runs, for the provenance section.
    """
    results = store.load(planned)
    write = report_v2 if is_v2(size) else report_v1
    lines = write(size, planned, results, store.folder / "plots", report, command)
    with atomic_write(report) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def report_v1(size: Size, planned: Sequence[Run], results: dict, plots: Path, report: Path, command: str) -> list[str]:
    """Benchmark v1's report: every method arm against every baseline, two-level bootstrap intervals."""
    finetunes, pretrains, embeddings = by_stage(results)
    arms = [arm for arm in size.arms if any(key[0] == arm for key in finetunes)]
    settings = [s for s in size.settings if any(key[1] == s for key in finetunes)]
    pretrained = [a for a in size.arms if a in pretrains]
    lines: list[str] = [f"# Benchmark results: {size.name} size", ""]
    lines += verdict(finetunes, arms, settings)
    lines += ["", f"Runs finished: {len(results)} of {len(planned)} planned ({size.notes}).", ""]
    lines += diagnosis(finetunes, embeddings, arms, settings, size)
    lines += tables.headline(finetunes, arms, settings)
    lines += tables.comparisons(finetunes, arms, settings)
    lines += tables.per_organ(finetunes, arms, settings)
    lines += tables.probe(finetunes, size)
    lines += tables.pretraining(pretrains, pretrained)
    lines += tables.cost(finetunes, pretrains, arms)
    lines += tables.embedding(embeddings, [a for a in size.arms if a in embeddings], plots, report)
    lines += tables.embedding_during_pretraining(pretrains, pretrained, plots, report)
    lines += tables.steps_to_scratch(finetunes, arms, settings)
    lines += study(finetunes, pretrains, embeddings, size, planned)
    lines += plots_section(finetunes, arms, settings, plots, report)
    lines += tables.provenance(results, command, size)
    return lines


def report_v2(size: Size, planned: Sequence[Run], results: dict, plots: Path, report: Path, command: str) -> list[str]:
    """Benchmark v2's report: the endpoints declared in ``docs/PROTOCOL.md`` with Holm p, crossed bootstrap intervals.

    Rows are the size's arms, then any other arm with fine-tuning results (atlases, the paper's setting); columns the
    size's settings, then any other setting with results (the upper bound). A size with ``difficulty_criteria`` starts
    with the testbed's difficulty criteria; a size that plans no arm of the method has no verdict.
    """
    finetunes, pretrains, embeddings = by_stage(results)
    main = {key: runs for key, runs in finetunes.items() if key[0] not in size.study_arms}
    present_arms = {key[0] for key in main}
    present_settings = {key[1] for key in main}
    arms = [a for a in size.arms if a in present_arms] + sorted(present_arms - set(size.arms))
    settings = [s for s in size.settings if s in present_settings] + sorted(present_settings - set(size.settings))
    trained = [a for a in arms if not endpoints.is_atlas(a)]
    pretrained = [a for a in size.arms if a in pretrains]
    keys = endpoints.planned_keys(planned)
    planned_seeds = len(size.seeds) or None  # every declared comparison but the probes pairs the size's seeds
    primary = endpoints.run_family(finetunes, endpoints.primary_family())
    lines: list[str] = [f"# Benchmark results: {size.name} size (protocol v2, `docs/PROTOCOL.md`)", ""]
    if size.difficulty_criteria:
        lines += difficulty_criteria(finetunes, size, paired=read_cost_ratio(plots.parent))
    if any(is_method(a) for a in size.arms):
        lines += primary_verdict(primary)
    lines += ["", f"Runs finished: {len(results)} of {len(planned)} planned ({size.notes}).", ""]
    lines += unfinished(planned, results)
    lines += endpoints.deviations_section(size)
    lines += diagnosis_v2(finetunes, pretrains, arms, settings, size, keys)
    if finetunes:
        lines += tables.headline(finetunes, arms, settings, crossed_bootstrap,
                                 "95% CI: crossed bootstrap over seeds and the shared test cases")
    if primary:
        lines += ["## Primary endpoint", "",
                  endpoints.family_note(primary, len(endpoints.primary_family()), planned_seeds), "",
                  *endpoints.outcome_table(primary), ""]
    for title, tests in endpoints.secondary_families(keys).items():
        outcomes = endpoints.run_family(finetunes, tests)
        if outcomes:
            lines += [f"## Secondary: {title}", "", endpoints.family_note(outcomes, len(tests), planned_seeds), "",
                      *endpoints.outcome_table(outcomes), ""]
    lines += endpoints.per_phase(finetunes, endpoints.primary_family(), planned_seeds)
    lines += time_to_accuracy(finetunes, trained, settings, keys, planned_seeds)
    lines += endpoints.probe_section(finetunes, size, keys)
    lines += baselines_at_their_best(finetunes, pretrains)
    lines += tables.per_organ(finetunes, arms, settings)
    lines += tables.cost(finetunes, pretrains, trained)
    lines += tables.embedding(embeddings, [a for a in size.arms if a in embeddings], plots, report)
    lines += tables.embedding_during_pretraining(pretrains, pretrained, plots, report)
    lines += study(finetunes, pretrains, embeddings, size, planned)
    lines += plots_section(finetunes, trained, settings, plots, report, crossed_bootstrap)
    lines += [*tables.provenance(results, command, size), ""]
    lines += file_provenance(results)
    return lines
