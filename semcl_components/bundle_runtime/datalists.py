"""MSD-style datalists read for a workflow: paths resolved and every file checked, lists that must not overlap.

``load_datalist`` is what the configs call for their training, validation and evaluation lists;
``with_contrast_phases`` adds each subject's contrast phase to its entries (organ x phase contrastive labels).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.data import load_decathlon_datalist

from .inference_files import NIFTI_SUFFIXES, inference_inputs
from .labels import check_dataset_classes
from .phantom_dataset import ensure_phantom_dataset

__all__ = [
    "check_disjoint_lists",
    "check_distinct_entries",
    "inference_datalist",
    "load_datalist",
    "with_contrast_phases",
]


def load_datalist(
    datalist_file: str | os.PathLike,
    key: str,
    base_dir: str | os.PathLike,
    require_label: bool = True,
    image_key: str = "image",
    label_key: str = "label",
    class_names: Sequence[str] | None = None,
    disjoint_from: Sequence[str] = (),
) -> list[dict]:
    """Read the ``key`` list of an MSD-style datalist JSON, resolve paths against ``base_dir`` and check the files.

    Args:
        datalist_file: the datalist JSON (lists of ``{"image": ..., "label": ...}``, paths relative to ``base_dir``).
        key: the list to read.
        base_dir: the dataset folder.
        require_label: every entry needs a label (training, evaluation).
        image_key: the entries' image key.
        label_key: the entries' label key.
        class_names: the run's foreground classes; when given, the ``labels`` of ``base_dir/dataset.json`` (if there
            is one) must name the same classes with the same ids (:func:`check_dataset_classes`).
        disjoint_from: other lists of the datalist that must share no image with this one, e.g. the validation and
            test lists of a training list (:func:`check_disjoint_lists`); lists the datalist lacks are skipped.

    Raises:
        FileNotFoundError: ``base_dir`` or the datalist file does not exist, or an entry's image or label file is
            missing (the message names the file and the entry).
        KeyError: ``key`` is not in the datalist (the message lists the keys it has).
        ValueError: an entry has no image, or no label although ``require_label`` (training, evaluation); the
            dataset's classes differ from ``class_names``; a list of ``disjoint_from`` shares an image with ``key``;
            two entries of the list name the same image or label file (:func:`check_distinct_entries`).
    """
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise FileNotFoundError(f"dataset_dir {base_dir} does not exist or is not a folder; set --dataset_dir.")
    if class_names is not None:
        check_dataset_classes(base_dir, class_names)
    content = _read_datalist(datalist_file)
    items = _datalist_entries(content, key, datalist_file, base_dir, require_label, image_key, label_key)
    if not items:
        raise ValueError(f"list '{key}' in {datalist_file} is empty.")
    check_distinct_entries(items, f"list '{key}' in datalist {datalist_file}", (image_key, label_key))
    others = {
        other: _datalist_entries(content, other, datalist_file, base_dir, False, image_key, label_key)
        for other in disjoint_from
        if other in content and other != key
    }
    check_disjoint_lists({key: items, **others}, datalist_file, image_key)
    return items


def _read_datalist(datalist_file: str | os.PathLike) -> dict:
    datalist_file = Path(datalist_file)
    if not datalist_file.is_file():
        raise FileNotFoundError(f"datalist {datalist_file} does not exist; set --data_list_file_path.")
    try:
        return json.loads(datalist_file.read_text())
    except ValueError as error:
        raise ValueError(f"datalist {datalist_file} is not valid JSON: {error}") from error


def _datalist_entries(
    content: Mapping,
    key: str,
    datalist_file: str | os.PathLike,
    base_dir: Path,
    require_label: bool,
    image_key: str,
    label_key: str,
) -> list[dict]:
    """The entries of list ``key``, paths resolved against ``base_dir`` (MONAI's ``load_decathlon_datalist``); every
    named file must exist."""
    if key not in content:
        lists = [k for k, v in content.items() if isinstance(v, list)]
        raise KeyError(f"datalist {datalist_file} has no list '{key}'; it has {lists}.")
    for index, entry in enumerate(content[key]):
        if isinstance(entry, str) and key != "test":
            raise ValueError(
                f"entry {index} of '{key}' in {datalist_file} is a bare path ({entry}); only the 'test' list may list "
                f"bare image paths, the others list entries such as {{'{image_key}': ..., '{label_key}': ...}}."
            )
        entry = {"image": entry} if isinstance(entry, str) else entry
        if image_key not in entry:
            raise ValueError(f"entry {index} of '{key}' in {datalist_file} has no '{image_key}': {entry}.")
        if require_label and label_key not in entry:
            raise ValueError(
                f"image {entry[image_key]} (entry {index} of '{key}' in {datalist_file}) has no '{label_key}'; "
                "training and evaluation need a label map for every image."
            )
    items = load_decathlon_datalist(datalist_file, is_segmentation=True, data_list_key=key, base_dir=base_dir.resolve())
    for index, entry in enumerate(items):
        for k in (image_key, label_key):
            if k in entry and not os.path.exists(entry[k]):
                raise FileNotFoundError(
                    f"{k} file {entry[k]} (entry {index} of '{key}' in {datalist_file}) does not exist."
                )
    return items


def check_disjoint_lists(
    lists: Mapping[str, Sequence[Mapping]], datalist_file: str | os.PathLike, image_key: str = "image"
) -> None:
    """Stop if the first list shares an image file with any other list (e.g. training with validation or test).

    Files are compared as files, not as spellings: ``./a.nii.gz``, ``x/../a.nii.gz``, an absolute path or a link to
    the same file are one image. A validation or test image that was also trained on makes the reported Dice (and
    the choice of ``model.pt``) measure memory instead of generalisation.

    Args:
        lists: ``{list name: entries}`` with resolved, existing image paths; the first list is checked against the
            others.
        datalist_file: the datalist the lists come from (for the message).
        image_key: the entries' image key.

    Raises:
        ValueError: naming the datalist, both lists and the shared image files.
    """
    (first, items), *others = lists.items()
    files = {_file_identity(item[image_key]): item[image_key] for item in items}
    for other, other_items in others:
        shared = {
            files[identity]: item[image_key]
            for item in other_items
            if (identity := _file_identity(item[image_key])) in files
        }
        if shared:
            shown = "; ".join(
                f"{mine}" + (f" (as {theirs})" if theirs != mine else "") for mine, theirs in list(shared.items())[:5]
            )
            more = f" and {len(shared) - 5} more" if len(shared) > 5 else ""
            raise ValueError(
                f"datalist {datalist_file}: lists '{first}' and '{other}' share {len(shared)} image file(s): "
                f"{shown}{more}. An image a run trains on must not also validate or test it; remove it from one "
                "of the lists."
            )


def check_distinct_entries(
    items: Sequence[Mapping],
    where: str,
    keys: Sequence[str] = ("image", "label"),
    base_dir: str | os.PathLike | None = None,
) -> None:
    """Stop if two entries name the same file under one of ``keys`` (any spelling of its path, or a link to it).

    A case listed twice (``./imagesTr/a.nii.gz`` and ``imagesTr/a.nii.gz``) counts twice in every mean, and a split
    of the list can put one copy in training and the other in the test set.

    Args:
        items: the entries, paths resolved (as :func:`load_datalist` gives them) or relative to ``base_dir``.
        where: the list and file they come from, for the message (e.g. ``"list 'training' in datalist x.json"``).
        keys: the entry keys whose files must differ between entries (a key an entry lacks is skipped).
        base_dir: the folder relative paths start from (``None``: the paths are resolved already); the message
            names the paths as the entries spell them.

    Raises:
        ValueError: naming ``where``, both entries (index and path) and the shared file.
    """
    for key in keys:
        seen: dict[tuple[int, int] | str, int] = {}
        for index, item in enumerate(items):
            if key not in item:
                continue
            path = item[key] if base_dir is None else os.path.join(base_dir, item[key])
            first = seen.setdefault(_file_identity(path), index)
            if first != index:
                spellings = dict.fromkeys(str(entry[key]) for entry in (items[first], item))
                raise ValueError(
                    f"{where}: entries {first} and {index} name the same {key} file ({' and '.join(spellings)}); a "
                    "case listed twice counts twice and can land on both sides of a split. Remove one of them."
                )


def _file_identity(path: str | os.PathLike) -> tuple[int, int] | str:
    """``(device, inode)`` of an existing file (the same for every spelling of a path and for links), else its real
    path."""
    try:
        stat = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return stat.st_dev, stat.st_ino


def with_contrast_phases(
    items: Sequence[Mapping], dataset_dir: str | os.PathLike, key: str = "contrast_phase", enabled: bool = True
) -> list[dict]:
    """The datalist entries with each subject's contrast phase under ``key``, for organ x phase contrastive labels.

    ``enabled`` false (pretraining without ``contrast_phase_labels``): the entries as they are, nothing is looked up.

    An entry that has ``key`` keeps it (a datalist can carry the phases itself). Otherwise the phase comes from the
    ``dataset.json`` in ``dataset_dir``: its ``contrast_phases`` map (the phantom writer records it under
    ``generator``), keyed by the case name, i.e. the image file name without its NIfTI suffix.

    Raises:
        ValueError: an entry's phase is found nowhere (the message names the image file and where it looked).
    """
    if not enabled:
        return [dict(item) for item in items]
    phases: Mapping[str, str] = {}
    dataset_json = Path(dataset_dir) / "dataset.json"
    if dataset_json.is_file():
        content = json.loads(dataset_json.read_text())
        phases = content.get("contrast_phases") or content.get("generator", {}).get("contrast_phases") or {}
    out = []
    for item in items:
        item = dict(item)
        if key not in item:
            name = Path(str(item.get("image", ""))).name
            case = next((name[: -len(s)] for s in NIFTI_SUFFIXES if name.endswith(s)), name)
            if case not in phases:
                raise ValueError(
                    f"image {item.get('image')} has no '{key}': neither its datalist entry nor the contrast_phases "
                    f"of {dataset_json} name case '{case}'."
                )
            item[key] = phases[case]
        out.append(item)
    return out


def inference_datalist(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    output_postfix: str,
    dataset_dir: str | os.PathLike,
    infer_key: str,
    phantom_folder: str | os.PathLike,
    datalist_file: str | os.PathLike | None = None,
) -> list[dict]:
    """The images inference segments: those of ``input_path`` if one is given, else the ``infer_key`` list of the
    dataset's datalist (the bundle's phantoms, written into ``phantom_folder`` on first use, when ``dataset_dir`` is
    that folder).

    Args:
        input_path: the ``--input_path`` (a volume file, a folder of them, a DICOM series), or ``''``.
        output_dir: where the segmentations go (no input is read from there).
        output_postfix: the postfix of the segmentations' names (files named so are an earlier run's outputs).
        dataset_dir: the dataset folder, without ``input_path``.
        infer_key: the datalist's list to segment, without ``input_path``.
        phantom_folder: the bundle's phantom folder (:func:`~.phantom_dataset.ensure_phantom_dataset`).
        datalist_file: the datalist (default ``<dataset_dir>/datalist.json``).

    Raises:
        as :func:`~.inference_files.inference_inputs` and :func:`load_datalist`.
    """
    if input_path:
        return inference_inputs(input_path, output_dir, output_postfix)
    dataset_dir = ensure_phantom_dataset(dataset_dir, phantom_folder=phantom_folder)
    datalist_file = os.path.join(dataset_dir, "datalist.json") if datalist_file is None else datalist_file
    return load_datalist(datalist_file, infer_key, dataset_dir, require_label=False)
