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
    study      the shortcut study: variants of the method (stronger intensity changes between views, small and
               strongly zoomed views, four times longer pretraining, organ x contrast-phase labels, a gentler
               encoder learning rate or an encoder warm-up at fine-tuning) in one setting and a few seeds, beside
               scratch and ``semcl_exact``

Each seed pretrains and fine-tunes anew: the training run is the unit of every statistic. Every finished run writes
a small JSON (its configuration and a hash of it, seed, per-case per-organ Dice, validation curve, wall time, peak
memory) into the results folder (``docs/results/benchmark/<size>/``, committed); a run whose JSON exists with the same
configuration hash is skipped, so the benchmark can be stopped and completed later, even on another machine. The
report (``docs/RESULTS.md`` for the default size) is regenerated from these files alone, with whatever is finished.

Usage:
    python scripts/benchmark.py [--quick | --full] [--jobs 2] [--settings finetune_1 ...] [--arms scratch ...]
                                [--seeds 0 1 ...] [--max-runs N] [--report-only]

Sizes: ``--quick`` (minutes; 2 seeds, 2 arms, tiny volumes: a smoke test of the whole path, not a result), the default
(the 1- and 2-volume settings, 5 arms, 8 seeds, about 4 hours on 2 CPU cores; then the study's 6 variants on 1 volume,
3 seeds, about 1.5 hours more; runnable in parts) and
``--full`` (larger volumes and network, 1/2/4 volumes, 7 arms; meant for a GPU).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path

from semcl_components.atomic_io import write_json_atomic
from semcl_components.bundle_run import BundleRunError, bundle_command, run_logged
from semcl_components.folder_lock import FolderLock

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "bundles" / "abdomen_ct_semcl_segmentation" / "configs"

# ------------------------------------------------------------------------------------------------------- protocol

ARMS: dict[str, dict] = {
    "scratch": {},
    "simclr": {"overlay": "pretrain_simclr.yaml", "patch_size": None},
    "supervised": {"workflow": "train.yaml"},
    "semcl_exact": {"mask_mode": "exact"},
    "semcl_coarse": {"mask_mode": "dilate", "dilate_radius": 3},
    "semcl_channel": {"mask_mode": "exact", "embedding_mode": "channel"},
    "semcl_weighted": {"mask_mode": "exact", "intensity_weighting": True},
}
"""Pretraining arms: how each one's encoder is made (``scratch`` has none). A setting of ``None`` is not passed, so the
workflow's own value holds (SimCLR's overlay sets ``patch_size`` to the view size, see ``pretrain_simclr.yaml``)."""

STUDY_ARMS: dict[str, dict] = {
    # fine-tuning the method's own encoders (``encoder_of``) more gently
    "semcl_exact_slow_encoder": {"encoder_of": "semcl_exact", "finetune": {"encoder_lr_multiplier": 0.1}},
    "semcl_exact_warmup": {"encoder_of": "semcl_exact", "finetune": {"encoder_warmup_epochs": 80}},
    # views that break the shortcuts: intensity changes far beyond an organ's HU spread between subjects, and small,
    # strongly zoomed views whose position in the volume says less about the organ; four times longer pretraining
    "semcl_strong_intensity": {"mask_mode": "exact", "view_intensity_scale": 0.5, "view_intensity_shift": 0.4},
    "semcl_small_views": {"mask_mode": "exact", "view_size": [24, 24, 24], "view_scale_range": 0.4},
    "semcl_long": {"mask_mode": "exact", "max_epochs": 240},
    # the paper's labels: organ x contrast phase (24 classes), so phases of one organ repel each other
    "semcl_organ_phase": {"mask_mode": "exact", "contrast_phase_labels": True},
}
"""The shortcut study: variants of the method, each fine-tuned in one setting and a few seeds beside the arms they
vary. Pretraining settings as in :data:`ARMS`; ``finetune`` adds fine-tuning settings; ``encoder_of`` fine-tunes
another arm's encoders instead of pretraining new ones."""

ALL_ARMS = {**ARMS, **STUDY_ARMS}


def pretraining_arm(arm: str) -> str | None:
    """The arm whose pretraining gives ``arm`` its encoder (``None`` for ``scratch``)."""
    return None if arm == "scratch" else ALL_ARMS[arm].get("encoder_of", arm)


def pretrain_settings(arm: str) -> dict:
    """The workflow settings of an arm's pretraining (those of ``None`` value are left to the workflow)."""
    return {k: v for k, v in ALL_ARMS[arm].items() if k not in ("overlay", "encoder_of", "finetune")}


@dataclass(frozen=True)
class Size:
    """Everything that decides a run's result at one benchmark size, plus which runs the size plans."""

    name: str
    data: dict
    network: dict
    pretrain: dict
    finetune: dict
    arms: tuple[str, ...]
    settings: tuple[str, ...]
    seeds: tuple[int, ...]
    probe_setting: str | None = None
    probe_seeds: tuple[int, ...] = ()
    study_arms: tuple[str, ...] = ()
    study_setting: str | None = None
    study_seeds: tuple[int, ...] = ()
    notes: str = ""


_DEFAULT = Size(
    name="default",
    data={"num": 24, "size": 48, "seed": 0},
    network={"init_filters": 8, "blocks_down": [1, 1, 2, 2], "blocks_up": [1, 1, 1]},
    pretrain={"max_epochs": 60, "patch_size": [48, 48, 48], "view_size": [32, 32, 32], "num_samples": 2,
              "batch_size": 2, "min_voxels": 32, "learning_rate": 0.001},
    finetune={"max_epochs": 800, "val_interval": 40, "early_stop_patience": 4, "roi_size": [32, 32, 32],
              "num_samples": 2, "batch_size": 2, "learning_rate": 0.005},
    arms=("scratch", "simclr", "supervised", "semcl_exact", "semcl_coarse"),
    settings=("finetune_1", "finetune_2"),
    seeds=tuple(range(8)),
    probe_setting="finetune_2",
    probe_seeds=(0, 1, 2),
    study_arms=tuple(STUDY_ARMS),
    study_setting="finetune_1",
    study_seeds=(0, 1, 2),
    notes="the 1- and 2-volume settings on 2 CPU cores; sized from a scratch calibration run on finetune_1 (48^3 "
    "phantoms, 32^3 crops, lr 0.005: validation Dice plateaued near 0.52 after about 360 epochs, 0.26 s each)",
)

SIZES: dict[str, Size] = {
    "quick": replace(
        _DEFAULT,
        name="quick",
        data={"num": 8, "size": 32, "seed": 0},
        network={"init_filters": 8, "blocks_down": [1, 1, 1], "blocks_up": [1, 1]},
        pretrain={**_DEFAULT.pretrain, "max_epochs": 1, "patch_size": [32, 32, 32], "view_size": [24, 24, 24],
                  "num_samples": 1, "min_voxels": 8},
        finetune={**_DEFAULT.finetune, "max_epochs": 2, "val_interval": 1, "early_stop_patience": 1,
                  "roi_size": [32, 32, 32], "num_samples": 1},
        arms=("scratch", "semcl_exact"),
        settings=("finetune_1",),
        seeds=(0, 1),
        probe_setting="finetune_1",
        probe_seeds=(0,),
        study_arms=("semcl_exact_warmup",),
        study_seeds=(0,),
        notes="a smoke test of the whole path (minutes on 2 CPU cores); its numbers mean nothing",
    ),
    "default": _DEFAULT,
    "full": replace(
        _DEFAULT,
        name="full",
        data={"num": 24, "size": 96, "seed": 0},
        network={"init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]},
        pretrain={**_DEFAULT.pretrain, "max_epochs": 200, "patch_size": [64, 64, 64], "view_size": [48, 48, 48],
                  "min_voxels": 64},
        finetune={**_DEFAULT.finetune, "max_epochs": 1000, "val_interval": 20, "early_stop_patience": 5,
                  "roi_size": [64, 64, 64], "learning_rate": 0.001},
        arms=tuple(ARMS),
        settings=("finetune_1", "finetune_2", "finetune_4"),
        study_seeds=(0, 1, 2, 3, 4),
        notes="meant for a GPU",
    ),
}


def results_folder(size: Size) -> Path:
    """Where a size's result files are committed: ``docs/results/benchmark/<size>``."""
    return ROOT / "docs" / "results" / "benchmark" / size.name


def config_hash(config: dict) -> str:
    """A short hash of a run's configuration: a result file counts only for exactly this configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    """One planned run: its result file, configuration, what it needs first, and how to do it."""

    key: str
    config: dict
    action: Callable[[Run], dict]
    needs: list[str] = field(default_factory=list)

    @property
    def hash(self) -> str:
        return config_hash(self.config)


@dataclass(frozen=True)
class BundleCall:
    """One ``python -m monai.bundle run`` of a run: a name for messages, config files, overrides and log file."""

    name: str
    configs: list[str]
    overrides: dict
    log: Path


class Benchmark:
    """Plans, runs (in parallel, skipping finished runs) and reports one benchmark size."""

    def __init__(
        self, size: Size, results: Path, work: Path, jobs: int = 2, threads_per_job: int = 1, prefix: str = "[bench]"
    ) -> None:
        self.size = size
        self.prefix = prefix  # before every line this prints
        self.results = results
        self.work = work
        self.jobs = jobs
        self.threads_per_job = threads_per_job
        self.data_dir = work / "data"
        self._print_lock = threading.Lock()
        # embedding runs share this process: seeding and building a random encoder must not interleave between them
        self._seed_lock = threading.Lock()

    # -- planning

    def plan(self, arms: list[str], settings: list[str], seeds: list[int], study: list[str] | None = None) -> list[Run]:
        """The runs of ``arms`` x ``settings`` x ``seeds`` (with the probe), then of the study arms ``study`` (default:
        the size's) in the size's study setting and seeds, as far as ``settings`` and ``seeds`` hold them."""
        size = self.size
        runs: dict[str, Run] = {}
        for seed in seeds:
            for arm in arms:
                self._add_arm(runs, arm, seed, settings)
                probe = size.probe_setting in settings and seed in size.probe_seeds and arm != "scratch"
                if probe:
                    self._add_finetune(runs, arm, size.probe_setting, seed, probe=True)
        study_settings = [s for s in settings if s == size.study_setting]
        for seed in [s for s in size.study_seeds if s in seeds] if study_settings else []:
            for arm in size.study_arms if study is None else study:
                self._add_arm(runs, arm, seed, study_settings)
        return list(runs.values())

    def _add_arm(self, runs: dict[str, Run], arm: str, seed: int, settings: list[str]) -> None:
        """An arm's pretraining (unless it has none of its own), fine-tuning in ``settings`` and embedding runs."""
        size = self.size
        source = pretraining_arm(arm)
        pretrain = None if source is None else f"pretrain__{source}__seed{seed}"
        if pretrain is not None and pretrain not in runs:
            config = {"stage": "pretrain", "arm": source, "arm_settings": ALL_ARMS[source], "seed": seed,
                      "data": size.data, "network": size.network, "pretrain": size.pretrain}
            runs[pretrain] = Run(pretrain, config, self.pretrain)
        for setting in settings:
            self._add_finetune(runs, arm, setting, seed, probe=False)
        key = f"embedding__{source or arm}__seed{seed}"
        if key not in runs:
            config = {"stage": "embedding", "arm": source or arm, "seed": seed, "data": size.data,
                      "network": size.network, "pretrain": None if pretrain is None else runs[pretrain].config}
            runs[key] = Run(key, config, self.embedding, [] if pretrain is None else [pretrain])

    def _add_finetune(self, runs: dict[str, Run], arm: str, setting: str, seed: int, probe: bool) -> None:
        size = self.size
        key = f"finetune__{arm}__{setting}__seed{seed}" + ("__probe" if probe else "")
        source = pretraining_arm(arm)
        pretrain = None if source is None else f"pretrain__{source}__seed{seed}"
        config = {"stage": "finetune", "arm": arm, "setting": setting, "seed": seed, "probe": probe,
                  "data": size.data, "network": size.network,
                  "finetune": {**size.finetune, **ALL_ARMS.get(arm, {}).get("finetune", {})},
                  "pretrain": None if pretrain is None else runs[pretrain].config}
        runs[key] = Run(key, config, self.finetune, [] if pretrain is None else [pretrain])

    def result_file(self, run: Run) -> Path:
        return self.results / f"{run.key}.json"

    def finished(self, run: Run) -> bool:
        path = self.result_file(run)
        if not path.is_file():
            return False
        try:
            return json.loads(path.read_text()).get("config_hash") == run.hash
        except ValueError:
            return False

    # -- running

    def run(self, planned: list[Run], max_runs: int | None = None) -> list[str]:
        """Run every unfinished run (those a needed encoder depends on first); returns the keys that failed.

        Holds a lock on the results folder meanwhile: a second benchmark of the same size would redo (and delete)
        the runs this one is doing.
        """
        lock = FolderLock(self.results, "benchmark results folder")
        lock.acquire()
        try:
            return self._run_all(planned, max_runs)
        finally:
            lock.release()

    def _run_all(self, planned: list[Run], max_runs: int | None) -> list[str]:
        by_key = {run.key: run for run in planned}
        todo = [run for run in planned if not self.finished(run)]
        needed = {need for run in todo for need in run.needs}
        for key in needed:  # a finished pretraining whose encoder file is gone (another machine) is run again
            run = by_key.get(key)
            if run is not None and run not in todo and not self.encoder_file(run.config["arm"], run.config["seed"]).is_file():
                todo.insert(0, run)
        if max_runs is not None:
            todo = todo[:max_runs]
        self.check(todo)
        self._ensure_data()
        total, done, failed = len(todo), 0, []
        self._say(f"{len(planned)} runs planned, {len(planned) - len([r for r in planned if not self.finished(r)])} "
                  f"finished already, {total} to do now with {self.jobs} parallel jobs")
        pending = {run.key: run for run in todo}
        running: dict[Future, Run] = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            while pending or running:
                ready = [run for run in pending.values() if all(n not in pending and n not in
                         {r.key for r in running.values()} for n in run.needs)]
                for run in ready[: self.jobs - len(running)]:
                    blocked = [n for n in run.needs if n in failed]
                    del pending[run.key]
                    if blocked:
                        failed.append(run.key)
                        self._say(f"skipped {run.key}: {blocked[0]} failed")
                        continue
                    running[pool.submit(self._execute, run)] = run
                if not running:
                    continue
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    run = running.pop(future)
                    done += 1
                    if future.exception() is not None:
                        failed.append(run.key)
                        self._say(f"FAILED {run.key} ({done}/{total}): {str(future.exception()).splitlines()[0]}")
                    else:
                        self._say(f"finished {run.key} ({done}/{total})")
        return failed

    def _execute(self, run: Run) -> None:
        start = time.perf_counter()
        result = run.action(run)
        result.update(key=run.key, config=run.config, config_hash=run.hash, machine=machine(), code=code_version(),
                      finished=time.strftime("%Y-%m-%d %H:%M:%S"), total_seconds=round(time.perf_counter() - start, 1))
        write_json_atomic(result, self.result_file(run))

    def _say(self, message: str) -> None:
        with self._print_lock:
            print(f"{self.prefix} {message}", flush=True)

    def _env(self) -> dict[str, str]:
        threads = str(self.threads_per_job)
        return {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}

    def _bundle(self, call: BundleCall) -> dict:
        command = bundle_command(CONFIGS, call.configs, call.overrides)
        result = run_logged(call.name, command, call.log, env=self._env(), prefix=self.prefix)
        return {"seconds": round(result.seconds, 1), "peak_memory_mb": round(result.peak_memory_mb, 1)}

    def _ensure_data(self) -> None:
        from semcl_components.data.phantoms import write_phantom_dataset

        data = self.size.data
        write_phantom_dataset(self.data_dir, num=data["num"], seed=data["seed"], size=(data["size"],) * 3,
                              preview=True, verbose=False)

    def _common(self, seed: int, encoder_only: bool = False) -> dict:
        """Overrides every run shares; pretraining builds only the encoder (no ``blocks_up``)."""
        network = {k: v for k, v in self.size.network.items() if not (encoder_only and k == "blocks_up")}
        return {"dataset_dir": self.data_dir, "seed": seed, "resume": "false", **network}

    def encoder_file(self, arm: str, seed: int) -> Path:
        """The pretrained weights of an arm and seed (the whole segmentation network for ``supervised``)."""
        folder = self.work / "pretrain" / f"pretrain__{arm}__seed{seed}"
        return folder / "models" / ("model.pt" if arm == "supervised" else "encoder.pt")

    def folder(self, run: Run) -> Path:
        """Where a pretraining or fine-tuning run writes its checkpoints and outputs."""
        return self.work / run.config["stage"] / run.key

    def bundle_calls(self, run: Run) -> list[BundleCall]:
        """The bundle workflows a run calls, in order (none for an embedding run, which runs in this process)."""
        config, folder = run.config, self.folder(run)
        seed, log = config["seed"], self.work / "logs" / f"{run.key}.log"
        if config["stage"] == "pretrain" and config["arm"] == "supervised":
            finetune = self.size.finetune
            overrides = {**self._common(seed), "ckpt_dir": folder / "models", "output_dir": folder / "eval",
                         "train_key": "pretrain", "max_epochs": self.size.pretrain["max_epochs"],
                         "val_interval": self.size.pretrain["max_epochs"], "roi_size": finetune["roi_size"],
                         "num_samples": finetune["num_samples"], "batch_size": finetune["batch_size"],
                         "learning_rate": self.size.pretrain["learning_rate"]}
            return [BundleCall(run.key, ["train.yaml"], overrides, log)]
        if config["stage"] == "pretrain":
            arm = config["arm"]
            configs = ["pretrain.yaml"] + ([ALL_ARMS[arm]["overlay"]] if "overlay" in ALL_ARMS[arm] else [])
            overrides = {**self._common(seed, encoder_only=True), "ckpt_dir": folder / "models",
                         "output_dir": folder / "eval", "encoder_file": "encoder.pt", **self.size.pretrain,
                         **pretrain_settings(arm)}
            return [BundleCall(run.key, configs, {k: v for k, v in overrides.items() if v is not None}, log)]
        if config["stage"] == "finetune":
            source = pretraining_arm(config["arm"])
            encoder = "" if source is None else self.encoder_file(source, seed)
            overrides = {**self._common(seed), "ckpt_dir": folder / "models", "output_dir": folder / "eval",
                         "train_key": config["setting"], "pretrained_encoder": encoder, "encoder_lr_multiplier": 1.0,
                         **config["finetune"]}
            if config["probe"]:
                overrides["encoder_lr_multiplier"] = 0.0
            evaluation = {**self._common(seed), "ckpt_dir": folder / "models", "output_dir": folder / "test",
                          "roi_size": self.size.finetune["roi_size"]}
            return [BundleCall(run.key, ["train.yaml"], overrides, log),
                    BundleCall(f"{run.key} (test)", ["train.yaml", "evaluate.yaml"], evaluation,
                               self.work / "logs" / f"{run.key}__test.log")]
        return []

    def check(self, runs: list[Run]) -> None:
        """Stop before any work if a run would give a workflow an unknown setting or a value of the wrong kind.

        The workflows check their command line themselves (``semcl_components.settings.check_overrides``), but only
        when they start: in a long benchmark that may be hours after the first run.

        Raises:
            ValueError: naming every offending run and setting.
        """
        from monai.bundle import ConfigParser

        from semcl_components.settings import check_overrides

        configs: dict[tuple[str, ...], dict] = {}
        problems = []
        for run in runs:
            for call in self.bundle_calls(run):
                files = tuple(call.configs)
                if files not in configs:
                    configs[files] = ConfigParser.load_config_files([str(CONFIGS / f) for f in files])
                try:
                    check_overrides(bundle_command(CONFIGS, call.configs, call.overrides), configs[files])
                except ValueError as error:
                    problems.append(f"{call.name}: {error}")
        if problems:
            raise ValueError(f"{len(problems)} planned workflow calls would fail: " + " | ".join(problems))

    def pretrain(self, run: Run) -> dict:
        folder = self.folder(run)
        shutil.rmtree(folder, ignore_errors=True)  # a run is redone whole, never resumed across protocol versions
        (call,) = self.bundle_calls(run)
        cost = self._bundle(call)
        summary = read_json(folder / "eval" / "run_summary.json")
        return {"stage": "pretrain", "cost": cost, "summary": {k: v for k, v in summary.items() if k != "history"},
                "history": summary.get("history", [])}

    def embedding(self, run: Run) -> dict:
        """Encoder features of every organ: held-out (test) subjects against the pretraining pool.

        The object feature is what pretraining shapes and fine-tuning inherits: the layer-normalised deepest encoder
        features averaged inside the organ's exact mask (``ObjectEmbeddingModel.embed_objects`` in ``pool`` mode,
        before any projection head), so every arm, ``scratch`` (random weights) and ``supervised`` included, is
        measured alike.
        """
        import torch
        from monai.bundle import ConfigParser
        from monai.transforms import Compose

        from semcl_components.embedding_quality import embedding_quality, organ_features, projection_panel
        from semcl_components.networks import ObjectEmbeddingModel, SegResNetEncoder, load_pretrained_encoder

        start = time.perf_counter()
        torch.set_num_threads(self.threads_per_job)
        arm, seed = run.config["arm"], run.config["seed"]
        network = {k: v for k, v in self.size.network.items() if k != "blocks_up"}
        with self._seed_lock:
            torch.manual_seed(seed)
            encoder = SegResNetEncoder(in_channels=1, **network)
        if arm != "scratch":
            load_pretrained_encoder(encoder, self.encoder_file(arm, seed))
        model = ObjectEmbeddingModel(encoder, embedding_mode="pool").eval()
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.yaml"))
        parser.read_meta(str(CONFIGS / "metadata.json"))
        parser.update({"bundle_root": str(CONFIGS.parent), "dataset_dir": str(self.data_dir), **self.size.network})
        load = Compose(parser.get_parsed_content("train#deterministic_transforms"))
        classes = list(range(1, parser.get_parsed_content("num_classes")))
        datalist = read_json(self.data_dir / "datalist.json")
        features = {}
        for split in ("pretrain", "test"):
            items = (load({k: str(self.data_dir / v) for k, v in entry.items()}) for entry in datalist[split])
            features[split] = organ_features(model, items, classes, min_voxels=self.size.pretrain["min_voxels"])
        quality = embedding_quality(*features["pretrain"], *features["test"])
        xy, labels, held_out = projection_panel(*features["pretrain"], *features["test"])
        return {
            "stage": "embedding",
            "knn_accuracy": quality["knn_accuracy"],
            "silhouette_test": quality["silhouette_held_out"],
            "silhouette_pretrain": quality["silhouette_reference"],
            "objects": {split: int(ids.numel()) for split, (_, ids) in features.items()},
            "pca": {"labels": labels.tolist(), "held_out": held_out.tolist(),
                    "xy": [[round(float(v), 4) for v in row] for row in xy]},
            "cost": {"seconds": round(time.perf_counter() - start, 1)},
        }

    def finetune(self, run: Run) -> dict:
        config = run.config
        folder = self.folder(run)
        shutil.rmtree(folder, ignore_errors=True)
        train, test = self.bundle_calls(run)
        train_cost, eval_cost = self._bundle(train), self._bundle(test)
        summary = read_json(folder / "eval" / "run_summary.json")
        per_class = read_json(folder / "test" / "evaluation_summary.json").get("per_class", {})
        test = read_case_dice(folder / "test" / "val_mean_dice_raw.csv")
        organs = list(per_class.get("val_mean_dice", {}))
        if len(organs) == len(test["classes"]):
            test["classes"] = organs  # MetricsSaver names the columns class0, class1, ...
        volumes = len(read_json(self.data_dir / "datalist.json")[config["setting"]])
        steps_per_epoch = -(-volumes // self.size.finetune["batch_size"])  # optimizer steps per epoch
        return {
            "stage": "finetune",
            "cost": {"train": train_cost, "evaluate": eval_cost},
            "epochs": summary.get("epochs_completed"),
            "best_metric": summary.get("best_metric"),
            "best_metric_epoch": summary.get("best_metric_epoch"),
            "steps_per_epoch": steps_per_epoch,
            "validation_curve": [[h["epoch"], h["val"].get("val_mean_dice")] for h in summary.get("history", []) if "val" in h],
            "test": test,
            "test_summary": per_class,
            "confusion_matrix": read_confusion(folder / "test" / "confusion_matrix.csv"),
        }


# ------------------------------------------------------------------------------------------------------- reading


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def read_case_dice(path: Path) -> dict:
    """``{"cases": [...], "classes": [...], "dice": [[per class] per case]}`` from MONAI ``MetricsSaver``'s CSV."""
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    header, body = rows[0], rows[1:]
    classes = [name for name in header[1:] if name != "mean"]
    dice = [[_number(v) for v in row[1 : 1 + len(classes)]] for row in body]
    return {"cases": [Path(row[0]).name for row in body], "classes": classes, "dice": dice}


def read_confusion(path: Path) -> dict:
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    return {"classes": rows[0][1:], "counts": [[int(v) for v in row[1:]] for row in rows[1:]]}


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return None if number != number else number


def code_version() -> str:
    """The repository's commit, with ``+changes`` when tracked files differ from it ('unknown' outside git)."""
    import subprocess

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if dirty else "")


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


# ------------------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", dest="size", const="quick", help="minutes: a smoke test")
    group.add_argument("--full", action="store_const", dest="size", const="full", help="the GPU size")
    parser.set_defaults(size="default")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time, one CPU thread each (default 2)")
    parser.add_argument("--threads-per-job", type=int, default=1)
    parser.add_argument("--arms", nargs="+", choices=list(ALL_ARMS),
                        help="only these arms, study arms included (default: the size's arms and study arms)")
    parser.add_argument("--settings", nargs="+", help="only these labelled settings (default: the size's)")
    parser.add_argument("--seeds", nargs="+", type=int, help="only these seeds (default: the size's)")
    parser.add_argument("--max-runs", type=int, help="stop after this many runs (the rest another time)")
    parser.add_argument("--results", type=Path, help="result JSON folder (default docs/results/benchmark/<size>)")
    parser.add_argument("--workdir", type=Path, help="runs, logs and data (default runs/benchmark/<size>)")
    parser.add_argument("--report", type=Path, help="the report (default docs/RESULTS.md; <results>/RESULTS.md else)")
    parser.add_argument("--report-only", action="store_true", help="only regenerate the report from the results")
    args = parser.parse_args(argv)

    size = SIZES[args.size]
    results = (args.results or results_folder(size)).absolute()
    work = (args.workdir or ROOT / "runs" / "benchmark" / size.name).absolute()
    report = args.report or (ROOT / "docs" / "RESULTS.md" if size.name == "default" and args.results is None
                             else results / "RESULTS.md")
    benchmark = Benchmark(size, results, work, jobs=args.jobs, threads_per_job=args.threads_per_job)
    arms = args.arms or list(size.arms) + list(size.study_arms)
    planned = benchmark.plan([a for a in arms if a in ARMS], args.settings or list(size.settings),
                             args.seeds if args.seeds is not None else list(size.seeds),
                             study=[a for a in arms if a in STUDY_ARMS])
    failed: list[str] = []
    if not args.report_only:
        try:
            failed = benchmark.run(planned, args.max_runs)
        except ValueError as error:  # a planned workflow call with an invalid setting: nothing was run
            print(f"[bench] {error}", file=sys.stderr)
            return 2
    from benchmark_report import write_report  # noqa: E402  (the report lives beside this script)

    command = "python scripts/benchmark.py" + ("" if size.name == "default" else f" --{size.name}")
    write_report(size, planned, benchmark.result_file, report, command)
    print(f"[bench] report: {report}")
    if failed:
        print(f"[bench] {len(failed)} runs failed: {', '.join(failed)}; their logs are in {work / 'logs'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        sys.exit(main())
    except BundleRunError as error:
        sys.exit(str(error))
