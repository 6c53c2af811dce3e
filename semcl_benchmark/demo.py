"""The main job: the product's recommended pipeline on today's testbed, one run, set beside the benchmark's seeds.

It runs one seed of benchmark v2's protocol (the ``default`` size: ``realistic`` phantoms, ``docs/PROTOCOL.md``) for one
arm, so that its numbers can be set beside the benchmark's committed runs of the same arm and setting. Stages, each a
``python -m monai.bundle run`` of the bundle as a user would type it (printed, and logged whole):
    1. data       60 realistic phantoms (MSD layout, preview PNG) and the seed's draw: 1 labelled volume, a pretraining
                  pool of 12, 6 validation and 24 test cases
    2. pretrain   semantic-aware contrastive pretraining of the encoder on the pool's label maps (exact masks)
    3. finetune   segmentation training on the labelled volume from the pretrained encoder, to a validation plateau;
                  then per-organ Dice, HD95 and surface Dice on the 24 test cases
    4. segment    one test volume with ``inference.yaml``, and a picture of it: ground truth beside prediction
    5. report     the run's per-organ test Dice beside the benchmark's committed distribution for the same arm and
                  setting (minimum, median, maximum over its seeds) and the benchmark's verdict, read from its files

One progress line per running stage; every workflow's whole log is in ``<workdir>/logs``. Rerunning is safe: finished
runs are reused (each writes a result file when done); an interrupted run starts again. Everything is written under
--workdir (default runs/demo).

Usage:
    python scripts/demo.py [--workdir runs/demo] [--seed 0] [--arm semcl_exact] [--setting finetune_1]

About 10-13 minutes on 2 CPU cores (docs/DEMO.md). ``--size quick`` runs the benchmark's smoke-test size instead (a
minute; its numbers mean nothing and it has no committed runs to compare with).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from semcl_phantoms.phantoms import format_summary, summarise_dataset
from semcl_tools.bundle_run import BundleRunError, bundle_command, run_logged
from semcl_tools.progress import emit, format_seconds
from semcl_tools.repository import CONFIGS, ROOT

from .plan import Run
from .protocol import load_protocol
from .report import endpoints, mean_dice
from .report.load import load_runs, runs_of
from .results import cpu_model, read_json, results_folder
from .runner import Benchmark

DEMO_ARM = "semcl_exact"
"""The recommended pipeline: semantic-aware pretraining on the pool's label maps, then fine-tuning (``--arm``)."""
DEMO_SIZE = "default"
"""Benchmark v2's size: its 299 runs are committed (``docs/results/benchmark/default``, ``docs/RESULTS.md``)."""
DEMO_SETTING = "finetune_1"
"""One labelled volume: the setting whose fine-tuning fits the demo's 15 minutes on 2 cores."""
PREFIX = "[demo]"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def organ_dice(result: dict) -> dict[str, float]:
    """A fine-tuning run's test Dice per organ (mean over test cases) and ``mean`` (mean over cases of case means)."""
    return {**result["test_summary"].get("val_mean_dice", {}), "mean": mean_dice(result)}


def committed_runs(size_name: str, arm: str, setting: str) -> dict[int, dict]:
    """The benchmark's committed fine-tuning results of ``arm`` in ``setting`` by seed (those whose configuration the
    protocol still plans), from ``docs/results/benchmark/<size>``."""
    return runs_of(committed_finetunes(size_name, [arm], setting), arm, setting)


def committed_finetunes(size_name: str, arms: list[str], setting: str):
    """The committed result files of ``arms`` in ``setting`` as the report's long table (:mod:`.report.load`)."""
    size = load_protocol().sizes[size_name]
    reference = Benchmark(size, results_folder(size.name), ROOT / "runs" / "benchmark" / size.name)
    planned = reference.plan(arms, [setting], list(size.seeds), study=[])
    return load_runs(planned, reference.store)


def distribution_table(run: dict, seeds: dict[int, dict]) -> str:
    """This run's test Dice per organ beside the minimum, median and maximum of the committed seeds' runs."""
    mine = organ_dice(run)
    theirs = [organ_dice(result) for result in seeds.values()]
    header = f"{'organ':<14}{'this run':>10}" + (f"{'min':>9}{'median':>9}{'max':>9}" if theirs else "")
    lines = [header, "-" * len(header)]
    for organ, value in mine.items():
        row = f"{organ:<14}{_fmt(value):>10}"
        values = [d[organ] for d in theirs if d.get(organ) is not None]
        if values:
            row += f"{min(values):>9.3f}{statistics.median(values):>9.3f}{max(values):>9.3f}"
        lines.append(row)
    return "\n".join(lines)


def benchmark_verdict(size_name: str, arm: str, setting: str) -> str:
    """One sentence: the benchmark's primary test of ``arm`` against ``scratch`` in ``setting``, from its files."""
    finetunes = committed_finetunes(size_name, [arm, endpoints.REFERENCE], setting)
    size = load_protocol().sizes[size_name]
    report = size.report or f"{results_folder(size.name).relative_to(ROOT)}/RESULTS.md"
    family = endpoints.primary_family()
    outcome = next((o for o in endpoints.run_family(finetunes, family)
                    if (o.test.method, o.test.setting) == (arm, setting)), None)
    if outcome is None or outcome.seeds < 2:
        return (f"The benchmark ({size_name} size) has no primary test of {arm} against scratch on {setting} with "
                f"paired runs to quote.")
    d = outcome.difference
    return (f"The benchmark ({report}, {outcome.seeds} paired seeds): {arm} minus scratch on {setting} = "
            f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] mean test Dice, Wilcoxon p = {outcome.p:.4f}, Holm p = "
            f"{outcome.holm_p:.4f} over its {len(family)} primary tests: {endpoints.DIRECTION[outcome.direction]}.")


def _segment(bench: Benchmark, run: Run, test_image: str, work: Path) -> Path:
    """Segment one test image with the run's model (``inference.yaml``); the written label map."""
    size, data = bench.size, bench.planner.data
    prediction_dir = work / "predictions"
    overrides = {"dataset_dir": bench.data_dir, "ckpt_dir": bench.folder(run) / "models", "output_dir": prediction_dir,
                 "input_path": (bench.data_dir / test_image).resolve(), "roi_size": size.finetune["roi_size"],
                 "pixdim": data.pixdim, **size.network}
    try:
        run_logged("segment", bundle_command(CONFIGS, ["inference.yaml"], overrides), work / "logs" / "segment.log",
                   prefix=PREFIX)
    except BundleRunError as error:
        raise SystemExit(str(error)) from None
    name = Path(test_image).name.split(".")[0]
    (written,) = prediction_dir.glob(f"{name}_seg.nii*")
    return written


def write_case_picture(data_dir: Path, item: dict, prediction: Path, names: dict[int, str], path: Path) -> str:
    """Ground truth beside prediction for one test case (radiological convention); the caption it carries."""
    import nibabel as nib

    from semcl_phantoms.preview import write_comparison

    image = nib.load(data_dir / item["image"])
    reference = np.asarray(nib.load(data_dir / item["label"]).dataobj, dtype=np.int16)
    predicted = np.asarray(nib.load(prediction).dataobj, dtype=np.int16)
    dice = [2 * np.sum((reference == k) & (predicted == k)) / (np.sum(reference == k) + np.sum(predicted == k))
            for k in names if k > 0 and np.any(reference == k)]
    caption = f"{Path(item['image']).name}: mean Dice {np.mean(dice):.3f} over {len(dice)} organs present"
    write_comparison(image.get_fdata(dtype=np.float32), reference, predicted, image.affine, names, path,
                     caption=caption)
    return caption


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "demo", help="where runs, logs and predictions go")
    parser.add_argument("--seed", type=int, default=0, help="the benchmark seed to run (it fixes the seed's draw)")
    protocol = load_protocol()
    trained_arms = [a for a in protocol.sizes[DEMO_SIZE].arms if protocol.arms[a].atlas is None]  # the v2 size's
    parser.add_argument("--arm", default=DEMO_ARM, choices=trained_arms,
                        help="how the encoder is made (default: semantic-aware pretraining with exact masks)")
    parser.add_argument("--setting", help=f"the labelled setting to fine-tune on (default {DEMO_SETTING})")
    parser.add_argument("--size", default=DEMO_SIZE, choices=[DEMO_SIZE, "quick"],
                        help=f"the benchmark size (default {DEMO_SIZE}: benchmark v2's, whose runs are committed)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    size = protocol.sizes[args.size]
    setting = args.setting or (DEMO_SETTING if DEMO_SETTING in size.settings else size.settings[0])
    if setting not in size.settings:
        parser.error(f"--setting {setting}: the {args.size} size has {', '.join(size.settings)}")
    work = args.workdir.absolute()
    # the demo's results stay in its work folder, never among the committed ones: an edited checkout may run it
    bench = Benchmark(size, work / "results", work, jobs=1, prefix=PREFIX, protocol=protocol, allow_dirty=True)
    data = bench.planner.data
    emit(f"{PREFIX} 1/5 data: {size.data['num']} {data.phantom_preset} phantoms of "
         f"{' x '.join(map(str, data.shape))} at {data.pixdim[0]:g} mm in {bench.data_dir}")
    data.prepare([args.seed])
    summary = summarise_dataset(bench.data_dir)
    summary.pop("splits")  # the dataset's own datalist.json: the benchmark's seed draws its own (printed below)
    emit(format_summary(summary))

    planned = bench.plan([args.arm], [setting], [args.seed], study=[])
    runs = [r for r in planned if r.config["stage"] == "pretrain"
            or (r.config["stage"] == "finetune" and not r.config["probe"])]
    (finetune,) = [r for r in runs if r.config["stage"] == "finetune"]
    datalist = data.datalist(args.seed)
    emit(f"{PREFIX} 2/5 pretrain and 3/5 finetune: {args.arm}, seed {args.seed}: {len(datalist[setting])} labelled "
         f"volume(s), pretraining pool of {len(datalist.get('pretrain', []))}, {len(datalist['validation'])} "
         f"validation and {len(datalist['test'])} test cases; {sum(bench.finished(r) for r in runs)} of {len(runs)} "
         f"runs finished already")
    failed = bench.run(runs)
    if failed:
        raise SystemExit(f"{PREFIX} failed: {', '.join(failed)}; the logs are in {work / 'logs'}")
    result = read_json(bench.result_file(finetune))

    test_item = datalist["test"][0]
    emit(f"{PREFIX} 4/5 segment: {test_item['image']} with the fine-tuned model")
    prediction = _segment(bench, finetune, test_item["image"], work)
    names = {i + 1: name for i, name in enumerate(result["test_summary"]["val_mean_dice"])}
    picture = work / "segmentation.png"
    caption = write_case_picture(bench.data_dir, test_item, prediction, names, picture)

    emit(f"{PREFIX} 5/5 report")
    seeds = committed_runs(args.size, args.arm, setting) if args.size == DEMO_SIZE else {}
    report = [
        "",
        f"{args.arm} on {setting}, seed {args.seed}: test Dice per organ ({len(result['test']['cases'])} test "
        f"phantoms), fine-tuned to a validation plateau ({result['epochs']} epochs) on {cpu_model()}.",
    ]
    if seeds:
        report.append(f"Beside it, the benchmark's committed runs of the same arm and setting: min, median and max "
                      f"over its {len(seeds)} seeds (each seed draws its own labelled volume and pool).")
    report += [distribution_table(result, seeds), ""]
    same = seeds.get(args.seed)
    if same is not None and same.get("config_hash") == finetune.hash:
        gap = mean_dice(result) - mean_dice(same)
        why = ("the same to 3 decimals" if abs(gap) < 5e-4 else
               f"{gap:+.3f}: another CPU model rounds differently, and early stopping amplifies it")
        report.append(f"The benchmark's own run of seed {args.seed} (the same configuration, made on "
                      f"{same['machine']['cpu']}) scored {mean_dice(same):.3f}; this machine {mean_dice(result):.3f} "
                      f"({why}).")
    elif not seeds:
        report.append(f"The benchmark has no committed runs of {args.arm} on {setting} at the {args.size} size.")
    report += [
        benchmark_verdict(args.size, args.arm, setting) if args.size == DEMO_SIZE else
        f"The {args.size} size has no committed benchmark runs: its numbers mean nothing.",
        "One run is one sample: the benchmark's seeds are the evidence (docs/RESULTS.md).",
        "",
        f"picture:     {picture}  ({caption}; ground truth beside prediction, patient's right on the image's left)",
        f"prediction:  {prediction}",
        f"logs:        {work / 'logs'}  (one per workflow run, every epoch)",
        f"TensorBoard: tensorboard --logdir {work}  (event files under {bench.folder(finetune) / 'eval'})",
        f"results:     {bench.result_file(finetune)} (as the benchmark writes them)",
        f"{PREFIX} done in {format_seconds(time.perf_counter() - start)}",
    ]
    text = "\n".join(report)
    emit(text)
    (work / "demo_report.txt").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
