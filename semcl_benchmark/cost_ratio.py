"""Paired cost of fine-tuning: one epoch of a size's ``scratch`` run against one of a reference size's, timed in turn.

A run's recorded seconds compare badly across days and machines: on a shared virtual machine the same run can take
1.6 times as long an hour later. The difficulty criteria's cost (``semcl_benchmark/report/difficulty.py``) therefore
splits a run's cost into what the machine does not change, the epochs a run lasts (its result files), and the cost of
one epoch relative to the reference's, measured here on one machine in one sitting, the two sizes alternating
(size, reference, size, reference, ...) so that a drift of the machine's speed hits both alike.

Each round runs the ``scratch`` fine-tuning workflow of the size and of the reference (one seed, one labelled setting,
the same bundle call as the benchmark's, with early stopping off) for ``--epochs`` epochs, and reads the seconds per
epoch from its run summary between the end of the first validation and the end of the last (``wall_time_s`` per
epoch), so start-up is left out and validation counts as often as in a run. The result,
``<size results folder>/cost_ratio.json``, holds every round's seconds per epoch of both and their ratio, the median
ratio, the machine, its load average (1, 5 and 15 minutes) at the start and the end, and the commit.

``levers`` as the first argument times instead the speed levers that leave the arithmetic alone against v2's
settings (benchmark v3's measurement M0; :mod:`semcl_benchmark.cost_levers`).

Usage:
    python scripts/benchmark_cost_ratio.py levers [--size v3] ...   (``levers --help``)
    python scripts/benchmark_cost_ratio.py [--size difficulty] [--reference v1] [--setting finetune_1] [--seed 0]
                                           [--epochs 200] [--rounds 3] [--allow-dirty]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from semcl_components.bundle_runtime.atomic_io import write_json_atomic

from .plan import BundleCall
from .protocol import Protocol, load_protocol_or_exit
from .results import DirtyTreeError, check_clean_tree, code_version, machine, read_json, results_folder
from .runner import Benchmark

__all__ = ["COST_RATIO_FILE", "main", "measure", "seconds_per_epoch"]

COST_RATIO_FILE = "cost_ratio.json"
"""The paired measurement's file name, in the size's results folder (read by the difficulty criteria's cost)."""
REFERENCE_ARM = "scratch"


def seconds_per_epoch(history: Sequence[dict], first: int, last: int) -> float:
    """Wall seconds per epoch from the end of epoch ``first`` to the end of epoch ``last`` of a run summary's history
    (``[{"epoch", "wall_time_s", ...}, ...]``, written by ``semcl_components.bundle_runtime.handlers.RunSummary``).

    Raises:
        ValueError: the history lacks one of the two epochs, or ``last`` is not after ``first``.
    """
    seconds = {h["epoch"]: h["wall_time_s"] for h in history if "wall_time_s" in h}
    if last <= first or first not in seconds or last not in seconds:
        raise ValueError(f"need the wall time of epochs {first} and {last} (last after first); the run summary has "
                         f"{len(seconds)} epochs.")
    return (seconds[last] - seconds[first]) / (last - first)


def _train_call(benchmark: Benchmark, setting: str, seed: int, epochs: int, folder: Path) -> tuple[BundleCall, int]:
    """The benchmark's ``scratch`` fine-tuning call for ``setting`` and ``seed``, for ``epochs`` epochs without early
    stopping or snapshots, writing into ``folder``; and its validation interval."""
    (run,) = [r for r in benchmark.plan([REFERENCE_ARM], [setting], [seed], study=[])
              if r.config["stage"] == "finetune" and not r.config["probe"]]
    benchmark.stages.data([seed])
    train = benchmark.planner.bundle_calls(run)[0]
    overrides = {**train.overrides, "max_epochs": epochs, "early_stop_patience": 0, "snapshot_interval": 0,
                 "ckpt_dir": folder / "models", "output_dir": folder / "eval"}
    return dataclasses.replace(train, overrides=overrides, log=folder / "train.log"), int(overrides["val_interval"])


def measure(protocol: Protocol, size: str, reference: str, setting: str, seed: int, epochs: int, rounds: int,
            work: Path) -> dict:
    """Time ``rounds`` alternating rounds of the two sizes' ``scratch`` fine-tuning; the result (see the module).

    Raises:
        ValueError: the two sizes are one, or ``epochs`` is not at least two of a size's validation intervals (no
            interval between two validations to time).
    """
    if size == reference:
        raise ValueError(f"--size and --reference are both {size!r}: a size's cost against its own means nothing.")
    calls = {}
    for name in (size, reference):
        benchmark = Benchmark(protocol.sizes[name], results_folder(name), work / name, jobs=1, protocol=protocol,
                              prefix=f"[cost {name}]")
        call, interval = _train_call(benchmark, setting, seed, epochs, work / name / "run")
        last = epochs - epochs % interval
        if last < 2 * interval:
            raise ValueError(f"--epochs {epochs}: size {name} validates every {interval} epochs, so at least "
                             f"{2 * interval} are needed to time the epochs between two validations.")
        calls[name] = (benchmark, call, interval, last)
    timed, load_start = [], [round(v, 2) for v in os.getloadavg()]
    for number in range(1, rounds + 1):
        row = {"round": number}
        for name, (benchmark, call, interval, last) in calls.items():
            shutil.rmtree(work / name / "run", ignore_errors=True)
            cost = benchmark.stages.run_bundle(call)
            history = read_json(Path(call.overrides["output_dir"]) / "run_summary.json").get("history", [])
            row[name] = {"seconds_per_epoch": round(seconds_per_epoch(history, interval, last), 4),
                         "run_seconds": cost["seconds"], "cpu_seconds": cost["cpu_seconds"]}
        row["ratio"] = round(row[size]["seconds_per_epoch"] / row[reference]["seconds_per_epoch"], 4)
        print(f"[cost] round {number}/{rounds}: {size} {row[size]['seconds_per_epoch']:.3f} s per epoch, {reference} "
              f"{row[reference]['seconds_per_epoch']:.3f} s: ratio {row['ratio']:.2f}", flush=True)
        timed.append(row)
    return {"size": size, "reference": reference, "arm": REFERENCE_ARM, "setting": setting, "seed": seed,
            "epochs": epochs, "timed_epochs": {name: [calls[name][2], calls[name][3]] for name in calls}, "rounds": timed,
            "ratio_median": round(statistics.median(r["ratio"] for r in timed), 4), "machine": machine(),
            "load_average": {"start": load_start, "end": [round(v, 2) for v in os.getloadavg()]},
            "code": code_version(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", nargs="+", type=Path, default=[], metavar="FILE",
                        help="YAML/JSON files that add or replace sizes (layout of semcl_benchmark/protocol.yaml)")
    parser.add_argument("--size", default="difficulty", help="the size whose cost is measured (default: difficulty)")
    parser.add_argument("--reference", default="v1", help="the size it is compared with (default: v1)")
    parser.add_argument("--setting", default="finetune_1", help="labelled setting of both runs (default: finetune_1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (default: 0)")
    parser.add_argument("--epochs", type=int, default=200, help="epochs of each timed run (default: 200)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    parser.add_argument("--out", type=Path, help=f"result file (default: <size results folder>/{COST_RATIO_FILE})")
    parser.add_argument("--workdir", type=Path, help="runs and logs (default: runs/benchmark/cost_ratio)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="measure from a working tree with uncommitted changes (recorded as the commit's +changes)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["levers"]:  # benchmark v3's speed levers against v2's settings (semcl_benchmark.cost_levers)
        from .cost_levers import main as levers

        return levers(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    protocol = load_protocol_or_exit(parser, args.protocol, {"--size": args.size, "--reference": args.reference})
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}.")
    try:
        check_clean_tree(args.allow_dirty)
    except DirtyTreeError as error:
        print(f"[cost] {error}", file=sys.stderr)
        return 2
    work = (args.workdir or Path("runs") / "benchmark" / "cost_ratio").absolute()
    try:
        result = measure(protocol, args.size, args.reference, args.setting, args.seed, args.epochs, args.rounds, work)
    except ValueError as error:
        parser.error(str(error))
    out = args.out or results_folder(args.size) / COST_RATIO_FILE
    write_json_atomic(result, out)
    print(f"[cost] median ratio {result['ratio_median']:.2f} ({args.size} / {args.reference}, seconds per epoch): {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
