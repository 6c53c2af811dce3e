"""Benchmark v3's stages: how each run of the coarse-to-fine pipeline is done and what its result holds.

    stage 1    ``train.yaml`` at ``stage1_pixdim`` on the labelled volumes, to a validation plateau; its test cases
               predicted at that grid and scored at the fine grid, nearest neighbour (:mod:`semcl_benchmark.fine_grid`)
    predict    stage 1's label maps of the pool, validation and test cases, made the cascade's way and written at the
               fine grid, each file's SHA-256 recorded; the seed's datalist with them (pool ``label``, ``prior``)
    pretrain   contrastive (``pretrain.yaml``, object crops, ``channel`` embedding) or supervised refinement
               (``train.yaml + train_refine.yaml``) on the pool, its masks stage 1's predictions or the ground truth,
               for the size's optimiser steps
    stage 2    ``train.yaml + train_refine.yaml`` on the labelled volumes at the fine grid from the arm's encoder (or
               random init), validated on stage 1's priors; tested by ``evaluate_cascade.yaml`` with stage 1 inside
    oracle     the stage-2 network of a run tested on oracle priors (``--test_prior oracle``)

:class:`CascadeStages` is the benchmark's :class:`~semcl_benchmark.stages.Stages` with these. Each result gives the
run-record fields of schema 4 (``pipeline_stage``, ``grids``, ``priors``, ``recipe``; see
:mod:`semcl_benchmark.run_records`) and the encoder a stage-2 run loaded (SHA-256, loaded fraction).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from semcl_components.bundle_runtime.atomic_io import write_json_atomic
from semcl_tools.hashing import file_sha256

from .cascade_plan import RANDOM_INIT_RECIPE, CascadePlan
from .run_records import PriorSource, Recipe, RunKey, case_id
from .runs import Run
from .stages import Stages

__all__ = ["CascadeStages", "predictions_datalist"]


def predictions_datalist(datalist: dict, predictions: dict[str, dict[str, Path]]) -> dict:
    """A seed's datalist with stage 1's prediction files: each pool case's ``label`` (the pretraining's masks and the
    supervised refinement's targets) and every predicted case's ``prior`` (stage 2's validation and test priors).

    Args:
        datalist: the seed's datalist (lists of ``{"image", "label", ...}`` entries, paths relative to the data).
        predictions: ``{split: {case id: prediction file}}`` (absolute paths).
    """
    written = dict(datalist)
    for split, files in predictions.items():
        entries = []
        for entry in datalist[split]:
            prediction = str(files[case_id(entry["image"])])
            entries.append({**entry, "prior": prediction, **({"label": prediction} if split == "pretrain" else {})})
        written[split] = entries
    return written


class CascadeStages(Stages):
    """The benchmark's stages with v3's: the runs of arms that name a ``stage`` are done here, all others as
    :class:`~semcl_benchmark.stages.Stages` does them (same arguments)."""

    @property
    def plan(self) -> CascadePlan:
        return self.planner.cascade

    def __call__(self, run: Run) -> dict:
        """Do ``run``; what it measured (a v3 run's result dict holds the schema-4 fields)."""
        key = run.key
        if self.planner.arm(key.arm).stage is None:
            return super().__call__(run)
        if key.stage == "finetune":
            return self.stage1(run) if run.config["pipeline_stage"] == 1 else self.stage2(run)
        return {"predict": self.predict, "pretrain": self.cascade_pretrain, "oracle": self.oracle}[key.stage](run)

    def _grids(self, training: list[float]) -> dict:
        return {"training_pixdim": training, "scoring_pixdim": self.plan.fine_pixdim}

    def stage1(self, run: Run) -> dict:
        """Stage 1: trained at its coarse grid, its test Dice counted at the fine grid (the arm's endpoint)."""
        from .fine_grid import Stage1Session, stage1_fine_grid_scores

        folder = self.planner.workspace.folder(run)
        shutil.rmtree(folder, ignore_errors=True)
        (train,) = self.planner.bundle_calls(run)
        trained = self.train(run, train)
        start, cpu = time.perf_counter(), time.process_time()
        session = Stage1Session(self.plan.model_file(run.key), self.plan.stage1_scoring(run.config),
                                self.threads_per_job, self.planner.device)
        test = stage1_fine_grid_scores(session, self.class_names())
        cost = {"seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}
        result = self.finetune_result(run, trained, test, cost)
        result["test"]["contrast_phases"] = self.planner.data.test_phases(result["test"]["cases"])
        return {**result, "budget": trained.budget, "encoder": None, "pipeline_stage": 1,
                "grids": self._grids(run.config["stage1_pixdim"]), "recipe": Recipe(**RANDOM_INIT_RECIPE).to_json()}

    def predict(self, run: Run) -> dict:
        """Stage 1's label maps of the seed's pool, validation and test cases at the fine grid, with their SHA-256,
        and the seed's datalist with them (:func:`predictions_datalist`); its ``test`` Dice is that of the test
        predictions, the cascade's trilinear-logit way of scoring stage 1 (descriptive; stage 1's endpoint is its
        nearest-neighbour score)."""
        from .fine_grid import Stage1Session, label_file_scores, write_stage1_predictions

        folder = self.planner.workspace.folder(run)
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        config = run.config
        stage1 = RunKey.of_config(config["stage1"])
        session = Stage1Session(self.plan.model_file(stage1), self.plan.prediction_settings(config["stage1"]),
                                self.threads_per_job, self.planner.device)
        scale = min(1.0, self.plan.fine_pixdim[0] / self.plan.stage1_pixdim[0])
        files = write_stage1_predictions(session, config["splits"], scale, folder / "predictions")
        seed_datalist = self.planner.data.datalist(config["seed"])
        write_json_atomic(predictions_datalist(seed_datalist, files),
                          self.plan.predictions_datalist(config["setting"], config["seed"]))
        labels = {case_id(e["image"]): self.planner.data.folder / e["label"] for e in seed_datalist["test"]}
        cascade_way = label_file_scores(files["test"], labels, self.class_names())
        return {"stage": "predict", "pipeline_stage": 1, "grids": self._grids(self.plan.stage1_pixdim),
                "predictions": {split: {case: {"file": str(path), "sha256": file_sha256(path)}
                                        for case, path in cases.items()} for split, cases in files.items()},
                "stage1_run": stage1.name, "test": cascade_way, "cost": {"seconds": round(time.perf_counter() - start, 1)}}

    def _prior_files(self, setting: str, seed: int, split: str) -> dict:
        """The prior source of a split's cases: stage 1's run and the SHA-256 of each prediction file the predict
        run's datalist names (hashed now: a file changed since its predict run shows)."""
        datalist = json.loads(self.plan.predictions_datalist(setting, seed).read_text(encoding="utf-8"))
        files = [entry["prior"] for entry in datalist[split]]
        return PriorSource.of_files(self.plan.stage1_key(setting, seed), files).to_json()

    def cascade_pretrain(self, run: Run) -> dict:
        """A stage-2 pretraining (:meth:`Stages.pretrain`), with where its pool masks came from."""
        result = self.pretrain(run)
        key = run.key
        masks = (PriorSource("ground_truth").to_json() if key.setting is None
                 else self._prior_files(key.setting, key.seed, "pretrain"))
        priors = {"training": masks}
        if self.planner.arm(key.arm).workflow == "train.yaml":
            priors["validation"] = self._prior_files(key.setting, key.seed, "validation")
        return {**result, "pipeline_stage": 2, "grids": self._grids(self.plan.fine_pixdim), "priors": priors}

    def stage2(self, run: Run) -> dict:
        """Stage 2: trained on the labelled volumes (simulated training priors, stage 1's validation priors), tested
        through the whole cascade at the fine grid."""
        train, trained, result = self.train_and_test(run)
        config = run.config
        result["test"]["contrast_phases"] = self.planner.data.test_phases(result["test"]["cases"])
        priors = {"training": PriorSource("simulated").to_json(),
                  "validation": self._prior_files(config["setting"], config["seed"], "validation"),
                  "test": self._prior_files(config["setting"], config["seed"], "test")}
        return {**result, "budget": trained.budget, "encoder": self.encoder_record(train, trained.summary),
                "pipeline_stage": 2, "grids": self._grids(self.plan.fine_pixdim), "recipe": config["recipe"],
                "priors": priors}

    def oracle(self, run: Run) -> dict:
        """A stage-2 network tested on oracle priors (one fixed simulated coarse mask per test case from its label)."""
        folder = self.planner.workspace.folder(run)
        shutil.rmtree(folder, ignore_errors=True)
        (test,) = self.planner.bundle_calls(run)
        cost = self.run_bundle(test)
        scores = self.read_test(folder / "test")
        summary = scores.pop("summary")
        scores["contrast_phases"] = self.planner.data.test_phases(scores["cases"])
        return {"stage": "oracle", "test": scores, "test_summary": summary, "cost": {"evaluate": cost},
                "pipeline_stage": 2, "grids": self._grids(self.plan.fine_pixdim),
                "priors": {"test": PriorSource("oracle").to_json()},
                "trained_run": RunKey.of_config(run.config["finetune"]).name}
