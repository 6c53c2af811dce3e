"""Micro-benchmark: cost of one contrastive training step against one plain segmentation step, on CPU.

Three arms train on the SAME batch of patches with the same SegResNet backbone (the bundle's network size and HU window,
read from ``configs/common.yaml``; ``--init-filters`` overrides the width), each through MONAI's ``SupervisedTrainer``:

- ``pool``:    ObjectEmbeddingModel(embedding_mode="pool") + SemanticSupConLoss via ContrastiveIteration (one encoder pass
               per patch);
- ``channel``: ObjectEmbeddingModel(embedding_mode="channel") + SemanticSupConLoss (one encoder pass per object, all objects in
               one batched call; ``--object-crop`` crops an object-centred window first);
- ``seg``:     monai.networks.nets.SegResNet (encoder + decoder) + DiceCELoss on the label map of the same patches,
               with SupervisedTrainer's own step;
- ``seg_channels_last`` (only when named in ``--arms``): ``seg`` with the network's weights and the batches in
               ``torch.channels_last_3d`` (the bundle's ``--channels_last true``): the same arithmetic, another memory
               order; its ``/seg`` ratio is that lever's cost on a fine-tuning step.

A step is forward + loss + backward + Adam step (ContrastiveIteration also computes the collapse monitors, as in
training). Time: all arms are built in this one process and timed interleaved, one step of each arm per round, so
that a change of CPU load hits every arm alike; a step's time is the wall clock between ignite's ITERATION_STARTED
and ITERATION_COMPLETED; the median over ``--repeats`` rounds after ``--warmup`` rounds is reported (oneDNN builds
its kernels during the first steps).

Data: ``--views`` / 2 phantom subjects (``generate_phantom``, in memory), HU windowed to [0, 1], attention masks from
the label map, two views per subject (a random ``--size``^3 crop inside a centred window a third wider than the
patch, so that crops hold most organs, and a random flip); objects cut below 10 voxels by the crop are dropped.

Memory: each arm also runs alone in a child process (this module re-invoked with ``--arm``) for 2 steps, so the arms
cannot inherit each other's allocations. The child reads its peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) before the first step (python + torch + data + model:
``baseline_rss_mb``) and after the last (``peak_rss_mb``); ``step_peak_mb = peak - baseline`` is the extra memory
a training step needs at its high-water mark (activations kept for backward, gradients, optimizer state). RSS counts
every page the process touched, so it bounds from above what torch allocated.

The CPU may be shared with other jobs: the load average at start and end is recorded. Compare ratios from one run,
not absolute seconds across runs.

Usage:
    python scripts/benchmark_step.py [--size 48] [--views 8] [--repeats 5] [--warmup 2] [--threads 2]
                                     [--init-filters 16] [--object-crop N] [--arms pool channel seg seg_channels_last]
                                     [--out runs/benchmarks/step_benchmark.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import monai
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import SegResNet
from monai.transforms import CenterSpatialCropd, Compose, RandFlipd, RandSpatialCropd, ScaleIntensityRanged

from semcl_components.bundle_runtime.atomic_io import write_json_atomic
from semcl_components.collate import object_list_collate
from semcl_components.engines import ContrastiveIteration
from semcl_components.losses import SemanticSupConLoss
from semcl_components.networks import (
    ObjectEmbeddingModel,
    SegResNetEncoder,
    batch_to_kwargs,
    network_on_device,
)
from semcl_components.transforms import DropEmptyMasksd, GenerateAttentionMasksd, RandMultiViewd
from semcl_components.bundle_runtime.bundle_files import read_settings
from semcl_phantoms.anatomy import LABEL_NAMES
from semcl_phantoms.phantoms import generate_phantom
from semcl_tools.repository import CONFIGS, ROOT

from .results import cpu_model

ARMS = ("pool", "channel", "seg", "seg_channels_last")
DEFAULT_ARMS = ("pool", "channel", "seg")
SHARED = read_settings(CONFIGS / "common.yaml")  # the bundle's HU window and network size, read from the one place
HU_WINDOW = (float(SHARED["hu_min"]), float(SHARED["hu_max"]))  # -> [0, 1]
MIN_OBJECT_VOXELS = 10
MEMORY_STEPS = 2  # the first step creates Adam's state; the second repeats the step with it in place


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=48, help="patch edge in voxels (default 48)")
    parser.add_argument("--views", type=int, default=8, help="patches per batch, an even number: 2 views per subject")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per arm (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per arm before timing")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (and OMP_NUM_THREADS)")
    parser.add_argument(
        "--init-filters", type=int, default=SHARED["init_filters"], help="SegResNet init_filters of every arm"
    )
    parser.add_argument("--object-crop", type=int, default=None, help="channel mode: object-centred crop edge")
    parser.add_argument("--phantom-size", type=int, default=None, help="phantom edge (default 2 * size)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(DEFAULT_ARMS))
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "benchmarks" / "step_benchmark.json")
    # internal: run one arm in this process (used by the parent for per-arm memory)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--batch-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", type=Path, help=argparse.SUPPRESS)
    return parser


# ------------------------------------------------------------------------------------------------------- data


def make_batch(size: int, views: int, phantom_size: int, seed: int) -> dict:
    """``views`` patches (``views // 2`` subjects x 2 views) collated by ``object_list_collate``, as plain tensors."""
    spatial = ["image", "label", "masks"]
    view = Compose(
        [
            RandSpatialCropd(keys=spatial, roi_size=(size,) * 3, random_size=False),
            RandFlipd(keys=spatial, prob=0.5, spatial_axis=0),
            DropEmptyMasksd(min_voxels=MIN_OBJECT_VOXELS),
        ]
    )
    pipeline = Compose(
        [
            ScaleIntensityRanged(keys="image", a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True),
            # views are cropped inside a centred window a sixth of the patch wider on each side: most organs inside
            CenterSpatialCropd(keys=["image", "label"], roi_size=(min(phantom_size, size + size // 3),) * 3),
            GenerateAttentionMasksd(keys="label", min_voxels=MIN_OBJECT_VOXELS),
            RandMultiViewd(view, num_views=2),
        ]
    )
    pipeline.set_random_state(seed=seed)
    samples = []
    for subject in range(views // 2):
        phantom = generate_phantom((phantom_size,) * 3, seed=(seed, subject))
        sample = {"image": phantom.image[None].astype("float32"), "label": phantom.label[None].astype("float32")}
        samples.append(pipeline(sample))
    batch = object_list_collate(samples)
    # plain tensors: every arm sees the same data without MetaTensor bookkeeping
    return {k: [_plain(t) for t in v] if isinstance(v, list) else _plain(v) for k, v in batch.items()}


def _plain(value) -> torch.Tensor:
    return torch.as_tensor(value).as_subclass(torch.Tensor)


# -------------------------------------------------------------------------------------------------- one arm


def build_trainer(arm: str, batch: dict, args: argparse.Namespace, max_epochs: int):
    """A SupervisedTrainer running ``max_epochs`` steps of ``arm`` on ``[batch]``."""
    torch.manual_seed(args.seed)
    common = {"device": torch.device("cpu"), "max_epochs": max_epochs, "train_data_loader": [batch], "decollate": False}
    if arm in ("seg", "seg_channels_last"):
        num_classes = len(LABEL_NAMES)  # background + the phantom's organs
        network = SegResNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=num_classes,
            init_filters=args.init_filters,
            blocks_down=SHARED["blocks_down"],
            blocks_up=SHARED["blocks_up"],
        )
        loss, iteration = DiceCELoss(to_onehot_y=True, softmax=True), None
        channels_last = arm == "seg_channels_last"
        network = network_on_device(network, "cpu", channels_last=channels_last)
        common["to_kwargs"] = batch_to_kwargs(channels_last)
    else:
        encoder = SegResNetEncoder(
            in_channels=2 if arm == "channel" else 1,
            init_filters=args.init_filters,
            blocks_down=SHARED["blocks_down"],
        )
        crop = (args.object_crop,) * 3 if arm == "channel" and args.object_crop else None
        network = ObjectEmbeddingModel(encoder, embedding_mode=arm, object_crop_size=crop)
        loss, iteration = SemanticSupConLoss(), ContrastiveIteration(positives="class")
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-4)
    trainer = SupervisedTrainer(
        network=network, optimizer=optimizer, loss_function=loss, iteration_update=iteration, **common
    )
    return trainer, sum(p.numel() for p in network.parameters())


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class StepClock:
    """Wall-clock seconds of every iteration of an ignite engine (ITERATION_STARTED -> ITERATION_COMPLETED)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start = 0.0

    def attach(self, engine) -> StepClock:
        engine.add_event_handler(Events.ITERATION_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._completed)
        return self

    def _started(self, _) -> None:
        self._start = time.perf_counter()

    def _completed(self, _) -> None:
        self.times.append(time.perf_counter() - self._start)


def time_arms(batch: dict, args: argparse.Namespace) -> dict[str, dict]:
    """Time every arm in this process, interleaved step by step so that a change of CPU load hits all arms alike.

    Every round runs each arm's trainer for one step (``SupervisedTrainer.run`` restarts a finished run); the first
    ``args.warmup`` rounds are not timed.
    """
    torch.set_num_threads(args.threads)
    trainers = {arm: build_trainer(arm, batch, args, max_epochs=1)[0] for arm in args.arms}
    clocks = {arm: StepClock().attach(trainer) for arm, trainer in trainers.items()}
    for round_index in range(args.warmup + args.repeats):
        print(f"[benchmark] round {round_index + 1}/{args.warmup + args.repeats}", flush=True)
        for trainer in trainers.values():
            trainer.run()
    results = {}
    for arm, clock in clocks.items():
        timed = clock.times[args.warmup :]
        results[arm] = {
            "median_s": statistics.median(timed),
            "min_s": min(timed),
            "times_s": [round(t, 4) for t in timed],
            "warmup_times_s": [round(t, 4) for t in clock.times[: args.warmup]],
        }
    return results


def measure_memory(args: argparse.Namespace) -> dict:
    """Child process: peak RSS of ``args.arm`` over ``MEMORY_STEPS`` steps on the saved batch."""
    torch.set_num_threads(args.threads)
    batch = torch.load(args.batch_file, weights_only=True)
    trainer, num_parameters = build_trainer(args.arm, batch, args, max_epochs=MEMORY_STEPS)
    baseline = _peak_rss_mb()
    trainer.run()
    peak = _peak_rss_mb()
    return {
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(peak, 1),
        "step_peak_mb": round(peak - baseline, 1),
        "num_parameters": num_parameters,
    }


# ---------------------------------------------------------------------------------------------------- parent


def _child(arm: str, batch_file: Path, args: argparse.Namespace, workdir: Path) -> dict:
    result_file = workdir / f"{arm}.json"
    options = {
        "--arm": arm,
        "--batch-file": batch_file,
        "--result-file": result_file,
        "--threads": args.threads,
        "--init-filters": args.init_filters,
        "--seed": args.seed,
        "--object-crop": args.object_crop,
    }
    command = [sys.executable, "-m", "semcl_benchmark.step"]
    command += [str(part) for option, value in options.items() if value is not None for part in (option, value)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    subprocess.run(command, check=True, env=env)
    return json.loads(result_file.read_text())


def _summary_lines(report: dict) -> list[str]:
    lines = [
        f"step benchmark: {report['settings']['views']} views of {report['settings']['size']}^3, "
        f"{report['objects']['total']} objects ({report['objects']['mean_per_patch']:.1f} per patch), "
        f"SegResNet init_filters={report['settings']['init_filters']}, {report['settings']['threads']} threads, "
        f"{report['environment']['cpu_model']}",
        f"{'arm':<17} {'median s/step':>14} {'x seg':>7} {'min s/step':>11} {'x seg':>7} {'peak RSS MB':>12} "
        f"{'step peak MB':>13}",
    ]
    for arm, result in report["arms"].items():
        ratio = report["ratios"].get(f"{arm}/seg", 1.0 if arm == "seg" else float("nan"))
        fastest = report["ratios"].get(f"{arm}/seg_fastest", 1.0 if arm == "seg" else float("nan"))
        lines.append(
            f"{arm:<17} {result['median_s']:>14.3f} {ratio:>7.2f} {result['min_s']:>11.3f} {fastest:>7.2f} "
            f"{result['peak_rss_mb']:>12.0f} {result['step_peak_mb']:>13.0f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.arm is not None:
        write_json_atomic(measure_memory(args), args.result_file)
        return 0
    if args.views < 2 or args.views % 2:
        raise ValueError(f"--views must be an even number >= 2 (two views per subject), got {args.views}.")
    if args.repeats < 1 or args.warmup < 0:
        raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}.")
    phantom_size = args.phantom_size or 2 * args.size

    start = time.perf_counter()
    batch = make_batch(args.size, args.views, phantom_size, args.seed)
    counts = [int(m.shape[0]) for m in batch["masks"]]
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="step_benchmark_") as tmp:
        batch_file = Path(tmp) / "batch.pt"
        torch.save(batch, batch_file)
        memory = {}
        for arm in args.arms:
            print(f"[benchmark] memory of {arm} (child process)", flush=True)
            memory[arm] = _child(arm, batch_file, args, Path(tmp))
    arms = time_arms(batch, args)
    for arm in arms:
        arms[arm].update(memory[arm])
    ratios = {}
    if "seg" in arms:  # median ratios; the ratios of the fastest steps (least disturbed by other jobs) beside them
        for arm in (a for a in arms if a != "seg"):
            ratios[f"{arm}/seg"] = arms[arm]["median_s"] / arms["seg"]["median_s"]
            ratios[f"{arm}/seg_fastest"] = arms[arm]["min_s"] / arms["seg"]["min_s"]
    report = {
        "settings": {
            **{key: getattr(args, key) for key in ("size", "views", "repeats", "warmup", "threads", "seed")},
            "init_filters": args.init_filters,
            "object_crop": args.object_crop,
            "phantom_size": phantom_size,
            "optimizer": "Adam(lr=1e-4)",
        },
        "objects": {"per_patch": counts, "total": sum(counts), "mean_per_patch": sum(counts) / len(counts)},
        "arms": arms,
        "ratios": ratios,
        "timing_method": (
            f"one process, arms interleaved step by step; wall clock ITERATION_STARTED -> ITERATION_COMPLETED of "
            f"SupervisedTrainer; median of {args.repeats} steps after {args.warmup} warm-up rounds"
        ),
        "memory_method": (
            f"each arm alone in a child process running {MEMORY_STEPS} steps; peak_rss = "
            "getrusage(RUSAGE_SELF).ru_maxrss at the end; baseline_rss = the same before the first step "
            "(python, torch, data, model); step_peak = peak_rss - baseline_rss"
        ),
        "environment": {
            "torch": torch.__version__,
            "monai": monai.__version__,
            "python": platform.python_version(),
            "cpu_model": cpu_model(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "note": "the CPU may be shared with other jobs (load averages above); arms are timed interleaved",
        },
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(report, args.out)
    print("\n".join(_summary_lines(report)))
    print(f"[benchmark] wrote {args.out} in {report['wall_time_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
