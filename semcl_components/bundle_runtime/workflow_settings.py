"""The switches of a workflow run, checked and read once, where MONAI hands the config's values over.

A workflow config instantiates one of these as its ``settings`` item from its top-level settings (``amp: '@amp'``,
...) and its components read the typed values from it (``amp: '$@settings.amp'``), so no config reads a boolean
itself. Instantiating it first checks the command line against the workflow's config files
(:func:`~.overrides.check_overrides`: an unknown ``--setting`` or a value of the wrong kind stops the run, naming it),
then reads every boolean as users write it (``--amp false``, ``--resume no``, ``--tensorboard 0``;
:func:`~.overrides.as_bool`), then checks the values that must fit together (pretraining's method settings).

Example (in a workflow config)::

    settings:
      _target_: semcl_components.bundle_runtime.workflow_settings.TrainSettings
      _requires_: '@semcl_components'
      amp: '@amp'
      tensorboard: '@tensorboard'
      resume: '@resume'
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .bundle_files import command_line_config_files
from .overrides import as_bool, check_overrides, check_pretraining_settings

__all__ = [
    "CascadeSettings",
    "CheckedSettings",
    "InferenceSettings",
    "PretrainSettings",
    "RefineSettings",
    "TEST_PRIORS",
    "TrainSettings",
    "VALIDATION_PRIORS",
    "WorkflowSettings",
]

#: Where stage 2's validation priors come from (``train_refine.yaml``'s ``validation_prior``): one fixed simulated
#: coarse mask per case (``CoarseMaskd``), or the label file each validation entry names under ``prior``.
VALIDATION_PRIORS = ("simulated", "file")
#: Where the cascade's evaluation takes its priors (``evaluate_cascade.yaml``'s ``test_prior``): stage 1 run inside
#: the cascade, the label file each entry names under ``prior``, or one fixed simulated coarse mask per case from
#: its ground-truth label (``oracle``: the refinement's upper bound).
TEST_PRIORS = ("stage1", "file", "oracle")


def _check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    """Stop on a setting that is not one of its valid values, naming it (``--name must be one of ...``)."""
    if value not in valid:
        raise ValueError(f"--{name} must be one of {', '.join(valid)}, got {value!r}.")


@dataclass
class CheckedSettings:
    """Settings read once: the command line checked, then every ``bool`` field read as users write it.

    Args:
        check_command_line: check the command line's overrides against the config first (False in Python callers
            that build the settings themselves, e.g. tests).

    Raises:
        ValueError: an override is unknown or of the wrong kind; a boolean is not true or false (naming the setting).
    """

    check_command_line: bool = True

    def __post_init__(self) -> None:
        if as_bool(self.check_command_line, "check_command_line"):
            check_overrides()
        for field in fields(self):
            if field.type == "bool":
                setattr(self, field.name, as_bool(getattr(self, field.name), field.name))


@dataclass
class WorkflowSettings(CheckedSettings):
    """The switches every training or evaluation workflow has.

    Args:
        amp: mixed precision.
        tensorboard: write TensorBoard logs.
    """

    amp: bool = False
    tensorboard: bool = True


@dataclass
class TrainSettings(WorkflowSettings):
    """The switches of supervised training (``train.yaml`` and its overlays).

    Args:
        resume: continue an interrupted run from its last checkpoint.
        channels_last: the network and its batches in channels-last memory order (``semcl_components.networks.
            memory_format``: the same arithmetic, faster convolutions on a CPU).
    """

    resume: bool = True
    channels_last: bool = False

    @property
    def resume_from_checkpoint(self) -> bool:
        """Whether the run resumes: ``resume`` and started from a command line (``--config_file``).

        MONAI Label's training (a Python caller, no ``--config_file``) always starts afresh: it retrains a model from
        the annotator's current labels, not from a checkpoint of other labels.
        """
        return self.resume and bool(command_line_config_files())


@dataclass
class PretrainSettings(WorkflowSettings):
    """The switches and method settings of contrastive pretraining (``pretrain.yaml`` and its overlays).

    Args:
        resume: continue an interrupted run from its last checkpoint.
        intensity_weighting: the follow-up paper's intensity weighting of the loss.
        contrast_phase_labels: organ x contrast phase classes (the paper's labels).
        gather_distributed: contrast against the samples of every torch.distributed rank.
        mask_mode, positives, embedding_mode, crop_mode, object_prior: the method's settings, checked together
            (:func:`~.overrides.check_pretraining_settings`).

    Raises:
        ValueError: besides :class:`WorkflowSettings`' errors, method settings that are unknown or do not fit.
    """

    resume: bool = True
    intensity_weighting: bool = False
    contrast_phase_labels: bool = False
    gather_distributed: bool = False
    mask_mode: str = "exact"
    positives: str = "class"
    embedding_mode: str = "pool"
    crop_mode: str = "patch"
    object_prior: str = "label"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pretraining_settings(
            self.mask_mode,
            self.positives,
            self.embedding_mode,
            self.contrast_phase_labels,
            self.crop_mode,
            self.object_prior,
        )


@dataclass
class InferenceSettings(CheckedSettings):
    """The switches of inference (``inference.yaml`` and its overlays).

    Args:
        load_pretrain: load ``models/model.pt`` (false: a randomly initialised network, for tests of the pipeline).
        channels_last: the network and its batches in channels-last memory order (as in training).
    """

    load_pretrain: bool = True
    channels_last: bool = False


@dataclass
class RefineSettings(TrainSettings):
    """The switches of stage 2's training (``train_refine.yaml``, an overlay on ``train.yaml``).

    Args:
        validation_prior: where the validation priors come from, one of :data:`VALIDATION_PRIORS`.

    Raises:
        ValueError: besides :class:`TrainSettings`' errors, an unknown ``validation_prior``.
    """

    validation_prior: str = "simulated"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("validation_prior", self.validation_prior, VALIDATION_PRIORS)


@dataclass
class CascadeSettings(RefineSettings):
    """The switches of the cascade's evaluation (``evaluate_cascade.yaml``, an overlay on ``train.yaml`` +
    ``train_refine.yaml`` + ``evaluate.yaml``).

    Args:
        refine: run stage 2 (false: the prior alone, evaluated the same way: stage 1's, a file's or the oracle's).
        test_prior: where the priors come from, one of :data:`TEST_PRIORS`.

    Raises:
        ValueError: besides :class:`RefineSettings`' errors, an unknown ``test_prior``.
    """

    refine: bool = True
    test_prior: str = "stage1"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_choice("test_prior", self.test_prior, TEST_PRIORS)
