"""Low-label benchmark: does semantic-aware contrastive pretraining help, and by how much? Run through the bundle.

Every stage is a ``python -m monai.bundle run`` of the bundle's own workflows (the commands are logged):

    data       the phantom dataset of the size (deterministic; written once)
    pretrain   one encoder per pretraining arm and seed: image-level SimCLR (``simclr``), supervised segmentation
               on the pretraining pool with the same label masks as targets (``supervised``), semantic-aware
               contrastive pretraining with exact (``semcl_exact``) or coarse, dilated masks (``semcl_coarse``), and
               at the full size ``channel`` embedding and intensity weighting
    finetune   every arm (and ``scratch``, random init) on each labelled setting (``finetune_1``, ``finetune_2``...)
               and seed, to a validation plateau (early stopping with a patience; the same rule for every arm);
               plus a frozen-encoder probe (decoder only) of every pretraining arm in one setting
    evaluate   per-case, per-organ Dice and the voxel confusion matrix on the fixed test split
    atlas      no training: a majority vote of the seed's labelled maps on the test split (three registrations)
    study      the shortcut study: variants of the method (stronger intensity changes between views, small and
               strongly zoomed views, four times longer pretraining, organ x contrast-phase labels, a gentler
               encoder learning rate or an encoder warm-up at fine-tuning) in one setting and a few seeds, beside
               scratch and ``semcl_exact``

Each seed pretrains and fine-tunes anew, and (v2) draws its own labelled volumes and pretraining pool around one fixed
test set (``semcl_benchmark/splits.py``): the training run is the unit of every statistic. Every finished run writes
a small JSON, its run record (``semcl_benchmark/run_records.py``: its configuration and a hash of it, its whole draw
of labelled, pretraining pool, validation and test cases, per-case per-organ Dice, validation curve, budget, wall
time, peak memory, the commit it ran from, the schema version) into the results folder
(``docs/results/benchmark/<size>/``, committed); a run whose JSON exists with the same configuration hash is
skipped, so the benchmark can be stopped and completed later, even on
another machine. A run refuses to start from a working tree with uncommitted changes (its own result files and
reports aside) unless ``--allow-dirty`` (which every result file records). The report (``docs/RESULTS.md`` for the
default size) is regenerated from these files alone, with whatever is finished; v1's report (``docs/RESULTS_v1.md``)
is frozen with its result files.

Usage:
    python scripts/benchmark.py [--quick | --full | --size NAME] [--protocol FILE ...] [--jobs 2]
                                [--settings finetune_1 ...] [--arms scratch ...] [--seeds 0 1 ...] [--max-runs N]
                                [--dataset_dir DIR [--pixdim X Y Z]] [--device cpu|cuda] [--nproc_per_node N]
                                [--allow-dirty] [--report-only | --data-only]

Sizes (``semcl_benchmark/protocol.yaml``): the default (v2: realistic phantoms, seeds as draws, 1, 2 and 4 labelled
volumes, the upper bound, atlases, the paper's own setting; ``docs/PROTOCOL.md``), ``--size difficulty`` (issue 20's
criteria: scratch and atlases only), ``--size calibration`` (the default size's cost per epoch: the basis of its cost
estimate), ``--quick`` (minutes: a smoke test of every path, not a result), ``--size v1`` (the first protocol, its
committed runs) and ``--full`` (96^3 crops; meant for a GPU). ``--size v3`` is the DRAFT of ``docs/PROTOCOL_v3.md``:
its stages are built (stage 1, its predictions, stage-2 pretraining, stage 2, oracle tests: ``docs/BENCHMARK.md``)
but its training settings are still to size, so only its data and draws run (``--data-only``: the phantoms, a line
per subject, and every seed's datalist, tuning seeds included, nothing trained; a complete dataset and datalists
already written are reused); ``--size v3_tiny`` runs the whole pipeline on tiny data. A v3 size's report
(``semcl_benchmark/report/v3.py``, the size's ``report`` or ``<results>/RESULTS.md``) says, while nothing can be
planned yet, why (``--report-only`` writes it even then).

The user's own data: ``--dataset_dir DIR`` runs the same protocol on an MSD-style dataset (``dataset.json`` with
``labels`` and a ``training`` list; the classes are its labels, the spacing its images' or ``--pixdim``), with the
seeds drawn from its cases; results and work go to ``runs/benchmark/<dataset folder name>-<hash of its path>/<size>/``
(two datasets of one folder name never share results), and every run records a fingerprint of the dataset: a run made
before the dataset was edited counts as not done (the benchmark names what changed and runs it again).
Arms and sizes are data (``semcl_benchmark/protocol.yaml``): ``--protocol FILE`` adds or replaces arms and sizes
from a YAML or JSON file of the same layout, and ``--size NAME`` runs one of its sizes.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from semcl_tools.bundle_run import BundleRunError
from semcl_tools.repository import ROOT

from .datasets import dataset_folder_name
from .protocol import load_protocol_or_exit
from .recipes import check_records
from .report import write_report
from .report.load import table
from .report.v3 import RecipeCheck
from .results import DirtyTreeError, results_folder
from .runner import Benchmark

__all__ = ["main"]


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (argparse names the option in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}; give a whole number >= {minimum}")
        return value

    return parse


def _millimetres(text: str) -> float:
    """An argparse type: a voxel size in mm, finite and above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} mm is no voxel size; give sizes above 0 mm, e.g. 1.5 1.5 2.0")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", dest="size", const="quick", help="minutes: a smoke test")
    group.add_argument("--full", action="store_const", dest="size", const="full", help="the GPU size")
    group.add_argument("--size", dest="size", help="a size of the protocol by name (e.g. one of a --protocol file)")
    parser.set_defaults(size="default")
    parser.add_argument("--protocol", nargs="+", type=Path, default=[], metavar="FILE",
                        help="YAML/JSON files that add or replace arms and sizes (layout of semcl_benchmark/protocol.yaml)")
    parser.add_argument("--jobs", type=_whole_number(1), default=2,
                        help="runs at a time, one CPU thread each (default 2)")
    parser.add_argument("--threads-per-job", type=_whole_number(1), default=1)
    parser.add_argument("--arms", nargs="+",
                        help="only these arms, study arms included (default: the size's arms and study arms)")
    parser.add_argument("--settings", nargs="+", help="only these labelled settings (default: the size's)")
    parser.add_argument("--seeds", nargs="+", type=_whole_number(0), help="only these seeds (default: the size's)")
    parser.add_argument("--max-runs", type=_whole_number(0), help="stop after this many runs (the rest another time)")
    parser.add_argument("--results", type=Path, help="result JSON folder (default docs/results/benchmark/<size>)")
    parser.add_argument("--workdir", type=Path, help="runs, logs and data (default runs/benchmark/<size>)")
    parser.add_argument("--report", type=Path,
                        help="the report (default: the size's, e.g. docs/RESULTS.md; <results>/RESULTS.md else)")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the report from the results")
    parser.add_argument("--data-only", action="store_true",
                        help="only write the data and the datalists of the seeds (default: the size's seeds and tuning "
                             "seeds); nothing is trained; a complete dataset and datalists already there are reused")
    parser.add_argument("--dataset_dir", type=Path,
                        help="your own labelled dataset (MSD layout: dataset.json with labels and training) instead "
                             "of the phantoms")
    parser.add_argument("--pixdim", type=_millimetres, nargs=3, metavar=("X", "Y", "Z"),
                        help="the grid the workflows resample to, in mm (default: the dataset's spacing)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="every workflow's device (default: a GPU if any)")
    parser.add_argument("--nproc_per_node", type=_whole_number(1), default=1,
                        help="processes per workflow call, started by torchrun with the multi_gpu overlays")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run from a working tree with uncommitted changes (recorded in every result file)")
    return parser


def recipe_check(protocol, size) -> RecipeCheck | None:
    """The recipe check a size's report reads (its ``recipe_check``: the check's finished runs and its baseline's,
    :func:`semcl_benchmark.recipes.check_records`); ``None`` for a size without one."""
    if size.recipe_check is None:
        return None
    check, records = check_records(protocol, size)
    return RecipeCheck(check, size.recipe_check["baseline_arm"], table(records))


def _folders(args: argparse.Namespace, size) -> tuple[Path, Path, Path]:
    """The results folder, the work folder and the report of a benchmark (separate per dataset)."""
    if args.dataset_dir is not None:
        base = ROOT / "runs" / "benchmark" / dataset_folder_name(args.dataset_dir) / size.name
        results, work = args.results or base / "results", args.workdir or base
    else:
        results = args.results or results_folder(size.name)
        work = args.workdir or ROOT / "runs" / "benchmark" / size.name
    committed = size.report is not None and args.results is None and args.dataset_dir is None
    report = args.report or (ROOT / size.report if committed else results.absolute() / "RESULTS.md")
    return results.absolute(), work.absolute(), report


def _check_output_paths(parser: argparse.ArgumentParser, results: Path, work: Path, report: Path) -> None:
    """Stop before any work if an output folder is a file (or the report a folder), naming the option."""
    for option, folder in (("--results", results), ("--workdir", work)):
        if folder.exists() and not folder.is_dir():
            parser.error(f"{option} {folder} is a file; give a folder (it is created if missing).")
    if report.is_dir():
        parser.error(f"--report {report} is a folder; give the report's file name, e.g. {report / 'RESULTS.md'}.")


def _prepare_data(benchmark: Benchmark, size, seeds: list[int] | None) -> int:
    """``--data-only``: write the size's data and the datalists of ``seeds`` (default: the size's seeds and tuning
    seeds), reusing what is there; 2 when the data cannot give them (the message says why)."""
    seeds = seeds if seeds is not None else [*size.seeds, *size.tuning_seeds]
    data = benchmark.planner.data
    print(f"[bench] data of size {size.name!r} in {data.folder} (a complete dataset there is reused)", flush=True)
    try:
        data.prepare(seeds, verbose=True)
    except ValueError as error:
        print(f"[bench] {error}", file=sys.stderr)
        return 2
    for seed in seeds:
        print(f"[bench] seed {seed}: {data.datalist_file(seed)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    protocol = load_protocol_or_exit(parser, args.protocol, {"--size": args.size})
    unknown = [arm for arm in args.arms or [] if arm not in protocol.arms]
    if unknown:
        parser.error(f"--arms: unknown arm(s) {', '.join(unknown)}; the protocol has {', '.join(protocol.arms)}.")

    size = protocol.sizes[args.size]
    results, work, report = _folders(args, size)
    _check_output_paths(parser, results, work, report)
    try:
        benchmark = Benchmark(size, results, work, jobs=args.jobs, threads_per_job=args.threads_per_job,
                              protocol=protocol, dataset_dir=args.dataset_dir, pixdim=args.pixdim, device=args.device,
                              processes=args.nproc_per_node, allow_dirty=args.allow_dirty)
    except ValueError as error:
        parser.error(str(error))
    if args.data_only:
        return _prepare_data(benchmark, size, args.seeds)
    arms = args.arms or list(size.arms) + list(size.study_arms)
    unplanned = None
    try:
        planned = benchmark.plan([a for a in arms if not protocol.arms[a].study], args.settings or list(size.settings),
                                 args.seeds if args.seeds is not None else list(size.seeds),
                                 study=[a for a in arms if protocol.arms[a].study])
    except ValueError as error:  # an arm whose stage is not built, a v3 size not sized: nothing planned
        print(f"[bench] {error}", file=sys.stderr)
        if not (args.report_only and size.draws is not None):
            return 2
        planned, unplanned = [], str(error)  # a v3 report says why nothing is planned yet
    changed = benchmark.dataset_changes(planned)  # issue 35: runs of an edited dataset are never pooled with new ones
    if changed:
        print(f"[bench] {changed}", file=sys.stderr)
    failed: list[str] = []
    if not args.report_only:
        try:
            failed = benchmark.run(planned, args.max_runs)
        except DirtyTreeError as error:  # nothing was run
            print(f"[bench] {error}", file=sys.stderr)
            return 2
        except ValueError as error:  # a planned workflow call with an invalid setting: nothing was run
            print(f"[bench] {error}", file=sys.stderr)
            return 2
        except BundleRunError as error:
            print(f"[bench] {error}", file=sys.stderr)
            return 1
    option = {"default": "", "quick": " --quick", "full": " --full"}.get(size.name, f" --size {size.name}")
    protocols = f" --protocol {' '.join(map(str, args.protocol))}" if args.protocol else ""
    data = f" --dataset_dir {args.dataset_dir}" if args.dataset_dir else ""
    data += f" --pixdim {' '.join(map(str, args.pixdim))}" if args.pixdim else ""
    command = "python scripts/benchmark.py" + option + protocols + data
    try:
        write_report(size, planned, benchmark.store, report, command, unplanned=unplanned,
                     check=recipe_check(protocol, size))
    except ValueError as error:  # a v1 size: its report is frozen
        print(f"[bench] {error}", file=sys.stderr)
        return 2
    print(f"[bench] report: {report}")
    if failed:
        print(f"[bench] {len(failed)} runs failed: {', '.join(failed)}; their logs are in {work / 'logs'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
