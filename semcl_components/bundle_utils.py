"""Small helpers the bundle configs call: which data to read, the shared settings, and checks with clear errors.

Everything here is plain Python that the configs reference as expressions, e.g.
``dataset_dir: "$@semcl_components.bundle_utils.ensure_phantom_dataset(@bundle_root + '/data/phantoms')"``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "bundle_root",
    "check_dataset_classes",
    "check_disjoint_lists",
    "check_distinct_entries",
    "class_names",
    "command_line_config_files",
    "ensure_phantom_dataset",
    "case_name",
    "inference_inputs",
    "load_datalist",
    "read_settings",
    "segmentation_name",
    "with_contrast_phases",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: The files an inference folder is searched for, in any case: the volumes the configs' ITKReader reads from one
#: named file (NIfTI, MetaImage ``.mha``/``.mhd``, NRRD ``.nrrd``/``.nhdr``). A DICOM series is a folder of its own.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
_SUFFIXES_READ = ", ".join(VOLUME_SUFFIXES) + ", in any case"
#: The voxel data files of ``.mhd`` and ``.nhdr`` headers: read through their header, never on their own.
_DATA_SUFFIXES = (".raw.gz", ".raw", ".zraw")
_NAMES_SHOWN = 20

logger = logging.getLogger(__name__)


def command_line_config_files(argv: Sequence[str] | None = None) -> list[str]:
    """The config files of ``--config_file`` on a ``python -m monai.bundle`` command line, as MONAI reads them.

    Both ``--config_file VALUE`` and ``--config_file=VALUE``; the value is one path, a Python list of paths
    (``"['a.yaml','b.yaml']"``, as python-fire reads it) or comma-separated paths (as ``ConfigParser`` splits a string
    that is not a file). Paths may hold spaces and any Unicode character. An empty list when there is no
    ``--config_file`` (MONAI Label and other Python callers).
    """
    from .settings import parse_cli_overrides, typed_cli_value

    value = parse_cli_overrides(sys.argv[1:] if argv is None else argv).get("config_file")
    if value is None:
        return []
    files = typed_cli_value(value)
    if isinstance(files, str):
        files = [files] if os.path.isfile(files) or "," not in files else files.split(",")
    return [str(f).strip() for f in files]


def bundle_root(argv: Sequence[str] | None = None) -> str:
    """The bundle folder of a workflow run: the parent of the ``configs/`` folder of its first ``--config_file``.

    The configs' ``bundle_root`` item reads the command line the same way, so that every command runs from any
    working directory, also from a bundle folder whose path holds spaces or non-ASCII characters. Without
    ``--config_file`` on the command line (MONAI Label, the model zoo's CI and other Python callers, which set
    ``bundle_root`` themselves when they need another) it is the working directory, the model zoo's convention. The
    item repeats this function as a config expression because the configs find this package through it (the copy in
    ``<bundle_root>/scripts`` when none is installed); ``tests/test_bundle_utils_bundle_root.py`` holds both to the
    same answers.
    """
    files = command_line_config_files(argv)
    return os.path.dirname(os.path.dirname(os.path.abspath(files[0]))) if files else os.path.abspath(".")


def read_settings(path: str | os.PathLike) -> dict[str, Any]:
    """A mapping kept in a bundle file, as a dict: the shared settings (``configs/common.yaml``) or the metadata.

    Each workflow config reads the shared settings once (``common: $...read_settings(@bundle_root + '/configs/common.yaml')``) and
    names each one at its top level (``pixdim: $@common['pixdim']``), so a dataset change is made in that one file
    while ``--pixdim`` on a command line still overrides it for one run. MONAI bundle configs have no include, and
    a ``%file#key`` macro is read relative to the working directory, so it would fail outside the bundle folder.
    The configs read ``configs/metadata.json`` the same way (classes and image channels), because MONAI Label loads a
    workflow config without its metadata (no ``_meta_``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it does not hold a mapping of settings.
    """
    from monai.bundle import ConfigParser

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shared settings file {path} does not exist (it belongs in the bundle's configs/).")
    settings = ConfigParser.load_config_file(path)
    if not isinstance(settings, Mapping):
        raise ValueError(f"shared settings file {path} must hold a mapping of settings, got {type(settings).__name__}.")
    return dict(settings)


def ensure_phantom_dataset(
    folder: str | os.PathLike,
    num: int | None = None,
    seed: int | None = None,
    size: Sequence[int] | None = None,
    preset: str | None = None,
    phantom_folder: str | os.PathLike | None = None,
) -> str:
    """Return ``folder``, writing the embedded phantom dataset there first if it is the bundle's phantom folder and
    holds no dataset yet.

    The bundle configs use this for the default ``dataset_dir``, so every workflow runs on a fresh machine without a
    download. Phantoms are written only into ``phantom_folder`` (the bundle's ``<bundle_root>/data/phantoms``; None:
    ``folder`` is that folder), and only while it is missing or empty: any other folder, e.g. a mistyped or a user's
    ``--dataset_dir``, is returned as it is and never written to. A folder that already has a ``dataset.json`` is
    used as it is. ``preset``: ``simple`` or ``realistic`` (its spacing is its field of view / ``size``: set the
    workflows' ``pixdim`` to match, see ``docs/PHANTOMS.md``).

    Raises:
        FileNotFoundError: ``folder`` is not the phantom folder and does not exist (a mistyped ``--dataset_dir``).
        ValueError: the phantom folder holds other files but no ``dataset.json`` (they are left alone).
    """
    folder = Path(folder)
    if phantom_folder is not None and os.path.abspath(folder) != os.path.abspath(phantom_folder):
        if not folder.is_dir():
            raise FileNotFoundError(f"dataset_dir {folder} does not exist or is not a folder; check --dataset_dir.")
        return str(folder)
    if not (folder / "dataset.json").is_file():
        if folder.is_dir() and any(folder.iterdir()):
            raise ValueError(
                f"{folder} holds files but no dataset.json, so it is neither a dataset nor the bundle's phantoms; the "
                "phantoms are written only into a missing or empty folder. Give your data's folder as --dataset_dir "
                "(with its datalist.json), or move those files away to have the phantoms written there."
            )
        from .data.phantoms import PHANTOM_SETS, write_phantom_dataset

        default = PHANTOM_SETS["bundle"]
        num, seed = default.num if num is None else num, default.seed if seed is None else seed
        size, preset = default.size if size is None else size, default.preset if preset is None else preset
        print(
            f"[semcl] no dataset at {folder}: writing {num} {preset} phantoms of {tuple(size)} voxels there", flush=True
        )
        write_phantom_dataset(folder, num=num, seed=seed, size=size, preview=True, verbose=False, preset=preset)
    return str(folder)


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
    """The entries of list ``key``, paths resolved against ``base_dir``; every named file must exist."""
    if key not in content:
        lists = [k for k, v in content.items() if isinstance(v, list)]
        raise KeyError(f"datalist {datalist_file} has no list '{key}'; it has {lists}.")
    items = []
    for index, entry in enumerate(content[key]):
        entry = {"image": entry} if isinstance(entry, str) else dict(entry)
        if image_key not in entry:
            raise ValueError(f"entry {index} of '{key}' in {datalist_file} has no '{image_key}': {entry}.")
        if require_label and label_key not in entry:
            raise ValueError(
                f"image {entry[image_key]} (entry {index} of '{key}' in {datalist_file}) has no '{label_key}'; "
                "training and evaluation need a label map for every image."
            )
        for k in (image_key, label_key):
            if k in entry:
                path = Path(entry[k])
                entry[k] = str(path if path.is_absolute() else (base_dir / path).resolve())
                if not os.path.exists(entry[k]):
                    raise FileNotFoundError(
                        f"{k} file {entry[k]} (entry {index} of '{key}' in {datalist_file}) does not exist."
                    )
        items.append(entry)
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


def with_contrast_phases(
    items: Sequence[Mapping], dataset_dir: str | os.PathLike, key: str = "contrast_phase"
) -> list[dict]:
    """The datalist entries with each subject's contrast phase under ``key``, for organ x phase contrastive labels.

    An entry that has ``key`` keeps it (a datalist can carry the phases itself). Otherwise the phase comes from the
    ``dataset.json`` in ``dataset_dir``: its ``contrast_phases`` map (the phantom writer records it under
    ``generator``), keyed by the case name, i.e. the image file name without its NIfTI suffix.

    Raises:
        ValueError: an entry's phase is found nowhere (the message names the image file and where it looked).
    """
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


def inference_inputs(
    path: str | os.PathLike, output_dir: str | os.PathLike | None = None, output_postfix: str = "seg"
) -> list[dict]:
    """Datalist for inference from a volume file, a folder of volume files, or a folder holding one DICOM series.

    A folder's volume files are those of :data:`VOLUME_SUFFIXES`, in any case (``CASE.NII.GZ``, ``scan.mha``,
    ``scan.nrrd``); its subfolders are not searched and hidden files (``.DS_Store``) are passed over. Files whose name
    ends in ``_<output_postfix>`` are this bundle's segmentations from an earlier run: they are skipped, and so is every
    other file that is no volume; a logged warning names them. A folder without volume files is read as one DICOM
    series.

    Args:
        path: the ``--input_path``.
        output_dir: where the segmentations go; no input is read from there (``None``: not checked).
        output_postfix: the postfix of the segmentations' names (the configs' ``output_postfix``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is in ``output_dir``; a folder holds nothing to segment (no volume file but this bundle's
            segmentations, no DICOM series: the message names its files), more than one DICOM series (the message
            lists them), or two files of one case name (both segmentations would be written to one file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"inference input {path} does not exist.")
    folder = path if path.is_dir() else path.parent
    if output_dir is not None and str(output_dir).strip() and _same_folder(folder, Path(output_dir)):
        raise ValueError(
            f"inference input {path} is in the output folder {output_dir} (output_dir): inference reads no image from "
            "the folder it writes its segmentations to, where a later run would take them for images. Give another "
            "--output_dir."
        )
    if path.is_file():
        return [{"image": str(path.absolute())}]
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    volumes = [p for p in entries if p.is_file() and _volume_suffix(p.name)]
    postfix = f"_{output_postfix}".lower() if output_postfix else None
    outputs = [p for p in volumes if postfix and case_name(p.name).lower().endswith(postfix)]
    inputs = [p for p in volumes if p not in outputs]
    headers = {case_name(p.name) for p in volumes if p.name.lower().endswith((".mhd", ".nhdr"))}
    others = [p for p in entries if p not in volumes and not _is_data_file_of(p, headers)]
    if inputs:
        _check_distinct_case_names(inputs, output_postfix)
        if outputs:
            logger.warning(
                f"inference input folder {path}: skipped {len(outputs)} segmentation(s) of an earlier run (names "
                f"ending in _{output_postfix}, this bundle's outputs): {_names(outputs)}"
            )
        if others:
            logger.warning(
                f"inference input folder {path}: skipped {len(others)} entr{'y' if len(others) == 1 else 'ies'} that "
                f"{'is' if len(others) == 1 else 'are'} no volume file this bundle reads ({_SUFFIXES_READ}; subfolders "
                f"are not searched): {_names(others)}"
            )
        return [{"image": str(p.absolute())} for p in inputs]
    if outputs:
        raise ValueError(
            f"inference input folder {path} holds no image to segment, only segmentations of an earlier run (names "
            f"ending in _{output_postfix}, this bundle's outputs): {_names(outputs)}. Give the folder of the images."
        )
    files = [p for p in others if p.is_file()]
    if not files:
        held = f" (it holds only the folders {_names(others)}; subfolders are not searched)" if others else ""
        raise ValueError(
            f"inference input folder {path} holds no image: no volume file ({_SUFFIXES_READ}) and no DICOM series"
            f"{held}."
        )
    _check_one_dicom_series(path, files)
    return [{"image": str(path.absolute())}]  # a DICOM series folder, read by ITK as one volume


def _volume_suffix(name: str) -> str | None:
    """The suffix of :data:`VOLUME_SUFFIXES` that ``name`` ends with, in any case, as it is spelled there."""
    lower = name.lower()
    return next((name[-len(s) :] for s in VOLUME_SUFFIXES if lower.endswith(s)), None)


def _is_data_file_of(path: Path, headers: set[str]) -> bool:
    """Whether ``path`` is the voxel data file (``case.raw``) of a ``case.mhd`` or ``case.nhdr`` in ``headers``."""
    lower = path.name.lower()
    suffix = next((s for s in _DATA_SUFFIXES if lower.endswith(s)), None)
    return suffix is not None and path.name[: -len(suffix)] in headers


def _names(paths: Sequence[Path]) -> str:
    """The names of ``paths`` (folders with a trailing ``/``), the first 20 and how many more."""
    shown = [p.name + ("/" if p.is_dir() else "") for p in paths[:_NAMES_SHOWN]]
    more = len(paths) - len(shown)
    return ", ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _same_folder(first: Path, second: Path) -> bool:
    """Whether two paths name one folder (any spelling, or a link to it); a missing one by its resolved path."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.realpath(first) == os.path.realpath(second)


def case_name(name: str | os.PathLike) -> str:
    """A file or folder name without its volume suffix, in any case: ``CASE.NII.GZ`` -> ``CASE``, ``ct.mha`` -> ``ct``.

    A name without one (a DICOM series folder) is returned whole.
    """
    name = Path(name).name
    suffix = _volume_suffix(name)
    return name[: -len(suffix)] if suffix else name


def segmentation_name(meta: Mapping | None, saver: Any) -> dict:
    """``SaveImaged``'s ``output_name_formatter``: the segmentation of ``<case><volume suffix>`` is ``<case>_seg...``.

    MONAI's own formatter strips the last suffix only, and ``.gz`` only in lower case: ``CASE.NII.GZ`` would become
    ``CASE.NII_seg.nii.gz``, and a DICOM folder ``ct.v2`` ``ct_seg.nii.gz``. The case name (:func:`case_name`) is
    handed on with a ``.nii`` suffix, which MONAI then strips.
    """
    meta = meta or {}
    subject = meta.get("filename_or_obj", getattr(saver, "_data_index", 0))
    if isinstance(subject, (list, tuple)):
        subject = subject[0]
    subject = str(subject)
    named = str(Path(subject).with_name(case_name(subject) + ".nii")) if Path(subject).name else subject
    return {"subject": named, "idx": meta.get("patch_index")}


def _check_distinct_case_names(files: Sequence[Path], output_postfix: str = "seg") -> None:
    """Raise if two volume files share a case name (``case.nii``, ``case.mha``): one output would replace the other.

    The segmentation of ``<case>.nii(.gz)`` (or any volume suffix) is written as ``<case>_<postfix>.nii.gz``, so the
    second result would overwrite the first.
    """
    by_case: dict[str, list[Path]] = {}
    for file in files:
        by_case.setdefault(case_name(file.name), []).append(file)
    for case, same in by_case.items():
        if len(same) > 1:
            names = " and ".join(file.name for file in same)
            raise ValueError(
                f"inference input folder {same[0].parent} holds {names}, whose segmentations would both be written as "
                f"{case}_{output_postfix}.nii.gz (the first result would be lost). Rename one of them or move it to "
                "another folder."
            )


def _check_one_dicom_series(folder: Path, files: Sequence[Path] = ()) -> None:
    """Raise if a folder holds no DICOM series (``files``: its files, for the message; ITK would fail with "no DICOMs
    in") or more than one (ITK would read one of them and only warn)."""
    import itk

    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(False)  # one series per SeriesInstanceUID
    names.SetDirectory(str(folder))
    series = [str(uid) for uid in names.GetSeriesUIDs()]
    if not series:
        raise ValueError(
            f"inference input folder {folder} holds no image this bundle reads: no volume file ({_SUFFIXES_READ}) and "
            f"no DICOM series among its files: {_names(list(files))}. Nothing was segmented."
        )
    if len(series) > 1:
        counts = ", ".join(f"{uid} ({len(names.GetFileNames(uid))} files)" for uid in series)
        raise ValueError(
            f"inference input folder {folder} holds {len(series)} DICOM series: {counts}. Put each series in a "
            "folder of its own and give that folder as --input_path."
        )


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
