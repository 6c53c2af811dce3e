"""``WeightsLoader``: MONAI's ``CheckpointLoader`` that names the file when its weights do not fit the network."""

from __future__ import annotations

import re
from typing import Any

from ignite.engine import Engine
from monai.handlers import CheckpointLoader

from ..weights_file import read_weights_file

__all__ = ["WeightsLoader", "first_line", "size_mismatches"]

_SIZE_MISMATCH = re.compile(
    r"size mismatch for (?P<key>[\w.]+): copying a param with shape torch\.Size\((?P<file>\[[\d, ]*\])\) from "
    r"checkpoint, the shape in current model is torch\.Size\((?P<model>\[[\d, ]*\])\)"
)
_SHOWN = 3


def size_mismatches(error: BaseException) -> list[tuple[str, list[int], list[int]]]:
    """``(tensor, shape in the file, shape in the network)`` of every size mismatch PyTorch's error lists."""

    def shape(text: str) -> list[int]:
        return [int(v) for v in text.strip("[]").split(",") if v.strip()]

    return [(m["key"], shape(m["file"]), shape(m["model"])) for m in _SIZE_MISMATCH.finditer(str(error))]


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (PyTorch's size-mismatch errors run to dozens of lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class WeightsLoader(CheckpointLoader):
    """``CheckpointLoader`` whose error, when the file's weights do not fit the network, names the file and the way out.

    A file that is not a weights file (damaged, cut short, a pickle holding code) is named as such first
    (:func:`~semcl_components.bundle_runtime.weights_file.read_weights_file`: ``ValueError``), never unpickled beyond tensors.
    PyTorch's ``load_state_dict`` error lists the mismatched tensors but not the file, so a ``model.pt`` written with
    other settings (network width, depth, number of classes) would stop evaluation or inference without saying which
    file or setting is wrong. The message names the tensors whose shapes differ, with both shapes; when only the
    output layer differs, the classes differ, and it says both class counts and where this run's classes come from.

    Args:
        labels_json: the run's ``labels_json`` setting (``''``: its classes are ``channel_def`` of ``metadata.json``).
        args, kwargs: those of ``CheckpointLoader``.
    """

    def __init__(self, *args: Any, labels_json: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.labels_json = str(labels_json or "")

    def __call__(self, engine: Engine) -> None:
        read_weights_file(  # a damaged file, or one that is not a weights file, is named as such
            self.load_path, fix="Give the model.pt that configs/train.yaml wrote.", map_location="cpu"
        )
        try:
            super().__call__(engine)
        except (RuntimeError, KeyError, ValueError) as error:
            raise RuntimeError(self._message(error)) from error

    def _message(self, error: BaseException) -> str:
        """What does not fit (the tensors and both shapes) and which settings to check."""
        mismatches = size_mismatches(error)
        if self.labels_json:
            classes = f"--labels_json {self.labels_json}"
        else:
            classes = "channel_def in configs/metadata.json, as no --labels_json was given"
        what = first_line(error)
        if mismatches:
            shown = [
                f"{key}: {theirs} in the file, {ours} in this network" for key, theirs, ours in mismatches[:_SHOWN]
            ]
            more = len(mismatches) - len(shown)
            what = "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        outputs = {(theirs[0], ours[0]) for key, theirs, ours in mismatches}
        if mismatches and len(outputs) == 1 and all(key.startswith("conv_final.") for key, *_ in mismatches):
            ((theirs, ours),) = outputs  # only the output layer differs: the number of classes
            return (
                f"the weights in {self.load_path} do not fit this network ({what}): the file's model has {theirs} "
                f"output channels ({theirs - 1} classes and background), this run's network {ours} ({ours - 1} "
                f"classes, from {classes}). Give this run the classes the model was trained with (the --labels_json "
                "of its training), or give the model.pt of these classes."
            )
        return (
            f"the weights in {self.load_path} do not fit this network ({what}): the file was written with other "
            "settings (init_filters, blocks_down, blocks_up in configs/common.yaml, or the classes: this run's are "
            f"{classes}). Run with those settings, or give the model.pt of this configuration."
        )
