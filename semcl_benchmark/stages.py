"""The benchmark's stages: how a planned run is done and what its result holds.

    data       the size's phantoms (deterministic; written once) or the user's dataset, and every seed's datalist
    pretrain   the arm's pretraining workflow (``pretrain.yaml`` [+ overlay], or ``train.yaml`` for supervised
               pretraining on the pretraining pool, to its own validation plateau); a contrastive run records whether
               its embeddings collapsed
    finetune   ``train.yaml`` on a labelled setting from the arm's encoder (or random init), to a validation plateau;
               then ``train.yaml + evaluate.yaml`` on the test split: per-case, per-organ Dice and the confusion matrix
    atlas      no training: the majority vote of the setting's labelled maps on the test split (in this process)
    embedding  encoder features of every organ, held-out subjects against the pretraining pool (in this process)

The runs of arms that name a ``stage`` (v3's coarse-to-fine pipeline: stage 1, its predictions, stage-2 pretraining,
stage 2 and its oracle-prior test) are done by :class:`semcl_benchmark.cascade_stages.CascadeStages`, these stages
with v3's.

A run that ends at its epoch cap while its validation Dice still improves (:func:`capped_while_improving`) is
continued from its last checkpoint with a doubled cap, as often as the size's ``budget_extensions`` allow; its result
records the caps (``budget``) and whether it still ended capped.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from semcl_tools.bundle_run import bundle_command, run_logged
from semcl_tools.hashing import file_sha256
from semcl_tools.repository import CONFIGS

from .plan import BundleCall, Planner, Run
from .results import read_case_dice, read_confusion, read_json
from .run_records import RunKey, RunRecord

__all__ = ["COLLAPSE", "Stages", "Trained", "capped_while_improving", "collapse"]

COLLAPSE = {"min_effective_rank": 1.5, "max_negative_cosine": 0.9}
"""A contrastive pretraining run whose last epoch's mean embedding effective rank is below ``min_effective_rank`` or
whose mean cosine between negatives is above ``max_negative_cosine`` collapsed (every embedding nearly the same)."""


def capped_while_improving(summary: dict, val_interval: int, patience: int) -> bool:
    """Whether a training run stopped at its ``max_epochs`` with its best validation within the last ``patience``
    validations (its early stopping had not yet fired: it was still improving). Never for ``patience`` 0."""
    epochs, cap, best = summary.get("epochs_completed"), summary.get("max_epochs"), summary.get("best_metric_epoch")
    if not patience or epochs is None or cap is None or best is None or epochs < cap:
        return False
    return best > cap - patience * val_interval


def collapse(history: Sequence[dict]) -> dict | None:
    """The last epoch's collapse monitors of a contrastive run and whether they say it collapsed (:data:`COLLAPSE`)."""
    last = next((h for h in reversed(history) if "mean_effective_rank" in h), None)
    if last is None:
        return None
    rank, negative = last["mean_effective_rank"], last.get("mean_negative_cosine")
    collapsed = rank < COLLAPSE["min_effective_rank"] or (
        negative is not None and negative > COLLAPSE["max_negative_cosine"])
    return {"effective_rank": rank, "negative_cosine": negative, "collapsed": collapsed, "rule": COLLAPSE}


@dataclasses.dataclass(frozen=True)
class Trained:
    """A training run's summed cost (wall, CPU, peak memory), its run summary and its budget record (``None``
    without budget extensions)."""

    cost: dict
    summary: dict
    budget: dict | None


class Stages:
    """Does the runs of one :class:`~semcl_benchmark.plan.Planner`: each stage's workflows, then its result dict.

    Args:
        planner: the plan whose runs these are (their bundle calls, folders and encoder files).
        threads_per_job: CPU threads of each run (``OMP_NUM_THREADS`` of its workflows).
        prefix: put before every line printed.
        finished: the record of a finished run by key, else ``None`` (scratch's budget for ``budget_fractions``).
    """

    def __init__(
        self,
        planner: Planner,
        threads_per_job: int = 1,
        prefix: str = "[bench]",
        finished: Callable[[RunKey], RunRecord | None] = lambda key: None,
    ) -> None:
        self.planner = planner
        self.finished = finished
        self.threads_per_job = threads_per_job
        self.prefix = prefix
        # embedding runs share this process: seeding and building a random encoder must not interleave between them
        self._seed_lock = threading.Lock()

    def __call__(self, run: Run) -> dict:
        """Do ``run``; what its stage measured (:class:`~semcl_benchmark.run_records.RunResult`'s values, with the
        epoch caps under ``budget``; the runner adds the key, configuration, draw and provenance)."""
        stages = {"pretrain": self.pretrain, "finetune": self.finetune, "atlas": self.atlas, "embedding": self.embedding}
        return stages[run.key.stage](run)

    def data(self, seeds: Sequence[int]) -> None:
        """Write the size's phantoms (skipped when they are there already) and the datalist of every seed."""
        self.planner.data.prepare(seeds)

    def pretrain(self, run: Run) -> dict:
        folder = self.planner.workspace.folder(run)
        shutil.rmtree(folder, ignore_errors=True)  # a run is redone whole, never resumed across protocol versions
        (call,) = self.planner.bundle_calls(run)
        arm = self.planner.arm(run.key.arm)
        if arm.workflow == "train.yaml":  # supervised: to its own validation plateau
            cost, summary, budget = self._train_to_plateau(run, call, folder)
        else:
            cost, budget = self.run_bundle(call), None
            summary = read_json(folder / "eval" / "run_summary.json")
        result = {"stage": "pretrain", "cost": cost, "summary": {k: v for k, v in summary.items() if k != "history"},
                  "history": summary.get("history", [])}
        if budget is not None:
            result["budget"] = budget
        if arm.workflow == "pretrain.yaml":
            result["collapse"] = collapse(result["history"])
        return result

    def _train_to_plateau(self, run: Run, call: BundleCall, folder: Path) -> tuple[dict, dict, dict | None]:
        """Run a ``train.yaml`` call; while it ends capped and still improving, continue it with a doubled cap (as
        often as the run's ``budget_extensions``). Its summed cost, its run summary and its budget record."""
        cost = self.run_bundle(call)
        summary = read_json(folder / "eval" / "run_summary.json")
        extensions = run.config.get("budget_extensions", 0)
        if not extensions:
            return cost, summary, None
        overrides = call.overrides
        caps = [overrides["max_epochs"]]
        while True:
            capped = capped_while_improving(summary, overrides["val_interval"], overrides.get("early_stop_patience", 0))
            if not capped or len(caps) > extensions:
                break
            caps.append(2 * caps[-1])
            overrides = {**overrides, "max_epochs": caps[-1], "resume": "true"}  # from its last epoch's checkpoint
            log = call.log.with_suffix(f".x{len(caps) - 1}.log")
            more = self.run_bundle(dataclasses.replace(call, overrides=overrides, log=log))
            cost = {"seconds": round(cost["seconds"] + more["seconds"], 1),
                    "cpu_seconds": round(cost["cpu_seconds"] + more["cpu_seconds"], 1),
                    "peak_memory_mb": max(cost["peak_memory_mb"], more["peak_memory_mb"])}
            summary = read_json(folder / "eval" / "run_summary.json")
        return cost, summary, {"max_epochs": caps, "capped_while_improving": capped}

    def finetune(self, run: Run) -> dict:
        train, trained, result = self.train_and_test(run)
        folder = self.planner.workspace.folder(run)
        result["confusion_matrix"] = read_confusion(folder / "test" / "confusion_matrix.csv")
        if self.planner.size.splits is not None:  # v2: the test cases' phases, the encoder loaded
            result["test"]["contrast_phases"] = self.planner.data.test_phases(result["test"]["cases"])
            result["encoder"] = self.encoder_record(train, trained.summary)
            result["budget"] = trained.budget
        if run.config.get("budget_fractions"):
            result["budget_fractions"] = self._budget_fractions(run, train, result)
        return result

    def train_and_test(self, run: Run) -> tuple[BundleCall, Trained, dict]:
        """A fine-tuning run whose calls are a training and an evaluation writing to ``<folder>/test``, done from an
        empty folder: its training call, what the training gave, and :meth:`finetune_result`."""
        folder = self.planner.workspace.folder(run)
        shutil.rmtree(folder, ignore_errors=True)
        train, test = self.planner.bundle_calls(run)
        trained = self.train(run, train)
        eval_cost = self.run_bundle(test)
        return train, trained, self.finetune_result(run, trained, self.read_test(folder / "test"), eval_cost)

    def train(self, run: Run, call: BundleCall) -> Trained:
        """A fine-tuning run's training to its validation plateau (:meth:`_train_to_plateau`)."""
        return Trained(*self._train_to_plateau(run, call, self.planner.workspace.folder(run)))

    @staticmethod
    def read_test(folder: Path) -> dict:
        """The per-case, per-organ test Dice an evaluation wrote in ``folder`` (``evaluate.yaml``'s files), with
        the organs' names (MetricsSaver names the columns class0, class1, ...) and its ``test_summary``."""
        per_class = read_json(folder / "evaluation_summary.json").get("per_class", {})
        test = read_case_dice(folder / "val_mean_dice_raw.csv")
        organs = list(per_class.get("val_mean_dice", {}))
        if len(organs) == len(test["classes"]):
            test["classes"] = organs
        return {**test, "summary": per_class}

    def finetune_result(self, run: Run, trained: Trained, test: dict, eval_cost: dict) -> dict:
        """What a fine-tuning run measured: cost, epochs, best validation, steps per epoch, validation curve and
        test Dice (``test``: :meth:`read_test`'s, or another scorer's ``cases``/``classes``/``dice``); a drawn
        size's (v2, v3) validation points and labelled cases."""
        config, data = run.config, self.planner.data
        volumes = len(data.datalist(config["seed"])[config["setting"]])
        steps_per_epoch = -(-volumes // config["finetune"]["batch_size"])  # optimizer steps per epoch
        validated = [h for h in trained.summary.get("history", []) if "val" in h]
        summary = test.pop("summary", None)
        result = {
            "stage": "finetune",
            "cost": {"train": trained.cost, "evaluate": eval_cost},
            "epochs": trained.summary.get("epochs_completed"),
            "best_metric": trained.summary.get("best_metric"),
            "best_metric_epoch": trained.summary.get("best_metric_epoch"),
            "steps_per_epoch": steps_per_epoch,
            "validation_curve": [[h["epoch"], h["val"].get("val_mean_dice")] for h in validated],
            "test": test,
        }
        if summary is not None:
            result["test_summary"] = summary
        if self.planner.size.drawn:  # the time-to-accuracy data and the labelled cases
            result["validation_points"] = [
                {"epoch": h["epoch"], "step": h.get("iteration"), "seconds": h.get("wall_time_s"),
                 "val_mean_dice": h["val"].get("val_mean_dice")} for h in validated]
            result["labelled_cases"] = data.labelled_cases(config["seed"], config["setting"])
        return result

    def _budget_fractions(self, run: Run, call: BundleCall, result: dict) -> dict:
        """Test Dice at fractions of scratch's budget (:mod:`semcl_benchmark.snapshots`); the snapshots are deleted."""
        from .snapshots import budget_epochs, evaluate_snapshots, snapshot_files

        config, folder = run.config, self.planner.workspace.folder(run) / "models"
        if run.key == self.planner.scratch_key(config["setting"], config["seed"]):
            scratch_epoch = result["best_metric_epoch"]
        else:
            scratch = self.finished(self.planner.scratch_key(config["setting"], config["seed"]))
            scratch_epoch = None if scratch is None or scratch.budget is None else scratch.budget.best_epoch
        snapshots = snapshot_files(folder / "snapshots")
        record: dict = {"scratch_best_epoch": scratch_epoch, "points": []}
        if scratch_epoch is not None:
            chosen = budget_epochs(config["budget_fractions"], scratch_epoch, list(snapshots))
            files = {epoch: snapshots[epoch] for epoch in set(chosen.values()) if epoch is not None}
            if None in chosen.values():  # stopped before that fraction's epoch: its final best model
                files["best"] = folder / "model.pt"
            scores = evaluate_snapshots(files, call.overrides, self.threads_per_job, self.planner.device)
            classes = result["test"]["classes"]
            for fraction, snapshot in chosen.items():
                epoch = result["best_metric_epoch"] if snapshot is None else snapshot
                record["points"].append({"fraction": fraction, "epoch": epoch, "step": epoch * result["steps_per_epoch"],
                                         "model": "best" if snapshot is None else "snapshot",
                                         "test": {**scores["best" if snapshot is None else snapshot], "classes": classes}})
        else:
            record["note"] = "scratch's run of this seed and setting had not finished: no budget to take fractions of"
        shutil.rmtree(folder / "snapshots", ignore_errors=True)
        return record

    @staticmethod
    def encoder_record(call: BundleCall, summary: dict) -> dict | None:
        """The encoder file a fine-tuning run loaded (path, SHA-256) and what the bundle's loader says it loaded."""
        encoder = call.overrides.get("pretrained_encoder")
        if not encoder:
            return None
        load = summary.get("encoder_load") or {}
        return {"file": str(encoder), "sha256": file_sha256(Path(encoder)), "loaded_fraction":
                load.get("loaded_fraction"), "tensors": {k: v for k, v in load.items() if k != "loaded_fraction"}}

    def class_names(self) -> list[str]:
        """The organs in class order: a user's dataset's, else the bundle's (its metadata)."""
        from semcl_components.bundle_runtime.bundle_files import read_settings
        from semcl_components.bundle_runtime.labels import class_names

        names = self.planner.data.class_names
        if names is None:
            metadata = read_settings(CONFIGS / "metadata.json")
            names = class_names(metadata["network_data_format"]["outputs"]["pred"]["channel_def"])
        return list(names)

    def atlas(self, run: Run) -> dict:
        """The atlas baseline of a setting and seed on the test split (:mod:`semcl_benchmark.atlas`)."""
        from .atlas import evaluate_atlas

        start = time.perf_counter()
        config, data = run.config, self.planner.data
        datalist = data.datalist(config["seed"])
        result = evaluate_atlas(config["atlas"], datalist[config["setting"]], datalist["test"], data.folder,
                                data.pixdim, self.class_names())
        result["test"]["contrast_phases"] = data.test_phases(result["test"]["cases"])
        seconds = round(time.perf_counter() - start, 1)
        return {"stage": "atlas", **result, "cost": {"train": {"seconds": 0.0, "peak_memory_mb": 0.0},
                                                     "evaluate": {"seconds": seconds, "peak_memory_mb": 0.0}},
                "epochs": 0, "best_metric": None, "best_metric_epoch": None, "steps_per_epoch": 0,
                "validation_curve": [], "labelled_cases": data.labelled_cases(config["seed"], config["setting"])}

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
        size, data = self.planner.size, self.planner.data
        data_dir = data.folder
        arm, seed = run.key.arm, run.key.seed
        network = {k: v for k, v in size.network.items() if k != "blocks_up"}
        with self._seed_lock:
            torch.manual_seed(seed)
            encoder = SegResNetEncoder(in_channels=1, **network)
        if self.planner.arm(arm).source is not None:
            load_pretrained_encoder(encoder, self.planner.encoder_file(arm, seed))
        model = ObjectEmbeddingModel(encoder, embedding_mode="pool").eval()
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.yaml"))
        parser.read_meta(str(CONFIGS / "metadata.json"))
        parser.update({"bundle_root": str(CONFIGS.parent), **data.bundle_settings(), "dataset_dir": str(data_dir),
                       **size.network})
        load = Compose(parser.get_parsed_content("train#deterministic_transforms"))
        classes = list(range(1, parser.get_parsed_content("num_classes")))
        datalist = data.datalist(seed)
        features = {}
        for split in ("pretrain", "test"):
            items = (load({k: str(data_dir / v) for k, v in entry.items()}) for entry in datalist[split])
            features[split] = organ_features(model, items, classes, min_voxels=size.pretrain["min_voxels"])
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

    def run_bundle(self, call: BundleCall) -> dict:
        """Run one bundle call with this job's threads (under ``torchrun`` for several processes); its wall time, CPU
        time and peak memory."""
        threads = str(self.threads_per_job)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
        command = bundle_command(CONFIGS, call.configs, call.overrides)
        if call.processes > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={call.processes}"]
            command = launcher + command[1:]  # torchrun -m monai.bundle run ...
        result = run_logged(call.name, command, call.log, env=env, prefix=self.prefix)
        return {"seconds": round(result.seconds, 1), "cpu_seconds": round(result.cpu_seconds, 1),
                "peak_memory_mb": round(result.peak_memory_mb, 1)}
