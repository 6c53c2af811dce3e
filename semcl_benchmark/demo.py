"""The main job: one seed of the low-label benchmark on the embedded phantom data, both arms side by side.

It runs exactly the benchmark's protocol for one seed, so its numbers can be set beside the benchmark's committed
runs: those of the first protocol (``--size v1``, ``docs/RESULTS_v1.md``) until the v2 protocol's runs
(``docs/PROTOCOL.md``) are committed; the demo says which it compares with. Stages, each one a
``python -m monai.bundle run`` of the bundle as a user would type it (the exact commands are printed and logged):
    1. data       the size's phantom dataset (MSD layout + low-label datalist + preview PNG)
    2. pretrain   semantic-aware contrastive pretraining of the encoder on the ``pretrain`` split
    3. finetune   segmentation training on 2 labelled volumes, from the pretrained encoder and from random init, side
                  by side (one CPU thread each), each to a validation plateau (early stopping, the same rule for both);
                  then per-organ Dice, HD95 and surface Dice on the held-out ``test`` split
    4. infer      one test volume segmented with the pretrained arm's model
and finally a per-organ Dice table of both arms; how far this machine's run lies from the benchmark's committed run
of the same seed (made on another machine); and what the benchmark found over all its seeds (the size's report).

Rerunning is safe: finished runs are reused (each writes a result file when done); an interrupted run starts again.
Everything is written under --workdir (default runs/demo).

Usage:
    python scripts/demo.py [--workdir runs/demo] [--seed 0] [--arm semcl_exact] [--setting finetune_2] [--size v1]

About 10-15 minutes on 2 CPU cores: 48^3 phantoms, a SegResNet of width 8 (the bundle's default is 16), 60
pretraining epochs, fine-tuning until validation Dice stops rising (at most 800 epochs). ``--size quick`` runs the
benchmark's smoke-test size instead (a minute; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from semcl_components.data.phantoms import format_summary, summarise_dataset
from semcl_tools.bundle_run import BundleRunError, bundle_command, run_logged
from semcl_tools.repository import CONFIGS, ROOT

from .plan import Run
from .protocol import load_protocol
from .report import compare, mean_dice
from .results import ResultStore, by_stage, read_json, results_folder
from .runner import Benchmark

DEMO_ARM = "semcl_exact"  # the method's arm the demo sets beside scratch (choose another with --arm)
DEMO_SIZE = "v1"  # the size whose committed runs the demo compares with: v1 until the v2 (default) runs are committed
ARM_TITLES = {"scratch": "scratch (random init)"}


def _title(arm: str) -> str:
    return ARM_TITLES.get(arm, f"pretrained ({arm})")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def dice_table(results: dict[str, dict]) -> str:
    """Per-organ test Dice of each arm's run, side by side, with the difference of the first two."""
    names = list(results)
    organs = list(next(iter(results.values()))["test_summary"].get("val_mean_dice", {}))
    header = f"{'organ':<14}" + "".join(f"{_title(n):>26}" for n in names) + (f"{'difference':>12}" if len(names) == 2 else "")
    lines = [header, "-" * len(header)]
    for organ in organs + ["mean"]:
        values = [
            mean_dice(results[arm]) if organ == "mean" else results[arm]["test_summary"]["val_mean_dice"].get(organ)
            for arm in names
        ]
        diff = f"{values[0] - values[1]:>+12.3f}" if len(values) == 2 and None not in values else ""
        lines.append(f"{organ:<14}" + "".join(f"{_fmt(v):>26}" for v in values) + diff)
    return "\n".join(lines)


def committed_run(run: Run, size_name: str) -> dict | None:
    """The benchmark's committed result of the same run (same configuration hash), if there is one."""
    return ResultStore(results_folder(size_name)).read(run)


def benchmark_finding(size_name: str, arm: str, setting: str) -> str:
    """One line: what the benchmark's committed runs say about ``arm`` against scratch in ``setting``."""
    size = load_protocol().sizes[size_name]
    reference = Benchmark(size, results_folder(size.name), ROOT / "runs" / "benchmark" / size.name)
    report = size.report or f"{results_folder(size.name).relative_to(ROOT)}/RESULTS.md"
    planned = reference.plan([arm, "scratch"], [setting], list(size.seeds), study=[])
    finetunes, _, _ = by_stage(reference.store.load(planned))
    compared = compare(finetunes, arm, "scratch", setting)
    if compared is None or compared[2] < 2:
        return f"The benchmark has no paired runs of {arm} and scratch on {setting} at the {size_name} size yet."
    difference, p, seeds = compared
    verdict = "a significant gain" if difference.low > 0 and p < 0.01 else "no significant gain"
    return (f"The benchmark ({size_name} size, {seeds} paired seeds, {report}): {arm} minus scratch on {setting} = "
            f"{difference.mean:+.3f} mean Dice [95% CI {difference.low:+.3f}, {difference.high:+.3f}], "
            f"Wilcoxon p = {p:.3f}: {verdict}.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "demo", help="where runs, logs and predictions go")
    parser.add_argument("--seed", type=int, default=0, help="the benchmark seed to run (its data split is fixed)")
    protocol = load_protocol()
    parser.add_argument("--arm", default=DEMO_ARM, choices=[a for a in protocol.main_arms if protocol.arms[a].source],
                        help="the pretraining arm set beside scratch")
    parser.add_argument("--setting", help="the labelled setting to fine-tune on (default finetune_2 where the size has "
                                          "it, else its first)")
    parser.add_argument("--size", default=DEMO_SIZE, choices=[DEMO_SIZE, "quick"],
                        help=f"the benchmark size to run (default {DEMO_SIZE}: the size with committed runs)")
    parser.add_argument("--jobs", type=int, default=2, help="fine-tuning runs at a time (one CPU thread each)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    size = protocol.sizes[args.size]
    work = args.workdir.absolute()
    # the demo's results stay in its work folder, never among the committed ones: an edited checkout may run it
    bench = Benchmark(size, work / "results", work, jobs=args.jobs, prefix="[demo]", protocol=protocol,
                      allow_dirty=True)
    if args.setting is None:
        args.setting = "finetune_2" if "finetune_2" in size.settings else size.settings[0]
    data = bench.planner.data
    print(f"[demo] 1/4 data: {size.data['num']} phantoms of {' x '.join(map(str, data.shape))} in {bench.data_dir}",
          flush=True)
    data.prepare([args.seed])
    print(format_summary(summarise_dataset(bench.data_dir)), flush=True)

    planned = bench.plan([args.arm, "scratch"], [args.setting], [args.seed], study=[])
    runs = [r for r in planned if r.config["stage"] == "pretrain" or (r.config["stage"] == "finetune"
                                                                      and not r.config["probe"])]
    finetunes = {r.config["arm"]: r for r in runs if r.config["stage"] == "finetune"}
    print(f"[demo] 2/4 pretrain and 3/4 finetune: {args.arm} and scratch on {args.setting}, seed {args.seed}; "
          f"{sum(bench.finished(r) for r in runs)} of {len(runs)} runs finished already", flush=True)
    failed = bench.run(runs)
    if failed:
        raise SystemExit(f"[demo] failed: {', '.join(failed)}; the logs are in {work / 'logs'}")
    results = {arm: read_json(bench.result_file(finetunes[arm])) for arm in (args.arm, "scratch")}

    test_image = data.datalist(args.seed)["test"][0]["image"]
    prediction_dir = work / "predictions"
    print(f"[demo] 4/4 infer: {test_image} with the {args.arm} arm's model", flush=True)
    infer = {
        "dataset_dir": bench.data_dir,
        "ckpt_dir": bench.folder(finetunes[args.arm]) / "models",
        "output_dir": prediction_dir,
        "input_path": (bench.data_dir / test_image).resolve(),
        "roi_size": size.finetune["roi_size"],
        "pixdim": data.pixdim,
        **size.network,
    }
    try:
        run_logged("infer", bundle_command(CONFIGS, ["inference.yaml"], infer), work / "logs" / "infer.log", prefix="[demo]")
    except BundleRunError as error:
        raise SystemExit(str(error)) from None

    report = [
        "",
        f"Test-split Dice per organ ({len(results['scratch']['test']['cases'])} phantoms), fine-tuned on "
        f"{args.setting} to a validation plateau ({results[args.arm]['epochs']} and {results['scratch']['epochs']} "
        f"epochs); seed {args.seed}; one run per arm:",
        dice_table(results),
        "",
    ]
    committed = {arm: committed_run(finetunes[arm], args.size) for arm in results}
    report.append(f"Compared with the benchmark's committed runs of the {args.size} size"
                  + (" (the v2 protocol's runs are not committed yet)." if args.size == "v1" else "."))
    if all(committed.values()):
        made = committed["scratch"]["machine"]["cpu"]
        gaps = ", ".join(f"{arm} {mean_dice(results[arm]) - mean_dice(committed[arm]):+.3f}" for arm in results)
        report.append(f"Against the benchmark's committed run of this seed (made on {made}): mean Dice differs by {gaps}.")
    else:
        report.append("The benchmark has no committed run of this seed and protocol to compare with.")
    report += [
        benchmark_finding(args.size, args.arm, args.setting),
        "One seed is one sample; the benchmark's seeds are the evidence.",
        f"predictions: {prediction_dir}",
        f"logs:        {work / 'logs'}  (TensorBoard: {work}/finetune/*/eval)",
        f"results:     {work / 'results'} (one JSON per run, as the benchmark writes them)",
        f"[demo] done in {time.perf_counter() - start:.0f} s",
    ]
    text = "\n".join(report)
    print(text)
    (work / "demo_report.txt").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
