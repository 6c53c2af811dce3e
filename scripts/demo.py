"""The main job: the whole pipeline on the embedded phantom data, at a small CPU budget.

Stages, each one a ``python -m monai.bundle run`` of the bundle, as a user would type it (the exact commands are
printed and logged):
    1. data       write the phantom dataset (MSD layout + low-label datalist + preview PNG)
    2. pretrain   semantic-aware contrastive pretraining of the encoder on the `pretrain` split
    3. finetune   segmentation training on the same small labelled subset, twice: from the pretrained encoder
                  and from scratch (same seed, budget and data)
    4. evaluate   per-organ Dice / HD95 / surface Dice of both arms on the held-out `test` split
    5. infer      segment one test volume with the pretrained arm's model
and finally a per-organ Dice table of both arms side by side, with the paths of predictions and logs.

Rerunning is safe: finished stages are reused (training resumes from its last checkpoint), so an interrupted demo
continues where it stopped. Everything is written under --workdir (default runs/demo).

Usage:
    python scripts/demo.py [--workdir runs/demo] [--num 24] [--size 64 64 64] [--finetune-key finetune_4] ...

The defaults fit a 2-core CPU in about 10 minutes: 64^3 phantoms, a SegResNet of width 8 (the bundle's default is
16), 20 pretraining and 120 finetuning epochs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from semcl_components.bundle_run import BundleRunError, bundle_command, run_logged
from semcl_components.data.phantoms import format_summary, write_phantom_dataset
from semcl_components.networks import EMBEDDING_MODES
from semcl_components.transforms import MASK_MODES

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "abdomen_ct_semcl_segmentation"
CONFIGS = BUNDLE / "configs"


def _bundle_command(configs: list[str], overrides: dict[str, object]) -> list[str]:
    return bundle_command(CONFIGS, configs, overrides)


def _run_stage(name: str, command: list[str], log_file: Path) -> float:
    """Run one bundle command, log it, echo its progress; stop the demo with the log's tail if it fails."""
    try:
        return run_logged(name, command, log_file, prefix="[demo]").seconds
    except BundleRunError as error:
        raise SystemExit(str(error)) from None


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _dice_table(arms: dict[str, dict]) -> str:
    """Per-organ test Dice of each arm, side by side, with the difference of the first two."""
    names = list(arms)
    organs = list(next(iter(arms.values())).get("per_class", {}).get("val_mean_dice", {}))
    header = f"{'organ':<14}" + "".join(f"{n:>22}" for n in names) + (f"{'difference':>12}" if len(names) == 2 else "")
    lines = [header, "-" * len(header)]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"

    rows = organs + ["mean"]
    for organ in rows:
        values = []
        for arm in names:
            summary = arms[arm]
            value = summary.get("metrics", {}).get("val_mean_dice") if organ == "mean" else summary.get("per_class", {}).get("val_mean_dice", {}).get(organ)
            values.append(value)
        diff = ""
        if len(values) == 2 and None not in values:
            diff = f"{values[0] - values[1]:>+12.3f}"
        lines.append(f"{organ:<14}" + "".join(f"{fmt(v):>22}" for v in values) + diff)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "demo", help="where runs, logs and predictions go")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data" / "demo_phantoms", help="phantom dataset folder")
    parser.add_argument("--num", type=int, default=24, help="number of phantom subjects")
    parser.add_argument("--size", type=int, nargs=3, default=(64, 64, 64), metavar=("X", "Y", "Z"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--finetune-key", default="finetune_4", help="labelled subset of datalist.json for finetuning")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=120)
    parser.add_argument("--val-interval", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=0.002, help="finetune learning rate")
    parser.add_argument("--roi", type=int, default=48, help="finetune/inference patch edge (voxels)")
    parser.add_argument("--pretrain-patch", type=int, default=64, help="pretraining crop edge; views are 3/4 of it")
    parser.add_argument("--init-filters", type=int, default=8, help="SegResNet width (the bundle default is 16)")
    parser.add_argument("--embedding-mode", default="pool", choices=EMBEDDING_MODES)
    parser.add_argument("--mask-mode", default="exact", choices=[m for m in MASK_MODES if m != "whole"])
    args = parser.parse_args(argv)

    start = time.perf_counter()
    work = args.workdir.absolute()
    print(f"[demo] 1/5 data: phantoms in {args.data_dir}", flush=True)
    summary = write_phantom_dataset(args.data_dir, num=args.num, seed=args.seed, size=tuple(args.size), preview=True, verbose=False)
    print(format_summary(summary), flush=True)

    common = {"dataset_dir": args.data_dir.absolute(), "seed": args.seed, "init_filters": args.init_filters}
    view = max(8, (args.pretrain_patch * 3 // 4) // 8 * 8)
    pretrain_dir = work / "pretrain"
    encoder = pretrain_dir / "models" / "pretrained_encoder.pt"
    pretrain = {
        **common,
        "ckpt_dir": pretrain_dir / "models",
        "output_dir": pretrain_dir / "eval",
        "max_epochs": args.pretrain_epochs,
        "patch_size": [args.pretrain_patch] * 3,
        "view_size": [view] * 3,
        "embedding_mode": args.embedding_mode,
        "mask_mode": args.mask_mode,
    }
    print("[demo] 2/5 pretrain: semantic-aware contrastive pretraining", flush=True)
    _run_stage("pretrain", _bundle_command(["pretrain.yaml"], pretrain), work / "logs" / "pretrain.log")

    arms = {"pretrained (SemCL)": ("semcl", str(encoder)), "scratch (random init)": ("scratch", "")}
    roi = [args.roi] * 3
    for index, (arm, (folder, encoder_path)) in enumerate(arms.items()):
        print(f"[demo] 3/5 finetune {index + 1}/2: {arm} on {args.finetune_key}", flush=True)
        train = {
            **common,
            "ckpt_dir": work / folder / "models",
            "output_dir": work / folder / "eval",
            "train_key": args.finetune_key,
            "pretrained_encoder": encoder_path,
            "max_epochs": args.finetune_epochs,
            "val_interval": args.val_interval,
            "learning_rate": args.learning_rate,
            "roi_size": roi,
        }
        _run_stage(f"finetune {folder}", _bundle_command(["train.yaml"], train), work / "logs" / f"finetune_{folder}.log")
    results = {}
    for arm, (folder, _) in arms.items():
        print(f"[demo] 4/5 evaluate: {arm} on the test split", flush=True)
        evaluate = {**common, "ckpt_dir": work / folder / "models", "output_dir": work / folder / "eval", "roi_size": roi}
        _run_stage(f"evaluate {folder}", _bundle_command(["train.yaml", "evaluate.yaml"], evaluate), work / "logs" / f"evaluate_{folder}.log")
        results[arm] = _read_json(work / folder / "eval" / "evaluation_summary.json")

    test_image = json.loads((args.data_dir / "datalist.json").read_text())["test"][0]["image"]
    prediction_dir = work / "predictions"
    print("[demo] 5/5 infer: one test volume with the pretrained arm's model", flush=True)
    infer = {
        "dataset_dir": args.data_dir.absolute(),
        "ckpt_dir": work / "semcl" / "models",
        "output_dir": prediction_dir,
        "input_path": (args.data_dir / test_image).resolve(),
        "roi_size": roi,
        "init_filters": args.init_filters,
    }
    _run_stage("infer", _bundle_command(["inference.yaml"], infer), work / "logs" / "infer.log")

    table = _dice_table(results)
    seconds = time.perf_counter() - start
    report = [
        "",
        f"Test-split Dice per organ ({len(json.loads((args.data_dir / 'datalist.json').read_text())['test'])} phantoms), "
        f"finetuned on {args.finetune_key} for {args.finetune_epochs} epochs; pretraining {args.pretrain_epochs} epochs "
        f"({args.embedding_mode} embedding, {args.mask_mode} masks); seed {args.seed}; one run per arm:",
        table,
        "",
        "One seed is one sample: the spread between seeds can be as large as the gap between arms.",
        f"predictions: {prediction_dir}",
        f"logs:        {work / 'logs'}  (TensorBoard: {work}/*/eval)",
        f"summaries:   {work}/*/eval/run_summary.json, evaluation_summary.json",
        f"[demo] done in {seconds:.0f} s",
    ]
    text = "\n".join(report)
    print(text)
    (work / "demo_report.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
