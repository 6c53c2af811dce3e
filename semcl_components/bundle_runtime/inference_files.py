"""Inference's inputs and outputs: the volumes of an ``--input_path`` and the names of their segmentations."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["NIFTI_SUFFIXES", "VOLUME_SUFFIXES", "case_name", "inference_inputs", "segmentation_name"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: The files an inference folder is searched for, in any case: the volumes the configs' ITKReader reads from one
#: named file (NIfTI, MetaImage ``.mha``/``.mhd``, NRRD ``.nrrd``/``.nhdr``). A DICOM series is a folder of its own.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr")
_SUFFIXES_READ = ", ".join(VOLUME_SUFFIXES) + ", in any case"
#: The voxel data files of ``.mhd`` and ``.nhdr`` headers: read through their header, never on their own.
_DATA_SUFFIXES = (".raw.gz", ".raw", ".zraw")
_NAMES_SHOWN = 20

logger = logging.getLogger(__name__)


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
