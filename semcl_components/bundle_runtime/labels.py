"""The classes of a run: foreground class names from a labels map (``channel_def``, a dataset's ``dataset.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "check_dataset_classes",
    "class_names",
    "foreground_ids",
    "num_classes",
    "run_class_names",
    "with_background",
]


def class_names(labels: Mapping[str, str] | str | os.PathLike) -> list[str]:
    """Foreground class names in label order from a ``{"0": "background", "1": "spleen", ...}`` map.

    ``labels`` is such a map (the bundle's ``metadata.json`` ``channel_def``) or the path of a JSON file with a
    ``labels`` map, such as an MSD ``dataset.json``, so a dataset brings its own classes: the configs' ``labels_json``
    setting (``--labels_json /data/btcv/dataset.json``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON or has no ``labels`` map; an id is not a whole number; the ids are not 0..K
            without gaps; two classes have the same name (case, ``_`` and ``-`` ignored) or a class has none.
    """
    source = "channel_def"
    if not isinstance(labels, Mapping):
        source = str(labels)
        labels = _labels_of_file(Path(labels))
    ordered = sorted(((_label_id(k, source), v) for k, v in labels.items()), key=lambda kv: kv[0])
    ids = [k for k, _ in ordered]
    if ids != list(range(len(ids))):
        raise ValueError(
            f"{source}: label ids must be 0..K without gaps, got {ids}; number the classes 0 (background), 1, 2, ... "
            "and relabel the label maps to match."
        )
    _check_distinct_names(ordered, source)
    return [name for k, name in ordered if k > 0]


def _label_id(key: Any, source: str) -> int:
    """A ``labels`` key as a class id (``"3"`` or ``3``), or an error that names the file and the key."""
    try:
        value = int(str(key).strip())
    except ValueError:
        value = None
    if value is None or isinstance(key, bool):
        raise ValueError(
            f"{source}: label id {key!r} is not a whole number; the labels map class ids to names, e.g. "
            '{"0": "background", "1": "spleen"}.'
        )
    return value


def _check_distinct_names(ordered: Sequence[tuple[int, Any]], source: str) -> None:
    """Raise if two classes share a name (compared as :func:`_name_key` does): per-class results are kept by name, so
    one of the two would be lost from every summary."""
    seen: dict[str, tuple[int, str]] = {}
    for index, name in ordered:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{source}: class {index} has no name (got {name!r}); give every class a name.")
        other = seen.setdefault(_name_key(name), (index, name))
        if other[0] != index:
            raise ValueError(
                f"{source}: classes {other[0]} ({other[1]!r}) and {index} ({name!r}) have the same name; per-class "
                "results are kept by name, so one of them would be lost. Give every class a name of its own."
            )


def check_dataset_classes(dataset_dir: str | os.PathLike, names: Sequence[str]) -> None:
    """Stop if the ``labels`` of ``dataset_dir/dataset.json`` give the class ids other meanings than ``names``.

    ``names`` are the run's foreground classes (``class_names``: ``metadata.json``'s ``channel_def``, or the labels
    of the ``labels_json`` setting), id 1 first. A dataset of the same class count whose id 2 is another organ would
    otherwise train silently under the bundle's names, with left/right flips swapping the wrong labels. Names are
    compared ignoring case, ``_`` and ``-``. A folder without ``dataset.json``, or one whose ``dataset.json`` has no
    ``labels``, is not checked.

    Raises:
        ValueError: listing the ids that differ and both class lists, and how to run with the dataset's classes.
    """
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        return
    try:
        labels = json.loads(path.read_text()).get("labels")
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not labels:
        return
    theirs, ours = class_names(path), list(names)
    if [_name_key(n) for n in theirs] == [_name_key(n) for n in ours]:
        return
    differ = [
        f"{i + 1}: {a!r} (dataset) vs {b!r} (class_names)"
        for i, (a, b) in enumerate(zip(theirs, ours))
        if _name_key(a) != _name_key(b)
    ]
    count = (
        f"; the dataset has {len(theirs)} foreground classes, class_names has {len(ours)}"
        if len(theirs) != len(ours)
        else ""
    )
    raise ValueError(
        f"{path} names its classes differently from this run's class_names: {', '.join(differ) or 'the shared ids agree'}"
        f"{count}. Dataset: {theirs}; class_names: {ours}. To train a model of this dataset's classes, run with "
        f"--labels_json {path} (and give the same --labels_json to evaluation and inference); or correct the labels "
        "of dataset.json if it names them wrongly."
    )


def _labels_of_file(path: Path) -> Mapping[str, str]:
    """The ``labels`` map of a JSON file (``labels_json``), or an error that names the file and the fix."""
    hint = 'a JSON file with a "labels" map such as an MSD dataset.json: {"labels": {"0": "background", "1": ...}}'
    if not path.is_file():
        raise FileNotFoundError(f"labels_json {path} does not exist or is not a file; give {hint}.")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"labels_json {path} is not valid JSON ({error}); give {hint}.") from error
    labels = content.get("labels") if isinstance(content, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(f"labels_json {path} has no labels; give {hint}.")
    return labels


def _name_key(name: str) -> str:
    """A class name for comparison: lower case, ``_`` and ``-`` as spaces, single spaces."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def run_class_names(labels_json: str | os.PathLike, metadata: Mapping[str, Any]) -> list[str]:
    """The foreground classes of a run: those of ``labels_json`` if one is given, else the metadata's ``channel_def``
    (``network_data_format.outputs.pred.channel_def`` of ``configs/metadata.json``).

    The configs' ``class_names`` item (``--labels_json /data/btcv/dataset.json`` trains, evaluates and infers a model
    of that dataset's classes). Errors as :func:`class_names`.
    """
    return class_names(labels_json or metadata["network_data_format"]["outputs"]["pred"]["channel_def"])


def num_classes(class_names: Sequence[str]) -> int:
    """The network's output channels for foreground ``class_names``: one per class and the background."""
    return len(class_names) + 1


def foreground_ids(class_names: Sequence[str]) -> list[int]:
    """The label ids of foreground ``class_names``: ``[1, ..., K]``."""
    return list(range(1, len(class_names) + 1))


def with_background(class_names: Sequence[str]) -> list[str]:
    """All class names by label id, the background (id 0) first: ``["background", *class_names]``."""
    return ["background", *class_names]
