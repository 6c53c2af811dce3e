"""The sizing runs of benchmark v3 as one table (docs/PROTOCOL_v3.md, section 11: M1-M4), read from their run records.

Usage:
    python -m semcl_benchmark.sizing [docs/results/benchmark/v3_sizing] [--out FILE.json]

One row per training run (stage 1, stage 2 and its candidates, supervised refinement pretraining): the arm and setting,
the candidate's stage-2 crop size and learning rate, epochs and optimiser steps run and the epoch of the best
validation (the plateau), its validation Dice, the training workflow's seconds and seconds per epoch (both with the
validations), its CPU seconds per epoch and per step (below the wall
clock's when the run waited for a CPU: a machine shared with more than the runs it was sized for), the test Dice
(mean over test cases of each case's mean organ Dice, at the fine grid) and the test's seconds; then every run
that trains nothing (stage 1's predictions, oracle tests) with its seconds. Printed as Markdown, and
written as JSON with ``--out``. Nothing here is a v3 result: these runs size the protocol.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .run_records import RunRecord, read_run_records

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "docs" / "results" / "benchmark" / "v3_sizing"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def training_settings(record: RunRecord) -> dict:
    """The settings a run trained with: a fine-tuning's ``finetune``; a supervised refinement pretraining's stage-2
    settings (``refine``) under its arm's own (``arm_settings``: the workflow settings it overrides)."""
    config = record.settings.config
    if record.key.stage != "pretrain":
        return config.get("finetune") or {}
    own = {k: v for k, v in (config.get("arm_settings") or {}).items() if not isinstance(v, dict)}
    return {**(config.get("refine") or config.get("pretrain") or {}), **own}


def best_validation_dice(record: RunRecord) -> float | None:
    """A run's best validation Dice: a fine-tuning's, or a supervised refinement pretraining's (in its workflow's run
    summary: a pretraining result keeps the summary whole)."""
    found = record.result.best_validation_dice
    if found is None and record.key.stage == "pretrain":
        found = (record.result.values.get("summary") or {}).get("best_metric")
    return found


def training_row(record: RunRecord) -> dict:
    """The sizing row of one training run (see the module docstring)."""
    training = training_settings(record)
    cost = record.result.values.get("cost") or {}
    train = cost.get("train") or (cost if "seconds" in cost else {})
    test = cost.get("evaluate") or cost.get("test") or {}
    epochs = record.budget.epochs if record.budget else None
    steps = record.budget.steps if record.budget else None
    seconds, cpu = train.get("seconds"), train.get("cpu_seconds")
    scores = record.result.test
    return {
        "run": record.key.name,
        "crop": training.get("refine_crop_size") or training.get("roi_size"),
        "learning rate": training.get("learning_rate"),
        "epochs": epochs,
        "steps": steps,
        "best epoch": record.budget.best_epoch if record.budget else None,
        "best validation Dice": _rounded(best_validation_dice(record)),
        "train s": seconds,
        "s per epoch": round(seconds / epochs, 2) if seconds and epochs else None,
        "CPU s per epoch": round(cpu / epochs, 2) if cpu and epochs else None,
        "CPU s per step": round(cpu / steps, 2) if cpu and steps else None,
        "test Dice": None if scores is None else _rounded(scores.mean_dice),
        "test s": test.get("seconds"),
        "CPU": record.provenance.cpu_model,
        "commit": record.provenance.code,
    }


def other_row(record: RunRecord) -> dict:
    """A run that trains nothing (stage 1's predictions, an oracle test): its name, seconds and test Dice."""
    scores = record.result.test
    return {"run": record.key.name, "seconds": round(record.result.seconds(), 1),
            "test Dice": None if scores is None else _rounded(scores.mean_dice),
            "CPU": record.provenance.cpu_model, "commit": record.provenance.code}


def sizing_table(folder: str | Path) -> dict:
    """``{"training": [rows], "other": [rows]}`` of every run record in ``folder`` (a row per run, sorted by name)."""
    records = read_run_records(folder)
    trained = [r for r in records if r.key.stage == "finetune"
               or (r.key.stage == "pretrain" and r.settings.config.get("refine") is not None)]
    return {"training": [training_row(r) for r in trained],
            "other": [other_row(r) for r in records if r not in trained]}


def markdown(rows: list[dict]) -> str:
    """A Markdown table of rows with the same keys (``-`` for a missing value)."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join("-" if row[c] is None else str(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER, help="the sizing runs' result files")
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    table = sizing_table(args.folder)
    print(f"## Training runs ({args.folder})\n\n{markdown(table['training'])}\n\n## Other runs\n\n"
          f"{markdown(table['other'])}")
    if args.out is not None:
        args.out.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
