"""Small helpers the bundle configs call: which data to read, the shared settings, and checks with clear errors.

Everything here is plain Python that the configs reference as expressions, e.g.
``dataset_dir: "$@semcl_components.bundle_utils.ensure_phantom_dataset(@bundle_root + '/data/phantoms')"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "class_names",
    "ensure_phantom_dataset",
    "inference_inputs",
    "load_datalist",
    "read_settings",
    "with_contrast_phases",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


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
    folder: str | os.PathLike, num: int = 24, seed: int = 0, size: Sequence[int] = (96, 96, 96)
) -> str:
    """Return ``folder``, writing the embedded phantom dataset there first if it holds no dataset yet.

    The bundle configs use this as the default ``dataset_dir``, so every workflow runs on a fresh machine without a
    download. A folder that already has a ``dataset.json`` is used as it is.
    """
    folder = Path(folder)
    if not (folder / "dataset.json").is_file():
        from .data.phantoms import write_phantom_dataset

        print(f"[semcl] no dataset at {folder}: writing {num} phantoms of {tuple(size)} voxels there", flush=True)
        write_phantom_dataset(folder, num=num, seed=seed, size=size, preview=True, verbose=False)
    return str(folder)


def load_datalist(
    datalist_file: str | os.PathLike,
    key: str,
    base_dir: str | os.PathLike,
    require_label: bool = True,
    image_key: str = "image",
    label_key: str = "label",
) -> list[dict]:
    """Read the ``key`` list of an MSD-style datalist JSON, resolve paths against ``base_dir`` and check the files.

    Raises:
        FileNotFoundError: ``base_dir`` or the datalist file does not exist, or an entry's image or label file is
            missing (the message names the file and the entry).
        KeyError: ``key`` is not in the datalist (the message lists the keys it has).
        ValueError: an entry has no image, or no label although ``require_label`` (training, evaluation).
    """
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        raise FileNotFoundError(f"dataset_dir {base_dir} does not exist or is not a folder; set --dataset_dir.")
    datalist_file = Path(datalist_file)
    if not datalist_file.is_file():
        raise FileNotFoundError(f"datalist {datalist_file} does not exist; set --data_list_file_path.")
    try:
        content = json.loads(datalist_file.read_text())
    except ValueError as error:
        raise ValueError(f"datalist {datalist_file} is not valid JSON: {error}") from error
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
    if not items:
        raise ValueError(f"list '{key}' in {datalist_file} is empty.")
    return items


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


def inference_inputs(path: str | os.PathLike) -> list[dict]:
    """Datalist for inference from a NIfTI file, a folder of NIfTI files, or a folder holding one DICOM series.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a folder holds neither, or more than one DICOM series (the message lists them).
    """
    path = Path(path)
    if path.is_file():
        return [{"image": str(path.absolute())}]
    if not path.is_dir():
        raise FileNotFoundError(f"inference input {path} does not exist.")
    niftis = sorted(p for p in path.iterdir() if p.name.endswith(NIFTI_SUFFIXES))
    if niftis:
        _check_distinct_case_names(niftis)
        return [{"image": str(p.absolute())} for p in niftis]
    if any(p.is_file() for p in path.iterdir()):
        _check_one_dicom_series(path)
        return [{"image": str(path.absolute())}]  # a DICOM series folder, read by ITK as one volume
    raise ValueError(f"inference input folder {path} holds no NIfTI file and no DICOM series.")


def _check_distinct_case_names(files: Sequence[Path]) -> None:
    """Raise if two NIfTI files share a case name (``case.nii``, ``case.nii.gz``): one output would replace the other.

    The segmentation of ``<case>.nii(.gz)`` is written as ``<case>_seg.nii.gz``, so the second result would overwrite
    the first.
    """
    by_case: dict[str, list[Path]] = {}
    for file in files:
        by_case.setdefault(_case_name(file), []).append(file)
    for case, same in by_case.items():
        if len(same) > 1:
            names = " and ".join(file.name for file in same)
            raise ValueError(
                f"inference input folder {same[0].parent} holds {names}, whose segmentations would both be written as "
                f"{case}_seg.nii.gz (the first result would be lost). Rename one of them or move it to another folder."
            )


def _case_name(file: Path) -> str:
    """The file name without its NIfTI suffix: ``case.nii.gz`` -> ``case``."""
    return next((file.name[: -len(s)] for s in NIFTI_SUFFIXES if file.name.endswith(s)), file.name)


def _check_one_dicom_series(folder: Path) -> None:
    """Raise if a DICOM folder holds more than one series: ITK would read one of them and only warn."""
    import itk

    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(False)  # one series per SeriesInstanceUID
    names.SetDirectory(str(folder))
    series = [str(uid) for uid in names.GetSeriesUIDs()]
    if len(series) > 1:
        counts = ", ".join(f"{uid} ({len(names.GetFileNames(uid))} files)" for uid in series)
        raise ValueError(
            f"inference input folder {folder} holds {len(series)} DICOM series: {counts}. Put each series in a "
            "folder of its own and give that folder as --input_path."
        )


def class_names(labels: Mapping[str, str] | str | os.PathLike) -> list[str]:
    """Foreground class names in label order from a ``{"0": "background", "1": "spleen", ...}`` map.

    ``labels`` is such a map (the bundle's ``metadata.json`` ``channel_def``) or the path of an MSD ``dataset.json``
    whose ``labels`` map is used, so a dataset brings its own classes: ``--class_names
    "$@semcl_components.bundle_utils.class_names('/data/btcv/dataset.json')"``.
    """
    if not isinstance(labels, Mapping):
        labels = json.loads(Path(labels).read_text())["labels"]
    ordered = sorted(((int(k), v) for k, v in labels.items()), key=lambda kv: kv[0])
    ids = [k for k, _ in ordered]
    if ids != list(range(len(ids))):
        raise ValueError(f"label ids must be 0..K without gaps, got {ids}.")
    return [name for k, name in ordered if k > 0]
