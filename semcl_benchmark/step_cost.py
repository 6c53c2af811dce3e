"""The cost of one optimiser step of each stage-2 pretraining, measured on the benchmark's own workflow calls
(docs/PROTOCOL_v3.md, section 11, M5): the contrastive step t_c (``pretrain.yaml``: organ-centred crops, ``channel``
embedding) against the supervised refinement step t_r (``train.yaml + train_refine.yaml``), in one sitting.

Usage:
    python -m semcl_benchmark.step_cost --size v3_sizing --setting finetune_1 --seed 101 --workdir /work/v3work
                                        [--arms cascade_semcl cascade_supervised] [--epochs 2 8] [--out FILE.json]

Each arm's pretraining call for the seed and setting is planned exactly as the benchmark plans it (its pool, stage 1's
predicted masks, the size's ``pretrain`` and ``refine`` settings, one CPU thread), then run twice into
``<workdir>/step_cost/`` (never the benchmark's own folders), capped at each of ``--epochs``, validating once at the
end of each. A step's cost is the difference of the two runs' CPU seconds over the difference of their optimiser
steps: what starting the workflow, caching the pool and the one validation cost cancels out; what every step costs
(loading, augmenting, forward, backward, the optimiser) stays. The seed's predictions must exist in the workdir (its
``predict`` run done by ``scripts/benchmark.py``). Nothing here is a result: only seconds are kept, no model.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

from semcl_components.bundle_runtime.atomic_io import write_json_atomic

from .protocol import load_protocol
from .results import code_version, cpu_model, results_folder
from .runner import Benchmark
from .runs import BundleCall

__all__ = ["main", "pretraining_call", "step_seconds"]


def pretraining_call(benchmark: Benchmark, arm: str, setting: str, seed: int) -> tuple[BundleCall, int]:
    """The bundle call of ``arm``'s stage-2 pretraining on ``seed``'s pool with ``setting``'s stage-1 masks, as the
    benchmark makes it, and its optimiser steps per epoch (the pool's volumes in batches)."""
    planned = benchmark.plan([arm], [setting], [seed], study=[])
    (run,) = [r for r in planned if r.key.stage == "pretrain"]
    (call,) = benchmark.planner.bundle_calls(run)
    volumes = benchmark.size.draws["pool"]
    return call, -(-volumes // int(call.overrides["batch_size"]))


def step_seconds(benchmark: Benchmark, call: BundleCall, steps_per_epoch: int, epochs: tuple[int, int],
                 folder: Path) -> dict:
    """Run ``call`` capped at each of ``epochs`` into ``folder``; the CPU seconds of each run and of one step."""
    runs = []
    for cap in epochs:
        shutil.rmtree(folder, ignore_errors=True)
        overrides = {**call.overrides, "max_epochs": cap, "ckpt_dir": folder / "models", "output_dir": folder / "eval"}
        if "val_interval" in overrides:  # supervised: one validation, at the end
            overrides |= {"val_interval": cap, "early_stop_patience": 0}
        cost = benchmark.stages.run_bundle(dataclasses.replace(call, overrides=overrides,
                                                               log=folder.parent / f"{folder.name}_{cap}.log"))
        runs.append({"epochs": cap, "steps": cap * steps_per_epoch, **cost})
    shutil.rmtree(folder, ignore_errors=True)
    short, long = runs
    per_step = (long["cpu_seconds"] - short["cpu_seconds"]) / (long["steps"] - short["steps"])
    return {"runs": runs, "cpu_seconds_per_step": round(per_step, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="v3_sizing")
    parser.add_argument("--setting", default="finetune_1")
    parser.add_argument("--seed", type=int, default=101)
    parser.add_argument("--arms", nargs=2, default=["cascade_semcl", "cascade_supervised"],
                        help="the contrastive arm, then the supervised one")
    parser.add_argument("--epochs", nargs=2, type=int, default=[2, 8], help="the two caps (the second larger)")
    parser.add_argument("--workdir", type=Path, required=True, help="the benchmark's workdir (data, predictions)")
    parser.add_argument("--out", type=Path, help="also write the measurement as JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.epochs[0] < args.epochs[1]:
        parser.error(f"--epochs: two caps, the second larger, got {args.epochs}")
    code = code_version()  # the commit that runs, before any other lands
    protocol = load_protocol()
    size = protocol.sizes[args.size]
    benchmark = Benchmark(size, results_folder(size.name), args.workdir, jobs=1, protocol=protocol)
    measured = {}
    for arm in args.arms:
        call, per_epoch = pretraining_call(benchmark, arm, args.setting, args.seed)
        datalist = Path(call.overrides["data_list_file_path"])
        if not datalist.is_file():
            print(f"[step cost] {datalist} is missing: run seed {args.seed}'s predict run first "
                  f"(scripts/benchmark.py --size {size.name} --seeds {args.seed} --settings {args.setting})",
                  file=sys.stderr)
            return 2
        measured[arm] = step_seconds(benchmark, call, per_epoch, tuple(args.epochs),
                                     args.workdir / "step_cost" / arm)
        print(f"[step cost] {arm}: {measured[arm]['cpu_seconds_per_step']} CPU s per step")
    contrastive, supervised = (measured[a]["cpu_seconds_per_step"] for a in args.arms)
    ratio = round(contrastive / supervised, 3)
    print(f"[step cost] t_c / t_r = {ratio}")
    if args.out is not None:
        write_json_atomic({"size": size.name, "setting": args.setting, "seed": args.seed, "arms": args.arms,
                           "epochs": args.epochs, "cpu": cpu_model(), "code": code, "ratio": ratio,
                           "measured": measured}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
