"""``WeightsLoader``: MONAI's ``CheckpointLoader`` that names the file when its weights do not fit the network."""

from __future__ import annotations

from ignite.engine import Engine
from monai.handlers import CheckpointLoader

from ..weights_file import read_weights_file

__all__ = ["WeightsLoader", "first_line"]


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (PyTorch's size-mismatch errors run to dozens of lines)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class WeightsLoader(CheckpointLoader):
    """``CheckpointLoader`` whose error, when the file's weights do not fit the network, names the file and the way out.

    A file that is not a weights file (damaged, cut short, a pickle holding code) is named as such first
    (:func:`~semcl_components.weights_file.read_weights_file`: ``ValueError``), never unpickled beyond tensors.
    PyTorch's ``load_state_dict`` error lists the mismatched tensors but not the file, so a ``model.pt`` written with
    other settings (network width, depth, number of classes) would stop evaluation or inference without saying which
    file or setting is wrong. Arguments are those of ``CheckpointLoader``.
    """

    def __call__(self, engine: Engine) -> None:
        read_weights_file(  # a damaged file, or one that is not a weights file, is named as such
            self.load_path, fix="Give the model.pt that configs/train.yaml wrote.", map_location="cpu"
        )
        try:
            super().__call__(engine)
        except (RuntimeError, KeyError, ValueError) as error:
            raise RuntimeError(
                f"the weights in {self.load_path} do not fit this network ({first_line(error)}): the file was written "
                "with other settings (init_filters, blocks_down, blocks_up in configs/common.yaml, or the classes in "
                "configs/metadata.json). Run with those settings, or give the model.pt of this configuration."
            ) from error
