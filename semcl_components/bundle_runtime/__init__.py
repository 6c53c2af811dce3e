"""What the bundle's workflows need besides the method: reading and checking their inputs, writing safely, running.

Modules, one concern each:
    bundle_files: the bundle folder of a run, the settings files in it (``configs/common.yaml``, the metadata),
        paths of a run.
    overrides: command-line settings checked against the config, booleans read as written.
    workflow_settings: a workflow's switches, checked (with the command line) and read once (its ``settings`` item).
    labels: the run's class names (from the metadata's ``channel_def`` or a dataset's ``dataset.json``), ids, count.
    datalists: MSD-style datalists read with every file checked; lists that must not overlap.
    phantom_dataset: the embedded phantoms written as the default dataset on first use.
    inference_files: the volumes of an inference input and the names of their segmentations.
    input_checks: transforms that stop a workflow on a bad input file, naming it.
    handlers: ignite handlers (atomic checkpoints, resuming, run summaries, rank filtering, ...).
    atomic_io: atomic file writing. folder_lock: one run per folder. termination: SIGTERM as an exception.
    weights_file: model weights read with an error that names the file.
    monailabel_training: MONAI Label's training requests checked.
"""

from . import (
    atomic_io,
    bundle_files,
    datalists,
    folder_lock,
    handlers,
    inference_files,
    input_checks,
    labels,
    monailabel_training,
    overrides,
    phantom_dataset,
    termination,
    weights_file,
    workflow_settings,
)

__all__ = [
    "atomic_io",
    "bundle_files",
    "datalists",
    "folder_lock",
    "handlers",
    "inference_files",
    "input_checks",
    "labels",
    "monailabel_training",
    "overrides",
    "phantom_dataset",
    "termination",
    "weights_file",
    "workflow_settings",
]
