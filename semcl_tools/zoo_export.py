"""Export the bundle as a model-zoo artifact: ``<out>/<bundle>_v<version>.zip``, self-contained.

The zip holds one top-level folder named after the bundle with its configs, docs and LICENSE, the code the configs use
(copies of ``semcl_components`` and of the phantom simulator ``semcl_phantoms``, which writes the embedded data, in
``scripts/``, found by the configs' ``semcl_components`` item in the bundle folder: the working directory or
``--bundle_root``), the weights of both stages of
the cascade (:data:`WEIGHTS`: stage 1's ``models/model.pt`` and ``models/pretrained_encoder.pt``, stage 2's
``models/refine/model.pt`` and its ``channel``-mode encoder ``models/refine/pretrained_encoder.pt``),
``large_files.yml`` (each weight file's path, URL and SHA-256) and ``configs/metadata.json`` with the used packages
pinned (in releases that install on the zoo CI's Python 3.10: :func:`pinned_version`) and ``eval_metrics`` holding the
test-split numbers of the shipped stage 1 weights. The weights are trained by the bundle's own workflows (stage 1:
pretrain, then train from the pretrained encoder; stage 2: ``channel`` pretraining on organ-centred crops, then
``train_refine.yaml`` from that encoder) on phantoms, unless ``--weights-from`` gives a folder that has the four files
(laid out as under ``models/``); either way stage 1 is evaluated on the test split by ``train.yaml + evaluate.yaml``.

Beside the zip, the weight files are written under their names in ``large_files.yml`` (to publish at ``--url``) and
``<zip>.sha256`` (``sha256sum -c`` format). Exporting twice with the same weights gives a byte-identical zip (sorted
entries, fixed timestamps and permissions).

Usage:
    python scripts/export_bundle.py --url https://example.org/releases/v0.1.0 [--out dist] [--weights-from DIR]
        [--dataset_dir DIR] [--pretrain-epochs 20] [--train-epochs 120]
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import sys
import zipfile
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, metadata, version
from pathlib import Path

from packaging.specifiers import SpecifierSet

from semcl_components.bundle_runtime.atomic_io import atomic_write

from .bundle_run import BundleRunError, bundle_command, run_logged
from .hashing import file_sha256
from .repository import BUNDLE, ROOT

PACKAGES = (ROOT / "semcl_components", ROOT / "semcl_phantoms")
"""The packages the bundle's configs reach (``semcl_components``, and through its runtime the phantom simulator that
writes the embedded data); each copied whole into the zip's ``scripts/`` (they hold nothing else)."""
WEIGHTS = ("models/model.pt", "models/pretrained_encoder.pt", "models/refine/model.pt",
           "models/refine/pretrained_encoder.pt")
"""The large files of the bundle, relative to its root: stage 1 and its encoder, stage 2 (the cascade's refinement)
and its encoder."""

PINNED_PACKAGES = ("nibabel", "itk", "pytorch-ignite", "einops", "tensorboard", "tqdm", "fire", "pyyaml", "scipy",
                   "pillow", "matplotlib")
"""What the workflows import besides monai, torch and numpy (pinned in metadata.json's required_packages_version)."""

ZOO_PYTHON = "3.10"
"""The oldest Python of the model zoo's CI: its premerge job installs metadata.json's pins there."""
ZOO_PYTHON_RELEASES = {"numpy": "2.2.6", "scipy": "1.15.3", "matplotlib": "3.10.9", "pillow": "12.3.0"}
"""For a package whose installed release needs a newer Python than ``ZOO_PYTHON``: the newest release that has
wheels for ``ZOO_PYTHON`` (checked against PyPI by ``tests/test_zoo_artifact.py``)."""

PRETRAIN_SETTINGS = ("patch_size", "view_size", "min_voxels", "num_samples")
"""The ``--set`` keys the pretraining run takes."""
TRAIN_SETTINGS = ("roi_size", "num_samples", "train_key")
"""The ``--set`` keys the training run takes (``roi_size`` also the evaluation on the test split)."""
REFINE_SETTINGS = ("refine_crop_size", "roi_size", "train_key")
"""The ``--set`` keys stage 2's training takes (its pretraining takes :data:`PRETRAIN_SETTINGS`)."""
SET_KEYS = tuple(dict.fromkeys(PRETRAIN_SETTINGS + TRAIN_SETTINGS + REFINE_SETTINGS))
"""Every key ``--set`` accepts; any other is refused (it would be dropped without a word)."""

SKIPPED = ("__pycache__", ".lock", ".pyc", ".DS_Store")
"""Names (or suffixes) never exported: caches and run locks."""

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""The timestamp of every zip entry, so that the same contents give the same zip."""


def _skipped(path: Path) -> bool:
    return any(part in SKIPPED or part.endswith(SKIPPED) for part in path.parts)


def bundle_files(bundle: Path = BUNDLE, packages: Sequence[Path] = PACKAGES) -> dict[str, Path]:
    """The files of the artifact (zip path below the bundle folder -> source), weights and generated files aside.

    Configs (``metadata.json`` is rewritten), docs and LICENSE of the bundle; the Python files of each package under
    ``scripts/<package>`` (every one of them reachable from a config: ``tests/test_zoo_contents.py``).
    """
    files = {}
    for folder in ("configs", "docs"):
        for path in sorted((bundle / folder).rglob("*")):
            if path.is_file() and not _skipped(path.relative_to(bundle)):
                files[path.relative_to(bundle).as_posix()] = path
    files["LICENSE"] = bundle / "LICENSE"
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            if not _skipped(path.relative_to(package)):
                files[f"scripts/{package.name}/{path.relative_to(package).as_posix()}"] = path
    return files


def installed_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError as error:
        raise SystemExit(f"export: {name} is not installed, so its version cannot be pinned in metadata.json.") from error


def pinned_version(name: str, installed: str, requires_python: str | None) -> str:
    """The version of ``name`` that metadata.json pins, so that the zoo's CI can install it on ``ZOO_PYTHON``.

    The installed release (what the export was tested with) when its ``Requires-Python`` admits ``ZOO_PYTHON``, else
    the newest release that does (``ZOO_PYTHON_RELEASES``).
    """
    if not requires_python or SpecifierSet(requires_python).contains(ZOO_PYTHON):
        return installed
    if name in ZOO_PYTHON_RELEASES:
        return ZOO_PYTHON_RELEASES[name]
    raise SystemExit(
        f"export: {name} {installed} requires Python {requires_python}, but the model zoo's CI installs metadata.json's "
        f"pins on Python {ZOO_PYTHON}. Add the newest {name} release with Python {ZOO_PYTHON} wheels to "
        "ZOO_PYTHON_RELEASES in semcl_tools/zoo_export.py, or install such a release before exporting."
    )


def zoo_pin(name: str) -> str:
    """:func:`pinned_version` of the installed distribution ``name`` (a local build tag such as ``+cpu`` dropped)."""
    installed = installed_version(name).split("+")[0]
    return pinned_version(name, installed, metadata(name).get("Requires-Python"))


def exported_metadata(metadata: Mapping, bundle_version: str, changelog: str, eval_metrics: Mapping) -> dict:
    """``metadata.json`` of the artifact: version and changelog entry, every used package pinned, eval metrics."""
    result = dict(metadata)
    result["version"] = bundle_version
    result["changelog"] = {bundle_version: changelog, **{k: v for k, v in metadata["changelog"].items() if k != bundle_version}}
    result["monai_version"] = zoo_pin("monai")
    result["pytorch_version"] = zoo_pin("torch")
    result["numpy_version"] = zoo_pin("numpy")
    # the code is inside the bundle (scripts/semcl_components, scripts/semcl_phantoms), not a package to install
    result["required_packages_version"] = {name: zoo_pin(name) for name in PINNED_PACKAGES}
    result["eval_metrics"] = dict(eval_metrics)
    return result


SHIPPED_BLOCK = ("<!-- shipped-weights: the export writes the numbers of the weights it ships here -->",
                 "<!-- /shipped-weights -->")
"""The markers of the README block that the export fills with the shipped weights' numbers."""


def readme_with_shipped_numbers(readme: str, eval_metrics: Mapping) -> str:
    """The bundle README with its shipped-weights block stating ``eval_metrics`` (a per-organ Dice table)."""
    start, end = SHIPPED_BLOCK
    if readme.count(start) != 1 or readme.count(end) != 1:
        raise SystemExit(f"export: the bundle README needs exactly one shipped-weights block ({start} ... {end}).")
    rows = "\n".join(f"| {organ} | {dice:.3f} |" for organ, dice in eval_metrics["mean_dice_per_organ"].items())
    block = (
        f"{start}\nMean Dice {eval_metrics['mean_dice']:.3f} on the {eval_metrics['test_cases']} phantom test volumes "
        f"(synthetic data: a demonstration, see Limitations):\n\n| organ | Dice |\n| --- | --- |\n{rows}\n{end}"
    )
    before, rest = readme.split(start)
    return before + block + rest.split(end, 1)[1]


def large_files_yaml(entries: Sequence[tuple[str, str, str]]) -> str:
    """``large_files.yml`` for ``(path, url, sha256)`` entries, as MONAI's ``download_large_files`` reads it."""
    lines = ["# Weights of this bundle: `python -m monai.bundle download_large_files --bundle_path <bundle>` fetches",
             "# each file from its url and checks its SHA-256 (a file already present with another hash is refused).",
             "large_files:"]
    for path, url, digest in entries:
        lines += [f'  - path: "{path}"', f'    url: "{url}"', f'    hash_val: "{digest}"', '    hash_type: "sha256"']
    return "\n".join(lines) + "\n"


def write_zip(destination: Path, top: str, contents: Mapping[str, Path | bytes]) -> None:
    """A zip of ``contents`` (path below ``top`` -> file or bytes), entries sorted, fixed times and permissions."""
    with atomic_write(destination) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(contents):
            info = zipfile.ZipInfo(f"{top}/{name}", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            source = contents[name]
            archive.writestr(info, source if isinstance(source, bytes) else source.read_bytes())


def train_weights(work: Path, dataset_dir: Path, pretrain_epochs: int, train_epochs: int, extra: Sequence[str]) -> Path:
    """Both stages' weights with the bundle's own workflows: stage 1 (pretrain, then train from the pretrained encoder)
    and stage 2 (``channel`` pretraining on organ-centred crops, then ``train_refine.yaml`` from it); the models
    folder (stage 2's files in ``models/refine``)."""
    models = work / "models"
    overrides = dict(zip(extra[::2], extra[1::2]))

    def chosen(keys: Sequence[str]) -> dict:
        return {k: v for k, v in overrides.items() if k in keys}

    runs = (
        ("pretrain", ["pretrain.yaml"], models, {"max_epochs": pretrain_epochs, **chosen(PRETRAIN_SETTINGS)}),
        ("train", ["train.yaml"], models, {"max_epochs": train_epochs, **chosen(TRAIN_SETTINGS)}),
        ("pretrain_refine", ["pretrain.yaml"], models / "refine", {
            "max_epochs": pretrain_epochs, "embedding_mode": "channel", "crop_mode": "object",
            "object_prior": "simulated", **chosen(PRETRAIN_SETTINGS)}),
        ("train_refine", ["train.yaml", "train_refine.yaml"], models / "refine", {
            "max_epochs": train_epochs, **chosen(REFINE_SETTINGS)}),
    )
    for name, configs, ckpt_dir, settings in runs:
        if name.startswith("train"):
            settings = {"val_interval": max(1, train_epochs // 6), "pretrained_encoder": ckpt_dir / "pretrained_encoder.pt",
                        **settings}
        common = {"dataset_dir": dataset_dir, "ckpt_dir": ckpt_dir, "resume": "false", "output_dir": work / "eval" / name}
        run_logged(name, bundle_command(BUNDLE / "configs", configs, {**common, **settings}),
                   work / "logs" / f"{name}.log", prefix="[export]")
    return models


def evaluate_weights(work: Path, models: Path, dataset_dir: Path, roi_size: str | None) -> dict:
    """Per-organ and mean test Dice of ``models/model.pt`` (``train.yaml + evaluate.yaml`` on the test split)."""
    output = work / "eval" / "test"
    overrides = {"dataset_dir": dataset_dir, "ckpt_dir": models, "output_dir": output}
    if roi_size:
        overrides["roi_size"] = roi_size
    run_logged("evaluate", bundle_command(BUNDLE / "configs", ["train.yaml", "evaluate.yaml"], overrides),
               work / "logs" / "evaluate.log", prefix="[export]")
    summary = json.loads((output / "evaluation_summary.json").read_text())
    per_organ = summary["per_class"]["val_mean_dice"]
    cases = len(json.loads((Path(dataset_dir) / "datalist.json").read_text())["test"])
    return {
        "mean_dice": round(float(summary["metrics"]["val_mean_dice"]), 4),
        "mean_dice_per_organ": {organ: round(float(v), 4) for organ, v in per_organ.items()},
        "test_cases": cases,
        "data": "synthetic phantoms (semcl_phantoms.phantoms); a demonstration, not a clinical model",
    }


def _in_models(path: str) -> str:
    """A weight file's path inside the models folder: ``models/refine/model.pt`` -> ``refine/model.pt``."""
    return Path(path).relative_to("models").as_posix()


def export(args: argparse.Namespace) -> Path:
    work = args.workdir.absolute()
    metadata = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    bundle_version = args.version or metadata["version"]
    if args.weights_from:
        models = args.weights_from.absolute()
        missing = [_in_models(w) for w in WEIGHTS if not (models / _in_models(w)).is_file()]
        if missing:
            raise SystemExit(f"export: --weights-from {models} lacks {', '.join(missing)}.")
    else:
        models = train_weights(work, args.dataset_dir, args.pretrain_epochs, args.train_epochs, args.set or [])
    overrides = dict(zip((args.set or [])[::2], (args.set or [])[1::2]))
    eval_metrics = evaluate_weights(work, models, args.dataset_dir, overrides.get("roi_size"))
    contents: dict[str, Path | bytes] = dict(bundle_files())
    entries = []
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    for path in WEIGHTS:
        source, published = models / _in_models(path), out / _in_models(path)
        contents[path] = source
        published.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, published)  # to publish at --url, laid out as under models/
        entries.append((path, f"{args.url.rstrip('/')}/{_in_models(path)}", file_sha256(source)))
    contents["large_files.yml"] = large_files_yaml(entries).encode()
    readme = (BUNDLE / "docs" / "README.md").read_text()
    contents["docs/README.md"] = readme_with_shipped_numbers(readme, eval_metrics).encode()
    meta = exported_metadata(metadata, bundle_version, args.changelog, eval_metrics)
    contents["configs/metadata.json"] = (json.dumps(meta, indent=4) + "\n").encode()
    name = BUNDLE.name
    destination = out / f"{name}_v{bundle_version}.zip"
    write_zip(destination, name, contents)
    (out / f"{destination.name}.sha256").write_text(f"{file_sha256(destination)}  {destination.name}\n")
    print(f"[export] {destination} ({destination.stat().st_size / 1e6:.1f} MB), test mean Dice "
          f"{eval_metrics['mean_dice']:.3f} on {eval_metrics['test_cases']} phantom volumes", flush=True)
    return destination


def unknown_set_keys(pairs: Sequence[str]) -> str | None:
    """Why ``--set KEY VALUE ...`` is refused: the keys the export does not pass on, each with the closest known key
    if one is close (``did you mean 'roi_size'?``), then every known key (:data:`SET_KEYS`); None if all are known."""
    problems = []
    for key in dict.fromkeys(pairs[::2]):
        if key not in SET_KEYS:
            close = difflib.get_close_matches(key, SET_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"--set {key!r} is not a setting the export passes on{hint}")
    return f"{'; '.join(problems)}; the known keys are {', '.join(SET_KEYS)}." if problems else None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="where the weight files will be published (large_files.yml)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "export", help="training and evaluation runs")
    parser.add_argument("--weights-from", type=Path, help="a folder with model.pt, pretrained_encoder.pt and "
                        "refine/model.pt, refine/pretrained_encoder.pt (both stages) to ship")
    parser.add_argument("--dataset_dir", type=Path, default=None, help="labelled data (default: phantoms in workdir)")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--train-epochs", type=int, default=120)
    parser.add_argument("--version", help="the bundle version (default: metadata.json's)")
    parser.add_argument("--changelog", default="model-zoo artifact: components inside the bundle, phantom-trained weights")
    parser.add_argument("--set", nargs="+", metavar="KEY VALUE",
                        help=f"training settings ({', '.join(SET_KEYS)}), e.g. --set roi_size [32,32,32]")
    args = parser.parse_args(argv)
    if args.set and len(args.set) % 2:
        parser.error("--set takes KEY VALUE pairs")
    problem = unknown_set_keys(args.set or [])
    if problem:
        parser.error(problem)
    if args.dataset_dir is None:
        from semcl_phantoms.phantoms import write_phantom_set

        args.dataset_dir = args.workdir.absolute() / "phantoms"
        if not (args.dataset_dir / "datalist.json").is_file():
            write_phantom_set(args.dataset_dir, "export", preview=False, verbose=False)
    args.dataset_dir = args.dataset_dir.absolute()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        export(args)
    except BundleRunError as error:
        print(f"[export] failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
