"""The benchmark's stages: how a planned run is done and what its result holds.

    data       the phantom dataset of the size (deterministic; written once)
    pretrain   the arm's pretraining workflow (``pretrain.yaml`` [+ overlay], or ``train.yaml`` for supervised
               pretraining on the pretraining pool)
    finetune   ``train.yaml`` on a labelled setting from the arm's encoder (or random init), to a validation plateau;
               then ``train.yaml + evaluate.yaml`` on the test split: per-case, per-organ Dice and the confusion matrix
    embedding  encoder features of every organ, held-out subjects against the pretraining pool (in this process)
"""

from __future__ import annotations

import os
import shutil
import threading
import time

from semcl_tools.bundle_run import bundle_command, run_logged
from semcl_tools.repository import CONFIGS

from .plan import BundleCall, Planner, Run
from .results import read_case_dice, read_confusion, read_json

__all__ = ["Stages"]


class Stages:
    """Does the runs of one :class:`~semcl_benchmark.plan.Planner`: each stage's workflows, then its result dict.

    Args:
        planner: the plan whose runs these are (their bundle calls, folders and encoder files).
        threads_per_job: CPU threads of each run (``OMP_NUM_THREADS`` of its workflows).
        prefix: put before every line printed.
    """

    def __init__(self, planner: Planner, threads_per_job: int = 1, prefix: str = "[bench]") -> None:
        self.planner = planner
        self.threads_per_job = threads_per_job
        self.prefix = prefix
        # embedding runs share this process: seeding and building a random encoder must not interleave between them
        self._seed_lock = threading.Lock()

    def __call__(self, run: Run) -> dict:
        """Do ``run``; its result (without the bookkeeping the runner adds: key, configuration, machine, times)."""
        stages = {"pretrain": self.pretrain, "finetune": self.finetune, "embedding": self.embedding}
        return stages[run.config["stage"]](run)

    def data(self) -> None:
        """Write the size's phantom dataset (skipped when it is there already)."""
        from semcl_components.data.phantoms import write_phantom_dataset

        data = self.planner.size.data
        write_phantom_dataset(self.planner.workspace.data_dir, num=data["num"], seed=data["seed"],
                              size=(data["size"],) * 3, preview=True, verbose=False)

    def pretrain(self, run: Run) -> dict:
        folder = self.planner.workspace.folder(run)
        shutil.rmtree(folder, ignore_errors=True)  # a run is redone whole, never resumed across protocol versions
        (call,) = self.planner.bundle_calls(run)
        cost = self._bundle(call)
        summary = read_json(folder / "eval" / "run_summary.json")
        return {"stage": "pretrain", "cost": cost, "summary": {k: v for k, v in summary.items() if k != "history"},
                "history": summary.get("history", [])}

    def finetune(self, run: Run) -> dict:
        config, size = run.config, self.planner.size
        folder = self.planner.workspace.folder(run)
        shutil.rmtree(folder, ignore_errors=True)
        train, test = self.planner.bundle_calls(run)
        train_cost, eval_cost = self._bundle(train), self._bundle(test)
        summary = read_json(folder / "eval" / "run_summary.json")
        per_class = read_json(folder / "test" / "evaluation_summary.json").get("per_class", {})
        test = read_case_dice(folder / "test" / "val_mean_dice_raw.csv")
        organs = list(per_class.get("val_mean_dice", {}))
        if len(organs) == len(test["classes"]):
            test["classes"] = organs  # MetricsSaver names the columns class0, class1, ...
        volumes = len(read_json(self.planner.workspace.data_dir / "datalist.json")[config["setting"]])
        steps_per_epoch = -(-volumes // size.finetune["batch_size"])  # optimizer steps per epoch
        return {
            "stage": "finetune",
            "cost": {"train": train_cost, "evaluate": eval_cost},
            "epochs": summary.get("epochs_completed"),
            "best_metric": summary.get("best_metric"),
            "best_metric_epoch": summary.get("best_metric_epoch"),
            "steps_per_epoch": steps_per_epoch,
            "validation_curve": [[h["epoch"], h["val"].get("val_mean_dice")] for h in summary.get("history", [])
                                 if "val" in h],
            "test": test,
            "test_summary": per_class,
            "confusion_matrix": read_confusion(folder / "test" / "confusion_matrix.csv"),
        }

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
        size, data_dir = self.planner.size, self.planner.workspace.data_dir
        arm, seed = run.config["arm"], run.config["seed"]
        network = {k: v for k, v in size.network.items() if k != "blocks_up"}
        with self._seed_lock:
            torch.manual_seed(seed)
            encoder = SegResNetEncoder(in_channels=1, **network)
        if self.planner.protocol.arm(arm).source is not None:
            load_pretrained_encoder(encoder, self.planner.encoder_file(arm, seed))
        model = ObjectEmbeddingModel(encoder, embedding_mode="pool").eval()
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / "train.yaml"))
        parser.read_meta(str(CONFIGS / "metadata.json"))
        parser.update({"bundle_root": str(CONFIGS.parent), "dataset_dir": str(data_dir), **size.network})
        load = Compose(parser.get_parsed_content("train#deterministic_transforms"))
        classes = list(range(1, parser.get_parsed_content("num_classes")))
        datalist = read_json(data_dir / "datalist.json")
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

    def _bundle(self, call: BundleCall) -> dict:
        """Run one bundle call with this job's threads; its wall time and peak memory."""
        threads = str(self.threads_per_job)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
        command = bundle_command(CONFIGS, call.configs, call.overrides)
        result = run_logged(call.name, command, call.log, env=env, prefix=self.prefix)
        return {"seconds": round(result.seconds, 1), "peak_memory_mb": round(result.peak_memory_mb, 1)}
