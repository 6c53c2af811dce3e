"""Reading a weights file (``model.pt``, ``pretrained_encoder.pt``, checkpoints) with an error that names it.

PyTorch's own errors for a file that is not a weights file name no file: a truncated file gives a ``RuntimeError``
about a zip archive's central directory, a pickle holding code or whole objects an ``UnpicklingError`` that advises
``weights_only=False``, i.e. running whatever code the file holds. :func:`read_weights_file` keeps PyTorch's
safe loader and says instead which file is wrong, in which way, and what to give.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = ["read_weights_file"]

# PyTorch's words for a file that ends before its zip archive does
_CUT_SHORT_MESSAGES = ("central directory", "PytorchStreamReader failed", "unexpected EOF", "Ran out of input")


def read_weights_file(
    path: str | os.PathLike, what: str = "weights file", fix: str = "", map_location: Any = "cpu"
) -> Mapping:
    """Load a mapping of tensors with ``torch.load(weights_only=True)``, naming ``path`` in every error.

    Args:
        path: the file.
        what: the file's role, which begins every message (e.g. ``"encoder checkpoint"``).
        fix: what the user should give instead, appended to every message (e.g. ``"Give the model.pt that
            configs/train.yaml wrote."``).
        map_location: passed to ``torch.load``.

    Returns:
        The file's content, a mapping (a state dict, or a checkpoint of several).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is damaged or cut short, holds Python objects other than tensors and plain containers
            (which are never unpickled: that could run code), is not a PyTorch file, or holds no mapping.
    """
    path = Path(path)
    suffix = f" {fix}" if fix else ""
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.{suffix}")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise ValueError(
                f"{what} {path} holds Python objects other than tensors and plain containers ({found.group(1)}: a "
                "pickled model or class, or code), and such objects are not loaded: unpickling them could run any "
                f"code the file holds. Save the weights alone: torch.save(model.state_dict(), path).{suffix}"
            ) from error
        raise ValueError(  # PyTorch's message would advise weights_only=False, i.e. running the file's code
            f"{what} {path} is not a readable PyTorch weights file (PyTorch's safe loader cannot read it: not a file "
            f"written by torch.save, or a pickle of other objects).{suffix}"
        ) from error
    except (RuntimeError, EOFError, OSError) as error:
        if isinstance(error, EOFError) or any(text in str(error) for text in _CUT_SHORT_MESSAGES):
            raise ValueError(
                f"{what} {path} is damaged or cut short ({path.stat().st_size} bytes; an interrupted copy or "
                f"download?).{suffix}"
            ) from error
        raise ValueError(
            f"{what} {path} is not a readable PyTorch weights file ({type(error).__name__}: "
            f"{_first_line(error)}).{suffix}"
        ) from error
    if not isinstance(content, Mapping):
        raise ValueError(f"{what} {path} holds a {type(content).__name__}, not a dict of weights.{suffix}")
    return content


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__
