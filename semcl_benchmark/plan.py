"""The benchmark's plan: its runs, the bundle workflow calls of each run, and a check of every call before any work.

A run is one pretraining, fine-tuning, atlas or embedding measurement of one arm and seed; its configuration (and the
hash of it) holds everything that decides its result, so a result file counts only for exactly that configuration.
A run is identified by its :class:`~semcl_benchmark.run_records.RunKey` (stage, arm, labelled setting, seed, probe),
whose name names its result file, folder and log: ``pretrain__<arm>__seed<s>``,
``finetune__<arm>__<setting>__seed<s>[__probe]``, ``atlas__<arm>__<setting>__seed<s>``, ``embedding__<arm>__seed<s>``.
An arm that names its ``stage`` (v3's ``stage1`` and ``cascade``) is planned by :mod:`semcl_benchmark.cascade_plan`:
units per seed and setting whose runs need one another (stage 1, its predictions ``predict__scratch__<setting>__seed<s>``,
pretrainings per setting ``pretrain__<arm>__<setting>__seed<s>``, stage 2, and ``oracle__<arm>__<setting>__seed<s>``);
an arm naming a stage that is not built is refused before anything is planned.
"""

from __future__ import annotations

from pathlib import Path

from semcl_tools.bundle_run import bundle_command
from semcl_tools.repository import CONFIGS

from .cascade_plan import CascadePlan, recipe_overrides
from .datasets import BenchmarkData
from .protocol import Arm, Protocol, Size
from .run_records import RunKey
from .runs import BundleCall, Run, Workspace, config_hash

__all__ = ["BUILT_STAGES", "BundleCall", "Planner", "Run", "Workspace", "config_hash"]

#: the stages an arm may name as its ``stage`` that the benchmark can run (the pretraining, fine-tuning, atlas and
#: embedding stages serve arms without one): v3's ``stage1`` and ``cascade`` (:mod:`semcl_benchmark.cascade_plan`)
BUILT_STAGES: tuple[str, ...] = ("stage1", "cascade")


MULTI_PROCESS_OVERLAYS = {"pretrain.yaml": "multi_gpu_pretrain.yaml", "train.yaml": "multi_gpu_train.yaml",
                          "evaluate.yaml": "multi_gpu_evaluate.yaml"}
"""The overlay of each workflow for a run under ``torchrun`` (by the last config of its call, else its first)."""


class Planner:
    """The runs of one benchmark size and the bundle workflow calls that do them.

    Args:
        protocol: the arms (and sizes).
        size: the size whose data, network and training settings the runs take.
        workspace: where the runs write.
        data: the dataset (default: the size's phantoms in the workspace).
        device: ``cpu`` or ``cuda`` for every workflow (default: the workflows' own choice, a GPU when there is one).
        processes: processes per workflow call (``> 1``: ``torchrun`` with the ``multi_gpu_*`` overlays).
    """

    def __init__(
        self,
        protocol: Protocol,
        size: Size,
        workspace: Workspace,
        data: BenchmarkData | None = None,
        device: str | None = None,
        processes: int = 1,
    ) -> None:
        self.protocol = protocol
        self.size = size
        self.workspace = workspace
        self.data = data or BenchmarkData(size, workspace.work)
        self.device = device
        self.processes = processes
        self.cascade = CascadePlan(self)

    def arm(self, name: str) -> Arm:
        """The arm as this size runs it (its ``arm_settings`` applied)."""
        return self.protocol.arm(name, self.size)

    def plan(self, arms: list[str], settings: list[str], seeds: list[int], study: list[str] | None = None) -> list[Run]:
        """The runs of ``arms`` x ``settings`` x ``seeds`` (with the probe), then of the study arms ``study`` (default:
        the size's) in the size's study setting and seeds, as far as ``settings`` and ``seeds`` hold them.

        Raises:
            ValueError: an arm (or study arm) needs a stage that is not built yet, naming the arm and the stage; a
                v3 arm's size lacks its stages' settings (:meth:`CascadePlan.add`).
        """
        size = self.size
        for arm in [*arms, *(size.study_arms if study is None else study)]:
            stage = self.arm(arm).stage
            if stage is not None and stage not in BUILT_STAGES:
                raise ValueError(
                    f"arm {arm!r} of size {size.name!r} needs the {stage!r} stage, which is not built yet "
                    "(docs/PROTOCOL_v3.md, section 13); plan other arms, or prepare the data only (--data-only)."
                )
        runs: dict[RunKey, Run] = {}
        for seed in seeds:
            for arm in arms:
                if self.arm(arm).stage is not None:  # v3's pipeline: a unit per seed and setting
                    for setting in [s for s in settings if size.plans(self.arm(arm), s, seed)]:
                        self.cascade.add(runs, arm, setting, seed)
                    continue
                self._add_arm(runs, arm, seed, [s for s in settings if size.plans(self.arm(arm), s, seed)])
                probe = size.probe_setting in settings and seed in size.probe_seeds
                if probe and size.probes(self.arm(arm)) and size.plans(self.arm(arm), size.probe_setting):
                    self._add_finetune(runs, arm, size.probe_setting, seed, probe=True)
        study_settings = [s for s in settings if s == size.study_setting]
        for seed in [s for s in size.study_seeds if s in seeds] if study_settings else []:
            for arm in size.study_arms if study is None else study:
                self._add_arm(runs, arm, seed, study_settings)
        return list(runs.values())

    def _pretrain_key(self, arm: str, seed: int) -> RunKey | None:
        source = self.arm(arm).source
        return None if source is None else RunKey("pretrain", source, None, seed)

    def _add_arm(self, runs: dict[RunKey, Run], arm: str, seed: int, settings: list[str]) -> None:
        """An arm's pretraining (unless it has none of its own), fine-tuning in ``settings`` and embedding runs; an
        atlas arm's evaluation in ``settings``."""
        size, source = self.size, self.arm(arm).source
        if self.arm(arm).atlas is not None:
            for setting in settings:
                key = RunKey("atlas", arm, setting, seed)
                runs[key] = Run(key, {"stage": "atlas", "arm": arm, "atlas": self.arm(arm).atlas, "setting": setting,
                                      "seed": seed, "probe": False, "data": self.data.config(), "pretrain": None})
            return
        if not settings and self.arm(arm).settings is not None:
            return  # none of the arm's own settings is planned
        pretrain = self._pretrain_key(arm, seed)
        if pretrain is not None and pretrain not in runs:
            config = {"stage": "pretrain", "arm": source, "arm_settings": self.arm(source).entry, "seed": seed,
                      "data": self.data.config(), "network": size.network, "pretrain": size.pretrain}
            runs[pretrain] = Run(pretrain, self.with_extensions(config))
        for setting in settings:
            self._add_finetune(runs, arm, setting, seed, probe=False)
        key = RunKey("embedding", source or arm, None, seed)
        if key not in runs:
            config = {"stage": "embedding", "arm": source or arm, "seed": seed, "data": self.data.config(),
                      "network": size.network, "pretrain": None if pretrain is None else runs[pretrain].config}
            runs[key] = Run(key, config, [] if pretrain is None else [pretrain])

    def _add_finetune(self, runs: dict[RunKey, Run], arm: str, setting: str, seed: int, probe: bool) -> None:
        """An arm's fine-tuning run in ``setting`` (or its frozen-encoder probe); a recipe arm's (the size's
        ``recipe_arms``, v3's recipe check) one per candidate recipe on a tuning seed, else with the chosen recipe
        (:meth:`~semcl_benchmark.protocol.Size.recipe_runs`)."""
        size = self.size
        pretrain = self._pretrain_key(arm, seed)
        recipes = size.recipe_runs(arm, seed) if arm in size.recipe_arms and not probe else [(None, None)]
        for recipe, tuning in recipes:
            key = RunKey("finetune", arm, setting, seed, probe, tuning_recipe=tuning)
            config = {"stage": "finetune", "arm": arm, "setting": setting, "seed": seed, "probe": probe,
                      "data": self.data.config(), "network": size.network,
                      "finetune": {**size.finetune, **self.arm(arm).finetune, **recipe_overrides(recipe)},
                      "pretrain": None if pretrain is None else runs[pretrain].config}
            if arm in size.recipe_arms and not probe:  # recorded only for a recipe arm: v2's configurations unchanged
                config["recipe"] = None if recipe is None else recipe.to_json()
            if tuning is not None:
                config["tuning_recipe"] = tuning
            needs = [] if pretrain is None else [pretrain]
            if size.budget_fractions and not probe:  # test Dice at fractions of scratch's budget: scratch's run first
                config["budget_fractions"] = list(size.budget_fractions)
                scratch = self.scratch_key(setting, seed)
                needs += [scratch] if scratch in runs and scratch != key else []
            runs[key] = Run(key, self.with_extensions(config), needs)

    @staticmethod
    def scratch_key(setting: str, seed: int) -> RunKey:
        """The run whose best epoch is the budget of ``setting`` and ``seed`` (``budget_fractions``)."""
        return RunKey("finetune", "scratch", setting, seed)

    def with_extensions(self, config: dict) -> dict:
        """``config`` with the size's ``budget_extensions`` (recorded only where there are any: v1 had none)."""
        return {**config, "budget_extensions": self.size.budget_extensions} if self.size.budget_extensions else config

    # -- bundle calls

    def pretrained_file(self, key: RunKey) -> Path:
        """The weights a finished pretraining run ``key`` left for fine-tuning (v2's per seed, v3's per setting)."""
        if key.setting is not None or self.arm(key.arm).stage is not None:
            return self.cascade.encoder_file(key)
        return self.encoder_file(key.arm, key.seed)

    def encoder_file(self, arm: str, seed: int) -> Path:
        """The pretrained weights of an arm and seed (the whole segmentation network for supervised pretraining)."""
        supervised = self.arm(arm).workflow == "train.yaml"
        folder = self.workspace.work / "pretrain" / f"pretrain__{arm}__seed{seed}"
        return folder / "models" / ("model.pt" if supervised else "encoder.pt")

    def common(self, seed: int, encoder_only: bool = False) -> dict:
        """Overrides every run shares: the data (folder, grid, a user's classes), the seed's datalist, the device, the
        network; pretraining builds only the encoder (no ``blocks_up``)."""
        network = {k: v for k, v in self.size.network.items() if not (encoder_only and k == "blocks_up")}
        device = {} if self.device is None else {"device": f"$torch.device('{self.device}')"}
        return {**self.data.bundle_settings(), "data_list_file_path": self.data.datalist_file(seed), "seed": seed,
                "resume": "false", **device, **network}

    def call(self, name: str, configs: list[str], overrides: dict, log: Path) -> BundleCall:
        """A bundle call; under ``torchrun`` (``processes > 1``) with the workflow's multi-process overlay."""
        if self.processes > 1:
            configs = [*configs, MULTI_PROCESS_OVERLAYS[configs[-1] if configs[-1] in MULTI_PROCESS_OVERLAYS
                                                        else configs[0]]]
            overrides = {k: v for k, v in overrides.items() if k != "device"}  # the overlay picks each rank's device
        return BundleCall(name, configs, overrides, log, self.processes)

    def bundle_calls(self, run: Run) -> list[BundleCall]:
        """The bundle workflows a run calls, in order (none for an embedding run, which runs in this process)."""
        if self.arm(run.key.arm).stage is not None:
            return self.cascade.bundle_calls(run)
        config, folder, size = run.config, self.workspace.folder(run), self.size
        seed, log = config["seed"], self.workspace.log(run.key)
        outputs = {"ckpt_dir": folder / "models", "output_dir": folder / "eval"}
        if config["stage"] == "pretrain":
            arm = self.arm(config["arm"])
            if arm.workflow == "train.yaml":  # supervised segmentation on the pretraining pool, as fine-tuning crops
                finetune = size.finetune
                overrides = {**self.common(seed), **outputs, "train_key": "pretrain",
                             "max_epochs": size.pretrain["max_epochs"], "val_interval": size.pretrain["max_epochs"],
                             "roi_size": finetune["roi_size"], "num_samples": finetune["num_samples"],
                             "batch_size": finetune["batch_size"], "learning_rate": size.pretrain["learning_rate"],
                             **arm.pretrain}  # e.g. a budget and early stopping of its own (its validation plateau)
                return [self.call(run.key.name, ["train.yaml"], overrides, log)]
            configs = ["pretrain.yaml"] + ([arm.overlay] if arm.overlay else [])
            overrides = {**self.common(seed, encoder_only=True), **outputs, "encoder_file": "encoder.pt",
                         **size.pretrain, **arm.pretrain}
            return [self.call(run.key.name, configs, {k: v for k, v in overrides.items() if v is not None}, log)]
        if config["stage"] == "finetune":
            source = self.arm(config["arm"]).source
            encoder = "" if source is None else self.encoder_file(source, seed)
            overrides = {**self.common(seed), **outputs, "train_key": config["setting"], "pretrained_encoder": encoder,
                         "encoder_lr_multiplier": 1.0, **config["finetune"]}
            if config["probe"]:
                overrides["encoder_lr_multiplier"] = 0.0
            if config.get("budget_fractions"):  # weights at every validation, for test Dice part-way
                overrides["snapshot_interval"] = config["finetune"]["val_interval"]
            evaluation = {**self.common(seed), "ckpt_dir": folder / "models", "output_dir": folder / "test",
                          "roi_size": size.finetune["roi_size"]}
            return [self.call(run.key.name, ["train.yaml"], overrides, log),
                    self.call(f"{run.key} (test)", ["train.yaml", "evaluate.yaml"], evaluation,
                              self.workspace.log(f"{run.key}__test"))]
        return []  # embedding and atlas runs run in this process

    def check(self, runs: list[Run]) -> None:
        """Stop before any work if a run would give a workflow an unknown setting or a value of the wrong kind.

        The workflows check their command line themselves (``semcl_components.bundle_runtime.overrides.check_overrides``), but only
        when they start: in a long benchmark that may be hours after the first run.

        Raises:
            ValueError: naming every offending run and setting.
        """
        from monai.bundle import ConfigParser

        from semcl_components.bundle_runtime.overrides import check_overrides

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
