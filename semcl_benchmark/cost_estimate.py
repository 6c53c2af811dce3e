"""The compute cost of a benchmark size, estimated from measured runs (docs/PROTOCOL_v3.md, section 11).

Usage:
    python -m semcl_benchmark.cost_estimate --size v3 --stage2-arm ARM [--protocol FILE ...] [--sizing DIR] [--v2 DIR]
                                            [--contrastive-ratio R | --step-cost FILE] [--jobs 2]
                                            [--sitting-hours 2.5] [--arms ARM ...] [--seeds SEED ...]
                                            [--no-recipe-check] [--remaining] [--out FILE.json]

``--protocol`` adds or replaces arms and sizes as ``scripts/benchmark.py``'s does: the cost of candidate settings
before they are written into ``protocol.yaml``. ``--arms`` and ``--seeds`` price a part of the plan (as
``scripts/benchmark.py`` plans it with the same options: the runs those arms need come with them), e.g. the primary
family's arms on the main seeds; ``--no-recipe-check`` leaves the recipe check's runs out; ``--remaining`` prices only
the runs without a result file of their configuration (what is left to run, for section 11's drop rule).

Every run the size plans (its seeds and tuning seeds; the runs of its ``recipe_check`` too) is given the seconds of
measured runs of its kind: the mean CPU seconds (training, validations and tests; ``RunResult.cpu_seconds``: a run's
cost with a core of its own, also where a measurement shared its machine) of the result files that measure that
kind:

    stage 1 at a setting     the sizing runs of ``scratch`` at that setting (``--sizing``); a setting the sizing did not
                             run (``finetune_all``) from v2's ``scratch`` runs of it (``--v2``: the same 5.625 mm
                             grid and network; v2's test scoring is at that grid, not the fine one)
    predict                  the sizing runs' stage-1 predictions (any setting: the same 52 cases)
    stage 2 at a setting     the sizing runs of ``--stage2-arm`` at that setting (the candidate the protocol fixes;
                             every stage-2 arm costs as ``cascade_scratch`` does: the same network, crops and cap)
    oracle test              the sizing runs' oracle tests (any setting: the same 32 test cases)
    supervised pretraining   the sizing runs' supervised refinement pretrainings (``cascade_supervised`` and its
                             sizing variants), scaled to the size's ``pretrain: steps`` by their seconds per step
                             (until there is one: ``--step-cost``'s supervised step, training alone)
    contrastive pretraining  the same seconds per step times the contrastive step's cost relative to a supervised
                             refinement step (``--contrastive-ratio``, or ``--step-cost``'s ratio: M5,
                             ``python -m semcl_benchmark.step_cost``) times ``steps``
    a run on v2's data       v2's runs of the same stage, arm and setting (the recipe check)

A kind without a measurement is listed as such, and the total says how many runs it leaves out. The sum is CPU
seconds of runs on one 2-core machine running ``--jobs`` runs at a time (the way the measurements ran), so the
wall clock is the sum divided by ``--jobs``; sittings at ``--sitting-hours`` of running each. The machines of the
measurements are listed: seconds move between CPU models, so the estimate is for those machines.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from semcl_components.bundle_runtime.atomic_io import write_json_atomic
from semcl_tools.repository import ROOT

from .protocol import Protocol, Size, load_protocol
from .results import results_folder
from .run_records import RunRecord, read_run_records
from .runs import Run

__all__ = ["Cost", "Measurements", "estimate", "main", "planned_runs"]

SIZING = results_folder("v3_sizing")
V2 = results_folder("default")


@dataclass(frozen=True)
class Cost:
    """One kind of run: its ``runs`` planned, the ``seconds`` each costs (``None``: not measured), from ``source``."""

    kind: str
    runs: int
    seconds: float | None
    source: str

    @property
    def total(self) -> float | None:
        return None if self.seconds is None else self.runs * self.seconds


class Measurements:
    """The measured runs, by the kind of run they measure (see the module docstring)."""

    def __init__(self, sizing: Sequence[RunRecord], v2: Sequence[RunRecord], stage2_arm: str,
                 contrastive_ratio: float | None, steps: int | None, step_cost: dict | None = None) -> None:
        self.sizing, self.v2, self.stage2_arm, self.step_cost = sizing, v2, stage2_arm, step_cost
        self.steps = steps
        self.contrastive_ratio = contrastive_ratio if contrastive_ratio is not None or step_cost is None \
            else step_cost["ratio"]

    @staticmethod
    def _mean_of(records: Sequence[RunRecord], where: str) -> tuple[float | None, str]:
        """The mean CPU seconds of ``records`` and which runs they are."""
        seconds = {r.key.name: r.result.cpu_seconds() for r in records}
        if not seconds:
            return None, f"{where}: none"
        names = sorted(seconds)
        shown = ", ".join(names) if len(names) <= 2 else f"{names[0]} and {len(names) - 1} more"
        return float(np.mean(list(seconds.values()))), f"{where}: {shown}"

    def _of(self, records: Sequence[RunRecord], stage: str, arm: str | None, setting: str | None,
            where: str) -> tuple[float | None, str]:
        return self._mean_of([r for r in records if r.key.stage == stage and (arm is None or r.key.arm == arm)
                              and r.key.setting == setting and not r.key.probe and r.key.tuning_recipe is None], where)

    def _per_step(self) -> tuple[float | None, str]:
        """Seconds per optimiser step of the sizing's supervised refinement pretrainings."""
        found = [r for r in self.sizing if r.key.stage == "pretrain" and r.budget and r.budget.steps]
        if not found and self.step_cost is not None:  # M5's training steps alone, without validations
            arm = self.step_cost["arms"][1]
            return self.step_cost["measured"][arm]["cpu_seconds_per_step"], f"step cost: {arm}, no validation"
        if not found:
            return None, "sizing: no supervised pretraining"
        return (float(np.mean([r.result.cpu_seconds() / r.budget.steps for r in found])),
                f"sizing: {', '.join(r.key.name for r in found)}")

    def cost(self, kind: tuple) -> tuple[float | None, str]:
        """The seconds of one run of ``kind`` (:func:`kind_of`) and where they come from."""
        name = kind[0]
        if name == "stage 1":
            mean, source = self._of(self.sizing, "finetune", "scratch", kind[1], "sizing")
            return (mean, source) if mean is not None else self._of(self.v2, "finetune", "scratch", kind[1], "v2")
        if name in ("predict", "oracle"):  # the same cases whatever the labelled setting: any setting's runs
            return self._mean_of([r for r in self.sizing if r.key.stage == name], "sizing")
        if name == "stage 2":
            return self._of(self.sizing, "finetune", self.stage2_arm, kind[1], "sizing")
        if name in ("supervised pretraining", "contrastive pretraining"):
            per_step, source = self._per_step()
            ratio = 1.0 if name == "supervised pretraining" else self.contrastive_ratio
            if per_step is None or ratio is None or not self.steps:
                return None, source if per_step is None else f"{source}; no contrastive ratio"
            return per_step * ratio * self.steps, f"{source} ({per_step:.2f} s per step x {ratio:g} x {self.steps})"
        return self._of(self.v2, *kind[1:], "v2")


def kind_of(run: Run, v2_data: bool, protocol: Protocol, size: Size) -> tuple:
    """The kind of a planned run: how its cost is looked up (:meth:`Measurements.cost`)."""
    key, config = run.key, run.config
    if v2_data:  # the recipe check: a run on v2's data, measured by v2's runs of the same stage, arm and setting
        return ("v2", key.stage, key.arm, key.setting)
    if key.stage == "pretrain":
        supervised = protocol.arm(key.arm, size).workflow == "train.yaml"
        return ("supervised pretraining" if supervised else "contrastive pretraining",)
    if key.stage in ("predict", "oracle"):
        return (key.stage,)
    return ("stage 2" if config.get("pipeline_stage") == 2 else "stage 1", key.setting)


def planned_runs(protocol: Protocol, size: Size, arms: Sequence[str] | None = None,
                 seeds: Sequence[int] | None = None, recipe_check: bool = True,
                 remaining: bool = False) -> list[tuple[Run, bool]]:
    """Every run the size plans on its seeds and tuning seeds (or of ``arms`` on ``seeds``), and those of its
    ``recipe_check`` (``True``: on v2's data; left out with ``recipe_check=False``, and with ``arms`` or ``seeds``);
    with ``remaining``, only those without a result file of their configuration in the size's results folder."""
    from .runner import Benchmark  # the runner plans through the stages' planner

    sizes = [(size, False)]
    if size.recipe_check is not None and recipe_check and arms is None and seeds is None:
        sizes.append((protocol.sizes[size.recipe_check["size"]], True))
    runs = []
    for planned_size, v2_data in sizes:
        benchmark = Benchmark(planned_size, results_folder(planned_size.name),
                              ROOT / "runs" / "benchmark" / planned_size.name, protocol=protocol)
        chosen = [a for a in planned_size.arms if not protocol.arms[a].study] if arms is None else list(arms)
        drawn = [*planned_size.seeds, *planned_size.tuning_seeds] if seeds is None else list(seeds)
        planned = benchmark.plan(chosen, list(planned_size.settings), drawn, study=[])
        runs += [(run, v2_data) for run in planned if not (remaining and benchmark.finished(run))]
    return runs


def estimate(runs: Sequence[tuple[Run, bool]], measurements: Measurements, protocol: Protocol,
             size: Size) -> list[Cost]:
    """One :class:`Cost` per kind of the planned ``runs``, in order of first appearance."""
    counts = Counter(kind_of(run, v2_data, protocol, size) for run, v2_data in runs)
    costs = []
    for kind, count in counts.items():
        seconds, source = measurements.cost(kind)
        costs.append(Cost(" ".join(str(k) for k in kind if k is not None), count, seconds, source))
    return costs


def summary(costs: Sequence[Cost], jobs: int, sitting_hours: float) -> dict:
    """The total CPU seconds of the measured kinds, the wall clock at ``jobs`` runs at a time, the sittings, and the
    runs whose kind has no measurement."""
    total = sum(c.total for c in costs if c.total is not None)
    wall = total / jobs
    return {"cpu_seconds": round(total), "wall_hours": round(wall / 3600, 1), "jobs": jobs,
            "sitting_hours": sitting_hours, "sittings": math.ceil(wall / 3600 / sitting_hours),
            "runs": sum(c.runs for c in costs), "runs_not_measured": sum(c.runs for c in costs if c.seconds is None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="v3")
    parser.add_argument("--stage2-arm", required=True, help="the sizing arm whose runs measure a stage-2 run")
    parser.add_argument("--contrastive-ratio", type=float, help="a contrastive step's seconds over a stage-2 step's")
    parser.add_argument("--step-cost", type=Path, help="M5's file (python -m semcl_benchmark.step_cost): the ratio, "
                        "and a supervised step's seconds while the sizing has no supervised pretraining")
    parser.add_argument("--protocol", type=Path, nargs="+", default=[], help="files over the built-in protocol")
    parser.add_argument("--sizing", type=Path, default=SIZING, help="the sizing runs' result files")
    parser.add_argument("--v2", type=Path, default=V2, help="v2's result files")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sitting-hours", type=float, default=2.5)
    parser.add_argument("--arms", nargs="+", help="price these arms' runs only (and the runs they need)")
    parser.add_argument("--seeds", type=int, nargs="+", help="on these seeds only (default: seeds and tuning seeds)")
    parser.add_argument("--no-recipe-check", action="store_true", help="leave the recipe check's runs out")
    parser.add_argument("--remaining", action="store_true", help="only runs without a result file of their "
                        "configuration")
    parser.add_argument("--out", type=Path, help="also write the estimate as JSON here")
    args = parser.parse_args(argv)
    try:
        protocol = load_protocol(args.protocol)
        size = protocol.sizes[args.size]
        runs = planned_runs(protocol, size, args.arms, args.seeds, not args.no_recipe_check, args.remaining)
    except (ValueError, KeyError) as error:
        print(f"[cost] {error}", file=sys.stderr)
        return 2
    sizing = read_run_records(args.sizing)
    step_cost = None if args.step_cost is None else json.loads(args.step_cost.read_text(encoding="utf-8"))
    measurements = Measurements(sizing, read_run_records(args.v2), args.stage2_arm, args.contrastive_ratio,
                                size.pretrain.get("steps"), step_cost)
    costs = estimate(runs, measurements, protocol, size)
    total = summary(costs, args.jobs, args.sitting_hours)
    cpus = sorted({r.provenance.cpu_model or "not recorded" for r in sizing})
    print("| kind | runs | s per run | s | measured by |\n| --- | ---: | ---: | ---: | --- |")
    for c in costs:
        print(f"| {c.kind} | {c.runs} | {'-' if c.seconds is None else round(c.seconds)} | "
              f"{'-' if c.total is None else round(c.total)} | {c.source} |")
    print(f"\n{total['runs']} runs, {total['runs_not_measured']} of them of a kind not measured; "
          f"{total['cpu_seconds']} s of runs, {total['wall_hours']} h at {args.jobs} at a time: {total['sittings']} "
          f"sittings of {args.sitting_hours} h (sizing runs' CPU: {', '.join(cpus)})")
    if args.out is not None:
        write_json_atomic({"size": size.name, "stage2_arm": args.stage2_arm, "arms": args.arms, "seeds": args.seeds,
                           "recipe_check": not args.no_recipe_check and not args.arms and not args.seeds,
                           "remaining": args.remaining,
                           "contrastive_ratio": measurements.contrastive_ratio,
                           "cpus": cpus, **total, "kinds": [{**c.__dict__, "total": c.total} for c in costs]}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
