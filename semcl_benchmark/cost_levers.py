"""The speed levers that leave the arithmetic alone, each timed against v2's settings in one sitting (benchmark v3's
measurement M0, docs/PROTOCOL_v3.md section 11).

v2 ran every fine-tuning run on one CPU thread, two runs at a time on a 2-core machine, contiguous tensors,
validating every 40 epochs, the deterministic transforms cached (MONAI ``CacheDataset``, ``cache_rate`` 1.0, in
training and validation alike). The levers, each a way of running the same computation:

- ``channels_last``: the bundle's ``--channels_last true`` (``semcl_components.networks.memory_format``): the
  network's 3-D weights and the batches in ``torch.channels_last_3d``; v2's number of runs at a time and threads;
- ``threads``: ``--threads`` CPU threads per run (``OMP_NUM_THREADS``) and ``--jobs / --threads`` runs at a time,
  the same cores as v2's ``--jobs`` one-thread runs: the ratio is of throughput (seconds per epoch divided by the
  runs at a time);
- validation frequency: not a run of its own. Every timed run reports its seconds per training epoch and per
  validation apart, so the cost of an epoch at any validation interval V is ``train + validation / V``; the ratio of
  each interval of ``--val-intervals`` to v2's 40 is taken from v2's runs of the same round;
- cached deterministic transforms: v2's setting already (the bundle caches the deterministic prefix of every
  training and validation dataset); nothing to measure, recorded as such.

It times two epochs of v3, from the size's own data and draws (``BenchmarkData``, the seed's datalist):

- ``scratch``: ``train.yaml`` at the size's ``stage1_pixdim`` (5.625 mm, resampled from the fine data at load), the
  size's ``finetune`` settings over v2's;
- ``cascade_scratch``: ``train.yaml`` + ``train_refine.yaml`` at the data's own grid (2.8125 mm), the size's
  ``refine`` settings over v2's fine-tuning settings.

Rounds alternate the settings (v2 first, then each lever; the next round in the reverse order), so that a drift of
the machine's speed hits each alike; each lever's ratio is taken within its round, against that round's v2 runs.
A timed run lasts ``--epochs`` epochs (per kind) and validates every ``--val-every`` (and after the last); epoch 1 (start-up)
is left out. A ratio below 1 means the lever makes an epoch cheaper (``speedup`` = 1 / ratio). Each run's mean
training loss per epoch is kept: the first epoch's loss of a lever's run against v2's says whether the arithmetic
stayed the same (it may round differently: the summation order changes).

The result, ``<size results folder>/cost_levers.json``, holds every round (every run's seconds, CPU seconds, peak
memory and losses), each lever's median ratio per epoch kind, the machine, the load average at the start and the
end, and the commit.

Usage:
    python scripts/benchmark_cost_ratio.py levers [--size v3] [--kinds scratch cascade_scratch]
        [--levers channels_last threads] [--jobs 2] [--threads 2] [--rounds 3] [--epochs 40 12] [--val-every 5]
        [--val-intervals 20 80] [--setting finetune_1] [--seed 100] [--allow-dirty]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from semcl_components.bundle_runtime.atomic_io import write_json_atomic
from semcl_tools.bundle_run import bundle_command, run_logged
from semcl_tools.progress import emit
from semcl_tools.repository import CONFIGS, ROOT

from .datasets import BenchmarkData
from .plan import BundleCall
from .protocol import Protocol, Size, load_protocol_or_exit
from .results import DirtyTreeError, check_clean_tree, code_version, machine, read_json, results_folder

__all__ = ["EPOCH_KINDS", "LEVERS", "LEVERS_FILE", "Setting", "epoch_costs", "main", "measure", "settings_to_time"]

LEVERS_FILE = "cost_levers.json"
#: v3's two epochs: stage 1 (image-only, coarse grid) and stage 2 (the refinement, fine grid).
EPOCH_KINDS = ("scratch", "cascade_scratch")
#: The levers timed as runs of their own (validation frequency is computed from every run's validation seconds).
LEVERS = ("channels_last", "threads")
#: The size whose fine-tuning settings are v2's (under the size's own ``finetune`` or ``refine``).
V2_SIZE = "default"
V2_VAL_INTERVAL = 40
#: Epochs per timed run: a scratch epoch at 5.625 mm takes about 0.4 s, a stage-2 epoch at 2.8125 mm some seconds.
DEFAULT_EPOCHS = {"scratch": 40, "cascade_scratch": 12}
CACHE_NOTE = ("v2's setting already: the bundle's training and validation datasets are MONAI CacheDataset "
              "(cache_rate 1.0), which caches the deterministic transforms (loading, resampling, intensity window, "
              "padding); stage 2's transforms after them are random (simulated prior, organ crops); nothing to time")
PREFIX = "[levers]"


@dataclass(frozen=True)
class Setting:
    """One way of running the same epochs: the levers' values.

    Args:
        name: ``v2`` or the lever it changes.
        channels_last: the bundle's ``channels_last``.
        threads: CPU threads per run.
        copies: runs at a time (each on the same data and seed).
    """

    name: str
    channels_last: bool = False
    threads: int = 1
    copies: int = 1

    def describe(self) -> str:
        memory = ", channels-last" if self.channels_last else ""
        return f"{self.name} ({self.copies} run{'s' if self.copies > 1 else ''} at a time, {self.threads} " \
               f"thread{'s' if self.threads > 1 else ''} each{memory})"


def settings_to_time(levers: Sequence[str], jobs: int, threads: int) -> list[Setting]:
    """v2's setting (``jobs`` one-thread runs at a time), then one setting per lever in ``levers``.

    Raises:
        ValueError: an unknown lever, ``jobs`` or ``threads`` below 1, or the threads lever with ``threads`` 1
            (v2's own).
    """
    unknown = [lever for lever in levers if lever not in LEVERS]
    if unknown:
        raise ValueError(f"unknown lever {unknown[0]!r}; the levers timed as runs are {', '.join(LEVERS)}.")
    if jobs < 1 or threads < 1:
        raise ValueError(f"--jobs and --threads must be at least 1, got {jobs} and {threads}.")
    if "threads" in levers and threads == 1:
        raise ValueError("--threads 1 is v2's setting: the threads lever needs more than one thread per run.")
    chosen = [Setting("v2", copies=jobs)]
    if "channels_last" in levers:
        chosen.append(Setting("channels_last", channels_last=True, copies=jobs))
    if "threads" in levers:
        chosen.append(Setting("threads", threads=threads, copies=max(1, jobs // threads)))
    return chosen


def validation_epochs(epochs: int, val_every: int) -> list[int]:
    """The epochs a run validates after (every ``val_every`` and the last; ``FinalValidationHandler``)."""
    return sorted({*range(val_every, epochs + 1, val_every), epochs})


def check_timing(epochs: int, val_every: int) -> None:
    """Stop unless a run of ``epochs`` epochs validating every ``val_every`` has, after epoch 1 (start-up), an epoch
    with a validation and one without.

    Raises:
        ValueError: naming the two values and what is missing.
    """
    if val_every < 1 or epochs < 1:
        raise ValueError(f"--epochs and --val-every must be at least 1, got {epochs} and {val_every}.")
    validated = validation_epochs(epochs, val_every)
    trained = [e for e in range(2, epochs + 1) if e not in validated]
    if not trained or not any(e >= 2 for e in validated):
        raise ValueError(f"--epochs {epochs} --val-every {val_every}: the run validates after epochs {validated}; "
                         "timing needs, after epoch 1, an epoch without validation and one with (e.g. --epochs 4 "
                         "--val-every 3).")


def epoch_costs(history: Sequence[dict]) -> dict:
    """A run's seconds per training epoch and per validation, from its run summary's history
    (``[{"epoch", "wall_time_s", "mean_loss", "val"?}, ...]``, ``RunSummaryWriter``: the wall time at each epoch's
    end, after the validation that followed it).

    Epoch 1 (start-up, caches, first kernels) is left out. ``train_seconds``: the mean length of the other epochs
    without a validation; ``validation_seconds``: the mean length of those with one, less ``train_seconds``.

    Raises:
        ValueError: the history has no epoch after the first with a validation, or none without.
    """
    wall = {int(h["epoch"]): float(h["wall_time_s"]) for h in history if "wall_time_s" in h}
    validated = {int(h["epoch"]) for h in history if "val" in h}
    lengths = {e: wall[e] - wall[e - 1] for e in sorted(wall) if e >= 2 and e - 1 in wall}
    trained = [seconds for e, seconds in lengths.items() if e not in validated]
    checked = [seconds for e, seconds in lengths.items() if e in validated]
    if not trained or not checked:
        raise ValueError(f"need, after epoch 1, an epoch without validation and one with; the run summary has "
                         f"{len(trained)} and {len(checked)} (epochs {sorted(wall)}, validated {sorted(validated)}).")
    train = statistics.fmean(trained)
    return {"train_seconds": round(train, 4), "validation_seconds": round(statistics.fmean(checked) - train, 4),
            "train_epochs": len(trained), "validations": len(checked),
            "losses": [h.get("mean_loss") for h in sorted(history, key=lambda h: h["epoch"])]}


def per_epoch(train: float, validation: float, interval: int) -> float:
    """Seconds per epoch of a run validating every ``interval`` epochs."""
    return train + validation / interval


class EpochCalls:
    """The bundle calls of v3's two timed epochs, from the size's data and the seed's datalist.

    Args:
        size: the size (its data, draws, network, ``stage1_pixdim``, ``finetune`` and ``refine``).
        v2: the size whose fine-tuning settings are v2's.
        data: the size's data (written and drawn by :meth:`prepare`).
        setting: the labelled setting both epochs train on (``finetune_1``).
        seed: the seed whose datalist they read.
    """

    def __init__(self, size: Size, v2: Size, data: BenchmarkData, setting: str, seed: int) -> None:
        self.size, self.v2, self.data, self.setting, self.seed = size, v2, data, setting, seed

    def prepare(self) -> None:
        """Write the size's phantoms (unless there) and the seed's datalist."""
        self.data.prepare([self.seed])
        if self.setting not in self.data.datalist(self.seed):
            raise ValueError(f"the datalist of seed {self.seed} has no {self.setting!r}; it has "
                             f"{', '.join(self.data.datalist(self.seed))}.")

    def call(self, kind: str, setting: Setting, epochs: int, val_every: int, folder: Path) -> BundleCall:
        """The bundle call of ``kind`` run with ``setting`` for ``epochs`` epochs, writing into ``folder``."""
        if kind == "scratch":
            configs, own = ["train.yaml"], self.size.finetune
            pixdim = [float(self.size.stage1_pixdim or self.data.pixdim[0])] * 3
        else:
            configs, own, pixdim = ["train.yaml", "train_refine.yaml"], self.size.refine, self.data.pixdim
        timing = {"max_epochs": epochs, "val_interval": val_every, "early_stop_patience": 0, "snapshot_interval": 0}
        overrides = {**self.data.bundle_settings(), "pixdim": pixdim,
                     "data_list_file_path": self.data.datalist_file(self.seed), "seed": self.seed, "resume": "false",
                     **self.size.network, **self.v2.finetune, **own, **timing, "train_key": self.setting,
                     "pretrained_encoder": "", "channels_last": str(setting.channels_last).lower(),
                     "ckpt_dir": folder / "models", "output_dir": folder / "eval"}
        return BundleCall(f"{kind} {setting.name}", configs, overrides, folder / "train.log")


def _run(call: BundleCall, threads: int) -> dict:
    """One timed run: its wall, CPU seconds and peak memory, and :func:`epoch_costs` of its run summary."""
    shutil.rmtree(Path(call.overrides["output_dir"]).parent, ignore_errors=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    result = run_logged(call.name, bundle_command(CONFIGS, call.configs, call.overrides), call.log, env=env,
                        prefix=PREFIX)
    history = read_json(Path(call.overrides["output_dir"]) / "run_summary.json").get("history", [])
    return {"run_seconds": round(result.seconds, 1), "cpu_seconds": round(result.cpu_seconds, 1),
            "peak_memory_mb": round(result.peak_memory_mb, 1), **epoch_costs(history)}


def time_setting(calls: EpochCalls, kind: str, setting: Setting, epochs: int, val_every: int, work: Path) -> dict:
    """``setting.copies`` runs of ``kind`` at once; the mean of their seconds per training epoch and validation."""
    folders = [work / kind / f"{setting.name}_{copy}" for copy in range(setting.copies)]
    runs = [calls.call(kind, setting, epochs, val_every, folder) for folder in folders]
    with ThreadPoolExecutor(max_workers=setting.copies) as pool:
        results = list(pool.map(lambda call: _run(call, setting.threads), runs))
    return {"channels_last": setting.channels_last, "threads": setting.threads, "copies": setting.copies,
            "train_seconds": round(statistics.fmean(r["train_seconds"] for r in results), 4),
            "validation_seconds": round(statistics.fmean(r["validation_seconds"] for r in results), 4),
            "runs": results}


def _ratios(timed: dict, v2_interval: int, intervals: Sequence[int]) -> dict:
    """A round's ratios against its v2 runs: each lever's (throughput: seconds per epoch at ``v2_interval`` over the
    runs at a time; training and validation apart) and each validation interval's."""
    base = timed["v2"]
    base_epoch = per_epoch(base["train_seconds"], base["validation_seconds"], v2_interval) / base["copies"]
    ratios = {}
    for name, row in timed.items():
        if name == "v2":
            continue
        epoch = per_epoch(row["train_seconds"], row["validation_seconds"], v2_interval) / row["copies"]
        first_loss = row["runs"][0]["losses"][0], base["runs"][0]["losses"][0]
        ratios[name] = {
            "epoch": round(epoch / base_epoch, 4),
            "train": round(row["train_seconds"] / row["copies"] / (base["train_seconds"] / base["copies"]), 4),
            "validation": round(row["validation_seconds"] / row["copies"]
                                / (base["validation_seconds"] / base["copies"]), 4)
            if base["validation_seconds"] > 0 else None,
            "first_epoch_loss_difference": None if None in first_loss else abs(first_loss[0] - first_loss[1]),
        }
    for interval in intervals:
        ratios[f"val_interval_{interval}"] = {
            "epoch": round(per_epoch(base["train_seconds"], base["validation_seconds"], interval)
                           / per_epoch(base["train_seconds"], base["validation_seconds"], v2_interval), 4)}
    return ratios


def summarise(rounds: Sequence[dict]) -> dict:
    """Per epoch kind and lever: the median, smallest and largest ratio over the rounds, the speed-up (1 / median),
    and whether the lever made the epoch cheaper in every round."""
    summary: dict[str, dict] = {}
    for row in rounds:
        for lever, ratio in row["ratios"].items():
            summary.setdefault(row["kind"], {}).setdefault(lever, []).append(ratio["epoch"])
    return {kind: {lever: {"ratio_median": round(statistics.median(values), 4), "ratio_min": min(values),
                           "ratio_max": max(values), "speedup": round(1 / statistics.median(values), 3),
                           "cheaper_in_every_round": max(values) < 1.0}
                   for lever, values in levers.items()}
            for kind, levers in summary.items()}


def measure(calls: EpochCalls, kinds: Sequence[str], settings: Sequence[Setting], rounds: int, epochs: dict[str, int],
            val_every: int, intervals: Sequence[int], work: Path) -> dict:
    """Time ``rounds`` alternating rounds of every setting on every epoch kind (``epochs``: each kind's epochs per
    run); the result (see the module)."""
    for kind in kinds:
        check_timing(epochs[kind], val_every)
    calls.prepare()
    v2_interval = int(calls.v2.finetune.get("val_interval", V2_VAL_INTERVAL))
    own = [calls.size.finetune.get("val_interval"), calls.size.refine.get("val_interval")]
    intervals = sorted({*intervals, *(int(v) for v in own if v)} - {v2_interval})  # and the size's own, if set
    load_start, started, timed_rounds = [round(v, 2) for v in os.getloadavg()], time.perf_counter(), []
    for number in range(1, rounds + 1):
        order = list(settings) if number % 2 else list(settings)[::-1]
        for kind in kinds:
            emit(f"{PREFIX} round {number}/{rounds}, {kind}: {', '.join(s.describe() for s in order)}")
            timed = {s.name: time_setting(calls, kind, s, epochs[kind], val_every, work) for s in order}
            timed = {s.name: timed[s.name] for s in settings}  # recorded v2 first, whatever the order run
            row = {"round": number, "kind": kind, "order": [s.name for s in order], "settings": timed,
                   "ratios": _ratios(timed, v2_interval, intervals)}
            timed_rounds.append(row)
            shown = ", ".join(f"{name} {r['epoch']:.3f}" for name, r in row["ratios"].items())
            emit(f"{PREFIX} round {number}/{rounds}, {kind}: v2 {timed['v2']['train_seconds']:.2f} s per training "
                 f"epoch, {timed['v2']['validation_seconds']:.2f} s per validation; ratios to v2: {shown}")
        elapsed = time.perf_counter() - started
        if number < rounds:
            emit(f"{PREFIX} {number} of {rounds} rounds in {elapsed:.0f} s; about {elapsed / number * (rounds - number):.0f}"
                 " s to go")
    return {"size": calls.size.name, "setting": calls.setting, "seed": calls.seed, "kinds": list(kinds),
            "epochs": dict(epochs), "val_every": val_every, "v2_val_interval": v2_interval,
            "settings": {s.name: {"channels_last": s.channels_last, "threads": s.threads, "copies": s.copies}
                         for s in settings},
            "cached_deterministic_transforms": CACHE_NOTE, "rounds": timed_rounds, "summary": summarise(timed_rounds),
            "seconds": round(time.perf_counter() - started, 1), "machine": machine(),
            "load_average": {"start": load_start, "end": [round(v, 2) for v in os.getloadavg()]},
            "code": code_version(), "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmark_cost_ratio.py levers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", nargs="+", type=Path, default=[], metavar="FILE",
                        help="YAML/JSON files that add or replace sizes (layout of semcl_benchmark/protocol.yaml)")
    parser.add_argument("--size", default="v3", help="the size whose data and settings are timed (default: v3)")
    parser.add_argument("--kinds", nargs="+", choices=EPOCH_KINDS, default=list(EPOCH_KINDS),
                        help="the epochs timed (default: both)")
    parser.add_argument("--levers", nargs="+", choices=LEVERS, default=list(LEVERS),
                        help="the levers timed as runs (default: all; the validation interval is always computed)")
    parser.add_argument("--jobs", type=int, default=2, help="v2's runs at a time, one thread each (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads per run of the threads lever, which runs "
                        "--jobs / --threads at a time (default: 2)")
    parser.add_argument("--val-intervals", nargs="+", type=int, default=[20, 80],
                        help=f"validation intervals whose cost is set against v2's {V2_VAL_INTERVAL} (default: 20 80)")
    parser.add_argument("--setting", default="finetune_1", help="labelled setting of every run (default: finetune_1)")
    parser.add_argument("--seed", type=int, help="seed whose datalist is read (default: the size's first tuning seed)")
    parser.add_argument("--epochs", nargs="+", type=int,
                        help="epochs of each timed run: one number, or one per kind of --kinds (default: "
                             + ", ".join(f"{v} for {k}" for k, v in DEFAULT_EPOCHS.items()) + ")")
    parser.add_argument("--val-every", type=int, default=5, help="validation interval of the timed runs (default: 5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    parser.add_argument("--out", type=Path, help=f"result file (default: <size results folder>/{LEVERS_FILE})")
    parser.add_argument("--workdir", type=Path, help="the size's data (shared with its benchmark) and, under "
                        "cost_levers/, the timed runs (default: runs/benchmark/<size>)")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="measure from a working tree with uncommitted changes (recorded as the commit's +changes)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    protocol: Protocol = load_protocol_or_exit(parser, args.protocol, {"--size": args.size})
    size = protocol.sizes[args.size]
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}.")
    if any(v < 1 for v in args.val_intervals):
        parser.error(f"--val-intervals must be at least 1, got {args.val_intervals}.")
    if args.epochs is None:
        epochs = {kind: DEFAULT_EPOCHS[kind] for kind in args.kinds}
    elif len(args.epochs) in (1, len(args.kinds)):
        epochs = dict(zip(args.kinds, args.epochs * len(args.kinds) if len(args.epochs) == 1 else args.epochs))
    else:
        parser.error(f"--epochs: one number or one per kind ({len(args.kinds)}), got {len(args.epochs)}.")
    try:
        settings = settings_to_time(args.levers, args.jobs, args.threads)
        for kind in args.kinds:
            check_timing(epochs[kind], args.val_every)
    except ValueError as error:
        parser.error(str(error))
    try:
        check_clean_tree(args.allow_dirty)
    except DirtyTreeError as error:
        print(f"{PREFIX} {error}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else (size.tuning_seeds or size.seeds)[0]
    work = (args.workdir or ROOT / "runs" / "benchmark" / size.name).absolute()
    calls = EpochCalls(size, protocol.sizes[V2_SIZE], BenchmarkData(size, work), args.setting, seed)
    try:
        result = measure(calls, args.kinds, settings, args.rounds, epochs, args.val_every, args.val_intervals,
                         work / "cost_levers")
    except ValueError as error:
        parser.error(str(error))
    out = args.out or results_folder(size.name) / LEVERS_FILE
    write_json_atomic(result, out)
    for kind, levers in result["summary"].items():
        shown = ", ".join(f"{lever} x{s['speedup']:.2f}" for lever, s in levers.items())
        emit(f"{PREFIX} {kind}: speed-up against v2 (median of {args.rounds} rounds): {shown}")
    emit(f"{PREFIX} wrote {out} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
