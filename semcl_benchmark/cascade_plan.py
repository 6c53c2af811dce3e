"""Benchmark v3's plan: the coarse-to-fine pipeline's runs per seed and setting, their dependencies and bundle calls.

One unit per seed ``s`` and labelled setting ``t`` (docs/PROTOCOL_v3.md, section 10), each run after those it needs
(:attr:`~semcl_benchmark.plan.Run.needs`)::

    finetune__scratch__t__seeds             stage 1: train.yaml at stage1_pixdim; test Dice at the fine grid
      predict__scratch__t__seeds            its label maps of the pool, validation and test cases, at the fine grid
        pretrain__cascade_semcl__t__seeds   pretrain.yaml on organ-centred crops of the pool, its masks the predictions
        pretrain__cascade_supervised__t__seeds   train.yaml + train_refine.yaml on the pool, the predictions as targets
        finetune__<cascade arm>__t__seeds   stage 2: train.yaml + train_refine.yaml on the labelled volumes, validated
                                            on stage 1's priors; tested by evaluate_cascade.yaml (stage 1 inside)
          oracle__<cascade arm>__t__seeds   the same network tested on oracle priors (the refinement's upper bound)

On a tuning seed, an arm that chooses its recipe (the size's ``recipe_arms``) has a stage-2 run per candidate recipe
(``finetune__<arm>__t__seeds__<recipe>``); on a main seed it fine-tunes with its chosen recipe (``Size.recipe_for``).
An arm whose pool masks are the ground truth (``pool_masks: ground_truth``, ``cascade_semcl_gt``) pretrains once per
seed (``pretrain__<arm>__seeds``). An arm's ``stage`` says which of these make its runs: ``stage1`` (``scratch`` of a v3
size) or ``cascade`` (stage 2, and its pretraining unless ``random_init`` or ``encoder_of``).

Grids: stage 1 trains and predicts at the size's ``stage1_pixdim`` (``--pixdim``); everything else works at the data's
own spacing, and every test Dice is counted there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol as Interface

from .datasets import BenchmarkData
from .protocol import Arm, Size
from .run_records import Recipe, RunKey
from .runs import BundleCall, Run, Workspace

__all__ = ["PREDICTED_SPLITS", "RANDOM_INIT_RECIPE", "STAGE1_ARM", "CascadePlan", "Planning", "recipe_overrides"]

STAGE1_ARM = "scratch"
"""The arm whose run is a seed's stage 1 (its predictions are the cascade's priors)."""

PREDICTED_SPLITS = ("pretrain", "validation", "test")
"""The datalist lists stage 1 predicts: the pool (pretraining masks), validation and test cases (stage 2's priors)."""

RANDOM_INIT_RECIPE = {"name": "R1", "encoder_lr_multiplier": 1.0}
"""The recipe of a stage-2 arm from random initialisation (docs/PROTOCOL_v3.md, section 5: nothing to keep)."""

REFINE_NETWORK_KEYS = ("refine_crop_size", "refine_margin", "refine_min_extent_mm", "channels_last")
"""Stage-2 settings its evaluation shares with its training: the crops the network was trained on, and the memory
order of both stages' networks (the same arithmetic)."""


class Planning(Interface):
    """What the pipeline's plan needs of the benchmark's planner (:class:`semcl_benchmark.plan.Planner`)."""

    size: Size
    data: BenchmarkData
    workspace: Workspace
    device: str | None

    def arm(self, name: str) -> Arm:
        """The arm as the size runs it."""

    def common(self, seed: int, encoder_only: bool = False) -> dict:
        """Every bundle call's settings of a seed (data, datalist, device, network)."""

    def call(self, name: str, configs: list[str], overrides: dict, log: Path) -> BundleCall:
        """A bundle call (under ``torchrun`` with several processes)."""

    def with_extensions(self, config: dict) -> dict:
        """A training run's configuration with the size's budget extensions."""


def recipe_overrides(recipe: Recipe | None) -> dict:
    """A recipe's ``train.yaml`` settings, those at the workflow's default (no warm-up, no freeze: 0) left out."""
    if recipe is None:
        return {}
    return {k: v for k, v in recipe.overrides.items() if v or k == "encoder_lr_multiplier"}


class CascadePlan:
    """The runs and bundle calls of the arms whose ``stage`` is ``stage1`` or ``cascade``.

    Args:
        planner: the benchmark's planner (its size, data, workspace and common bundle settings).
    """

    def __init__(self, planner: Planning) -> None:
        self.planner = planner

    # -- grids

    @property
    def stage1_pixdim(self) -> list[float]:
        """Stage 1's grid (mm), the size's ``stage1_pixdim`` on every axis."""
        return [float(self.planner.size.stage1_pixdim)] * 3

    @property
    def fine_pixdim(self) -> list[float]:
        """The data's own grid (mm), where stage 2 works and every arm is scored."""
        return list(self.planner.data.pixdim)

    # -- keys and files

    @staticmethod
    def stage1_key(setting: str, seed: int) -> RunKey:
        return RunKey("finetune", STAGE1_ARM, setting, seed)

    @staticmethod
    def predict_key(setting: str, seed: int) -> RunKey:
        return RunKey("predict", STAGE1_ARM, setting, seed)

    def pretrain_key(self, arm: str, setting: str, seed: int) -> RunKey | None:
        """The pretraining an arm's stage 2 starts from (``None``: random initialisation); per setting unless its
        pool masks are the ground truth."""
        source = self.planner.arm(arm).source
        if source is None:
            return None
        per_setting = self.planner.arm(source).pool_masks != "ground_truth"
        return RunKey("pretrain", source, setting if per_setting else None, seed)

    def folder(self, key: RunKey) -> Path:
        return self.planner.workspace.work / key.stage / key.name

    def model_file(self, key: RunKey) -> Path:
        """A training run's best network (stage 1, stage 2, supervised pretraining)."""
        return self.folder(key) / "models" / "model.pt"

    def encoder_file(self, key: RunKey) -> Path:
        """What a pretraining run gives stage 2: the encoder (contrastive) or the whole network (supervised)."""
        supervised = self.planner.arm(key.arm).workflow == "train.yaml"
        return self.model_file(key) if supervised else self.folder(key) / "models" / "encoder.pt"

    def predictions_datalist(self, setting: str, seed: int) -> Path:
        """The seed's datalist with stage 1's predictions (written by the predict run): the pool's ``label`` and
        every validation and test case's ``prior`` are its prediction files."""
        return self.folder(self.predict_key(setting, seed)) / "datalist.json"

    # -- planning

    def add(self, runs: dict[RunKey, Run], arm: str, setting: str, seed: int) -> None:
        """Add ``arm``'s run in ``setting`` and ``seed`` to ``runs``, with every run it needs (and, for an arm of the
        size's ``oracle_arms``, its evaluation on oracle priors)."""
        size = self.planner.size
        unsized = [name for name in ("finetune", "refine", "pretrain") if not getattr(size, name)]
        if unsized or size.stage1_pixdim is None:
            raise ValueError(f"size {size.name!r} has no {', '.join(unsized or ['stage1_pixdim'])} settings yet: v3's runs "
                             "are sized from the measurements of docs/PROTOCOL_v3.md, section 11 (--data-only runs).")
        stage = self.planner.arm(arm).stage
        if stage == "stage1":
            self._stage1(runs, arm, setting, seed)
        else:
            self._stage2(runs, arm, setting, seed)

    def _stage1(self, runs: dict[RunKey, Run], arm: str, setting: str, seed: int) -> RunKey:
        key = RunKey("finetune", arm, setting, seed)
        if key not in runs:
            config = {"stage": "finetune", "pipeline_stage": 1, "arm": arm, "setting": setting, "seed": seed,
                      "probe": False, "data": self.planner.data.config(), "network": self.planner.size.network,
                      "stage1_pixdim": self.stage1_pixdim,
                      "finetune": {**self.planner.size.finetune, **self.planner.arm(arm).finetune}}
            runs[key] = Run(key, self.planner.with_extensions(config))
        return key

    def _predict(self, runs: dict[RunKey, Run], setting: str, seed: int) -> RunKey:
        key = self.predict_key(setting, seed)
        if key not in runs:
            stage1 = self._stage1(runs, STAGE1_ARM, setting, seed)
            config = {"stage": "predict", "arm": STAGE1_ARM, "setting": setting, "seed": seed,
                      "splits": list(PREDICTED_SPLITS), "stage1": runs[stage1].config}
            runs[key] = Run(key, config, [stage1])
        return key

    def _pretrain(self, runs: dict[RunKey, Run], arm: str, setting: str, seed: int) -> RunKey | None:
        key = self.pretrain_key(arm, setting, seed)
        if key is None or key in runs:
            return key
        source, size = self.planner.arm(key.arm), self.planner.size
        config = {"stage": "pretrain", "arm": key.arm, "arm_settings": source.entry, "setting": key.setting,
                  "seed": seed, "data": self.planner.data.config(), "network": size.network, "pretrain": size.pretrain}
        needs = []
        if key.setting is not None:  # pool masks from this setting's stage 1
            predict = self._predict(runs, setting, seed)
            config["masks"] = runs[predict].config
            needs.append(predict)
        if source.workflow == "train.yaml":  # supervised refinement: stage 2's training settings
            config["refine"] = size.refine
        runs[key] = Run(key, config, needs)
        return key

    def _stage2(self, runs: dict[RunKey, Run], arm: str, setting: str, seed: int) -> None:
        """An arm's stage-2 run (on a tuning seed, a recipe arm's run per candidate recipe), and its oracle test."""
        size = self.planner.size
        predict = self._predict(runs, setting, seed)
        pretrain = self._pretrain(runs, arm, setting, seed)
        # stage 1's model too: the cascade's test runs stage 1 (a resumed unit makes it again if it is gone)
        needs = [self.stage1_key(setting, seed), predict, *([pretrain] if pretrain else [])]
        recipes = size.recipe_runs(arm, seed) if arm in size.recipe_arms else [(self.recipe(arm, seed), None)]
        for recipe, tuning in recipes:
            key = RunKey("finetune", arm, setting, seed, tuning_recipe=tuning)
            config = {"stage": "finetune", "pipeline_stage": 2, "arm": arm, "setting": setting, "seed": seed,
                      "probe": False, "data": self.planner.data.config(), "network": size.network,
                      "finetune": {**size.refine, **self.planner.arm(arm).finetune, **recipe_overrides(recipe)},
                      "recipe": None if recipe is None else recipe.to_json(),
                      "priors": runs[predict].config, "pretrain": None if pretrain is None else runs[pretrain].config}
            if tuning is not None:
                config["tuning_recipe"] = tuning
            runs[key] = Run(key, self.planner.with_extensions(config), needs)
            if arm in size.oracle_arms and tuning is None:
                oracle = RunKey("oracle", arm, setting, seed)
                runs[oracle] = Run(oracle, {"stage": "oracle", "arm": arm, "setting": setting, "seed": seed,
                                            "finetune": runs[key].config}, [key])

    def recipe(self, arm: str, seed: int) -> Recipe | None:
        """The recipe a main seed's stage 2 fine-tunes ``arm`` with: the chosen one of a recipe arm
        (``Size.recipe_for``; ``None`` until chosen, and the runner refuses the run), :data:`RANDOM_INIT_RECIPE` for
        an arm from random init, ``None`` for an arm with its own fixed encoder setting (the frozen arm); an arm that
        takes another's recipe (the size's ``recipe_of``) that arm's chosen one."""
        if arm in self.planner.size.recipe_arms or arm in self.planner.size.recipe_of:
            return self.planner.size.recipe_for(arm, seed)
        if self.planner.arm(arm).source is None:
            return Recipe(**RANDOM_INIT_RECIPE)
        return None

    # -- bundle calls

    def bundle_calls(self, run: Run) -> list[BundleCall]:
        """The bundle workflows of a v3 run, in order (none for a predict run: it runs in this process)."""
        key, config = run.key, run.config
        log = self.planner.workspace.log(key)
        if key.stage == "finetune" and config["pipeline_stage"] == 1:
            return [self.planner.call(key.name, ["train.yaml"], self._stage1_training(config), log)]
        if key.stage == "pretrain":
            return [self._pretraining(run, log)]
        if key.stage == "finetune":
            training = {**self._fine(config["setting"], config["seed"]), **self._outputs(key),
                        "train_key": config["setting"], "validation_prior": "file",
                        "pretrained_encoder": self._encoder(config), "encoder_lr_multiplier": 1.0,
                        "roi_size": self.planner.size.finetune["roi_size"], **config["finetune"]}
            return [self.planner.call(key.name, ["train.yaml", "train_refine.yaml"], training, log),
                    self._cascade_test(key, key, "stage1", config["finetune"])]
        if key.stage == "oracle":
            trained = RunKey("finetune", key.arm, key.setting, key.seed)
            return [self._cascade_test(key, trained, "oracle", config["finetune"]["finetune"])]
        return []

    def _outputs(self, key: RunKey) -> dict:
        return {"ckpt_dir": self.folder(key) / "models", "output_dir": self.folder(key) / "eval"}

    def _fine(self, setting: str, seed: int) -> dict:
        """Every stage-2 call's settings: the data at its own grid, the predictions' datalist."""
        return {**self.planner.common(seed), "data_list_file_path": self.predictions_datalist(setting, seed)}

    def _stage1_training(self, config: dict) -> dict:
        key = RunKey.of_config(config)
        return {**self.planner.common(config["seed"]), "pixdim": config["stage1_pixdim"], **self._outputs(key),
                "train_key": config["setting"], "pretrained_encoder": "", "encoder_lr_multiplier": 1.0,
                **config["finetune"]}

    def stage1_scoring(self, config: dict) -> dict:
        """The settings stage 1's in-process scoring reads its test cases with (its training's, at its grid)."""
        return {k: v for k, v in self._stage1_training(config).items() if k not in ("ckpt_dir", "output_dir")}

    def prediction_settings(self, config: dict) -> dict:
        """The settings the predict run reads cases with: stage 1's network, the data at its own grid."""
        return {**self.stage1_scoring(config), "pixdim": self.fine_pixdim}

    def _encoder(self, config: dict) -> str | Path:
        pretrain = config.get("pretrain")
        return "" if pretrain is None else self.encoder_file(RunKey.of_config(pretrain))

    def _pretraining(self, run: Run, log: Path) -> BundleCall:
        key, config, size = run.key, run.config, self.planner.size
        arm = self.planner.arm(key.arm)
        if key.setting is None:  # ground-truth pool masks: the seed's own datalist
            data = self.planner.common(key.seed, encoder_only=arm.workflow != "train.yaml")
        else:
            data = self._fine(key.setting, key.seed)
            if arm.workflow != "train.yaml":  # contrastive: the encoder alone
                data = {k: v for k, v in data.items() if k != "blocks_up"}
        pretrain = {k: v for k, v in size.pretrain.items() if k != "steps"}
        volumes = size.draws["pool"]  # the pool's size (the datalists are not written before the plan is checked)
        if arm.workflow == "train.yaml":  # supervised refinement on the pool, validated on stage 1's priors
            refine = config["refine"]
            overrides = {**data, **self._outputs(key), "train_key": "pretrain", "validation_prior": "file",
                         "roi_size": size.finetune["roi_size"], **refine,
                         "max_epochs": self.epochs_for_steps(volumes, refine["batch_size"]),
                         **arm.pretrain}
            return self.planner.call(key.name, ["train.yaml", "train_refine.yaml"], overrides, log)
        overrides = {**data, **self._outputs(key), "encoder_file": "encoder.pt", **pretrain,
                     "max_epochs": self.epochs_for_steps(volumes, pretrain["batch_size"]), **arm.pretrain}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return self.planner.call(key.name, ["pretrain.yaml"], overrides, log)

    def epochs_for_steps(self, volumes: int, batch_size: int) -> int:
        """Epochs that give every stage-2 pretraining the size's ``steps`` optimiser steps (S, docs/PROTOCOL_v3.md,
        section 5) on a pool of ``volumes`` in batches of ``batch_size`` volumes (rounded up to whole epochs)."""
        per_epoch = -(-volumes // batch_size)
        return max(1, -(-int(self.planner.size.pretrain["steps"]) // per_epoch))

    def _cascade_test(self, key: RunKey, trained: RunKey, prior: str, training: dict) -> BundleCall:
        """``evaluate_cascade.yaml`` of the stage-2 network of run ``trained`` (trained with the settings
        ``training``), with stage 1 inside (``stage1``) or oracle priors, on the test split at the fine grid: written
        to ``<key's folder>/test``."""
        size = self.planner.size
        stage1 = self.stage1_key(key.setting, key.seed)
        refine = {k: v for k, v in training.items() if k in REFINE_NETWORK_KEYS}
        overrides = {**self._fine(key.setting, key.seed), "ckpt_dir": self.folder(trained) / "models",
                     "output_dir": self.folder(key) / "test", "train_key": key.setting,
                     "stage1_ckpt": self.model_file(stage1), "stage1_pixdim": self.stage1_pixdim,
                     "roi_size": size.finetune["roi_size"], "test_prior": prior, **refine}
        configs = ["train.yaml", "train_refine.yaml", "evaluate.yaml", "evaluate_cascade.yaml"]
        return self.planner.call(f"{key} (test)", configs, overrides, self.planner.workspace.log(f"{key}__test"))
