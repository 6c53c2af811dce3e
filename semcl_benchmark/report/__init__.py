"""The benchmark report, regenerated from the result JSON files alone (see ``semcl_benchmark``).

Statistics take the training run as the unit (:mod:`.comparison`). Where the method does not beat a baseline, the
report's first lines say so (:mod:`.verdict`), followed by what bounds the gain, measured from the same runs
(:mod:`.diagnosis`: what a second labelled volume is worth, run-to-run noise, early lead, whether organ separation
predicts Dice, the shortcut study, organs that no arm learns); then the tables (:mod:`.tables`, :mod:`.study`) and
plots (:mod:`.plots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from semcl_components.atomic_io import atomic_write

from ..plan import Run
from ..protocol import Size
from ..results import ResultStore, by_stage
from . import tables
from .comparison import compare, mean_dice
from .diagnosis import diagnosis
from .plots import plots_section
from .study import study
from .verdict import verdict

__all__ = ["compare", "diagnosis", "mean_dice", "verdict", "write_report"]


def write_report(size: Size, planned: Sequence[Run], store: ResultStore, report: Path, command: str) -> None:
    """Write ``report`` (Markdown) and its plots (``<results folder>/plots``) from the finished runs of ``planned``.

    Args:
        size: the benchmark size (its arms, settings and study give the report's rows and columns).
        planned: the runs; those whose result file holds their configuration hash count.
        store: the result files.
        report: the Markdown file to write.
        command: the command that makes (and completes) the runs, for the provenance section.
    """
    results = store.load(planned)
    finetunes, pretrains, embeddings = by_stage(results)
    plots = store.folder / "plots"
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
    with atomic_write(report) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
