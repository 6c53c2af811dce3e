"""The bundle configs' data helpers: the dataset a run reads is the one meant, with the classes and splits meant."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from semcl_components.bundle_runtime.datalists import load_datalist
from semcl_components.bundle_runtime.labels import class_names
from semcl_components.bundle_runtime.phantom_dataset import ensure_phantom_dataset

BUNDLE_CLASSES = ["spleen", "right kidney", "left kidney", "gallbladder", "liver", "stomach", "aorta", "pancreas"]


def _dataset(folder: Path, lists: dict[str, list[str]], labels: dict[str, str] | None = None) -> Path:
    """A dataset folder with empty image and label files, a ``datalist.json`` of ``lists`` (case names per list) and,
    with ``labels``, a ``dataset.json``."""
    for name in {case for cases in lists.values() for case in cases}:
        for sub in ("imagesTr", "labelsTr"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            (folder / sub / f"{name}.nii.gz").write_bytes(b"")
    datalist = {
        key: [{"image": f"imagesTr/{c}.nii.gz", "label": f"labelsTr/{c}.nii.gz"} for c in cases]
        for key, cases in lists.items()
    }
    (folder / "datalist.json").write_text(json.dumps(datalist))
    if labels is not None:
        (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    return folder


def _labels(names: list[str]) -> dict[str, str]:
    return {"0": "background", **{str(i + 1): name for i, name in enumerate(names)}}


# ------------------------------------------------------------------------------------------------ class meanings


def test_dataset_whose_ids_mean_other_organs_is_refused_with_both_lists(tmp_path):
    """Same class count, ids 2 and 3 gallbladder and pancreas instead of the kidneys (issue 19, finding 3)."""
    swapped = ["spleen", "gallbladder", "pancreas", "right kidney", "liver", "stomach", "aorta", "left kidney"]
    folder = _dataset(tmp_path, {"train": ["a"]}, _labels(swapped))
    with pytest.raises(ValueError) as error:
        load_datalist(folder / "datalist.json", "train", folder, class_names=BUNDLE_CLASSES)
    message = str(error.value)
    assert str(folder / "dataset.json") in message
    assert "2: 'gallbladder' (dataset) vs 'right kidney' (class_names)" in message
    assert str(swapped) in message and str(BUNDLE_CLASSES) in message
    assert f"run with --labels_json {folder / 'dataset.json'}" in message


def test_dataset_with_more_classes_is_refused(tmp_path):
    folder = _dataset(tmp_path, {"train": ["a"]}, _labels(BUNDLE_CLASSES + ["esophagus"]))
    with pytest.raises(ValueError, match=r"the dataset has 9 foreground classes, class_names has 8"):
        load_datalist(folder / "datalist.json", "train", folder, class_names=BUNDLE_CLASSES)


def test_class_names_match_in_any_case_and_with_underscores(tmp_path):
    spelled = ["Spleen", "right_kidney", "Left-Kidney", "gallbladder", "liver", "stomach", "aorta", "pancreas"]
    folder = _dataset(tmp_path, {"train": ["a"]}, _labels(spelled))
    assert len(load_datalist(folder / "datalist.json", "train", folder, class_names=BUNDLE_CLASSES)) == 1


def test_dataset_without_dataset_json_is_read_without_a_class_check(tmp_path):
    folder = _dataset(tmp_path, {"train": ["a"]})
    assert len(load_datalist(folder / "datalist.json", "train", folder, class_names=BUNDLE_CLASSES)) == 1


def test_label_ids_with_gaps_name_the_file(tmp_path):
    """Ids 0, 1, 2, 5 (issue 19, finding 10): the message names the dataset.json."""
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": {"0": "background", "1": "spleen", "2": "liver", "5": "aorta"}}))
    with pytest.raises(ValueError, match=rf"{path}: label ids must be 0..K without gaps, got \[0, 1, 2, 5\]"):
        class_names(path)


def test_classes_of_a_dataset_json_are_its_labels_in_id_order(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"name": "BTCV", "labels": {"2": "right kidney", "0": "background", "1": "spleen"}}))
    assert class_names(path) == ["spleen", "right kidney"]


@pytest.mark.parametrize(
    "content, error, message",
    [
        (None, FileNotFoundError, "does not exist or is not a file"),
        ("{not json", ValueError, "is not valid JSON"),
        (json.dumps({"name": "no labels"}), ValueError, "has no labels"),
        (json.dumps(["background", "spleen"]), ValueError, "has no labels"),
    ],
)
def test_a_labels_json_that_is_missing_or_has_no_labels_is_named_with_the_fix(tmp_path, content, error, message):
    path = tmp_path / "classes.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=rf"labels_json {path} {message}.*such as an MSD dataset.json"):
        class_names(path)


# --------------------------------------------------------------------------------------------- overlapping splits


def test_validation_list_holding_a_training_image_is_refused(tmp_path):
    """Issue 19, finding 4: a training image in the validation list stops the run, naming file and lists."""
    folder = _dataset(tmp_path, {"train": ["a", "b"], "validation": ["b", "c"], "test": ["d"]})
    with pytest.raises(ValueError) as error:
        load_datalist(folder / "datalist.json", "train", folder, disjoint_from=["validation", "test"])
    message = str(error.value)
    assert "'train' and 'validation'" in message and str(folder / "imagesTr" / "b.nii.gz") in message
    assert str(folder / "datalist.json") in message


def test_a_training_image_spelled_differently_in_the_test_list_is_found(tmp_path):
    folder = _dataset(tmp_path, {"train": ["a"], "test": ["b"]})
    datalist = json.loads((folder / "datalist.json").read_text(encoding="utf-8"))
    (folder / "link.nii.gz").symlink_to(folder / "imagesTr" / "a.nii.gz")
    datalist["test"] += [
        {"image": "./imagesTr/../imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"},
        {"image": str(folder / "link.nii.gz"), "label": "labelsTr/a.nii.gz"},
    ]
    (folder / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(ValueError, match=r"'train' and 'test' share 1 image"):
        load_datalist(folder / "datalist.json", "train", folder, disjoint_from=["test"])


def test_disjoint_lists_pass_and_absent_lists_are_skipped(tmp_path):
    folder = _dataset(tmp_path, {"train": ["a", "b"], "validation": ["c"]})
    items = load_datalist(folder / "datalist.json", "train", folder, disjoint_from=["validation", "test"])
    assert [Path(item["image"]).name for item in items] == ["a.nii.gz", "b.nii.gz"]


def test_a_case_listed_twice_in_one_list_is_refused_naming_both_entries(tmp_path):
    """Issue 35, item 7: ``./imagesTr/a.nii.gz`` and ``imagesTr/a.nii.gz`` in one list are one case listed twice."""
    folder = _dataset(tmp_path, {"train": ["a", "b"]})
    datalist = json.loads((folder / "datalist.json").read_text(encoding="utf-8"))
    datalist["train"].append({"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"})
    (folder / "datalist.json").write_text(json.dumps(datalist))
    with pytest.raises(ValueError) as error:
        load_datalist(folder / "datalist.json", "train", folder)
    message = str(error.value)
    assert f"list 'train' in datalist {folder / 'datalist.json'}: entries 0 and 2 name the same image file" in message
    assert str(folder / "imagesTr" / "a.nii.gz") in message


@pytest.mark.parametrize(
    "labels, message",
    [
        ({"0": "background", "1": "liver", "2": "Liver"}, "classes 1 ('liver') and 2 ('Liver') have the same name"),
        ({"0": "background", "1": "liver", "one": "spleen"}, "label id 'one' is not a whole number"),
        ({"0": "background", "1": ""}, "class 1 has no name"),
    ],
)
def test_labels_with_a_repeated_name_or_a_non_integer_id_name_the_file(tmp_path, labels, message):
    """Issue 35, item 11 and its poor messages: a repeated class name would lose a class from every per-class
    summary (kept by name); a key that is no id was a bare ``int()`` error."""
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": labels}))
    with pytest.raises(ValueError, match=f"^{re.escape(f'{path}: {message}')}"):
        class_names(path)
    with pytest.raises(ValueError, match=f"^{re.escape(f'channel_def: {message}')}"):
        class_names(labels)


# ------------------------------------------------------------------------------------------ phantoms only by default


def test_phantoms_are_never_written_into_a_mistyped_dataset_dir(tmp_path):
    """Issue 19, finding 5: only the bundle's own phantom folder gets phantoms; a typo stops, naming --dataset_dir."""
    typo = tmp_path / "my_dta"
    with pytest.raises(FileNotFoundError, match=rf"dataset_dir {typo} does not exist"):
        ensure_phantom_dataset(typo, phantom_folder=tmp_path / "bundle" / "data" / "phantoms")
    assert not typo.exists()


def test_a_user_folder_without_dataset_json_is_used_as_it_is(tmp_path):
    """Issue 19, finding 10: user data without dataset.json is neither written to nor met with advice to overwrite."""
    folder = _dataset(tmp_path / "user", {"test": ["a"]})
    before = sorted(p.name for p in folder.rglob("*"))
    assert ensure_phantom_dataset(folder, phantom_folder=tmp_path / "bundle" / "data" / "phantoms") == str(folder)
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_the_bundle_phantom_folder_holding_other_files_is_not_overwritten(tmp_path):
    folder = tmp_path / "phantoms"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError) as error:
        ensure_phantom_dataset(folder, num=4, size=(16, 16, 16), phantom_folder=folder)
    assert "--overwrite" not in str(error.value) and "--dataset_dir" in str(error.value)
    assert (folder / "mine.txt").read_text(encoding="utf-8") == "keep me"


def test_the_bundle_phantom_folder_is_written_on_first_use(tmp_path):
    folder = tmp_path / "data" / "phantoms"
    assert ensure_phantom_dataset(folder, num=4, size=(16, 16, 16), phantom_folder=folder) == str(folder)
    assert (folder / "dataset.json").is_file() and (folder / "datalist.json").is_file()


# ------------------------------------------------------------------------------------------------ paths and entries


def test_paths_are_resolved_against_the_dataset_folder_and_a_missing_file_is_named(tmp_path):
    folder = _dataset(tmp_path / "data", {"train": ["a"], "test": ["b"]})
    datalist = json.loads((folder / "datalist.json").read_text(encoding="utf-8"))
    datalist["test"] = ["imagesTr/b.nii.gz"]  # MSD's test list: bare image paths
    datalist["validation"] = [{"image": "./imagesTr/../imagesTr/a.nii.gz", "label": str(folder / "labelsTr/a.nii.gz")}]
    (folder / "datalist.json").write_text(json.dumps(datalist))
    (validation,) = load_datalist(folder / "datalist.json", "validation", tmp_path / "data" / ".." / "data")
    assert validation == {"image": str(folder / "imagesTr/a.nii.gz"), "label": str(folder / "labelsTr/a.nii.gz")}
    assert load_datalist(folder / "datalist.json", "test", folder, require_label=False) == [
        {"image": str(folder / "imagesTr/b.nii.gz")}
    ]
    (folder / "labelsTr" / "a.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"label file .*labelsTr/a.nii.gz \(entry 0 of 'train' in .*\) does not"):
        load_datalist(folder / "datalist.json", "train", folder)


def test_a_bare_path_outside_the_test_list_is_refused_naming_the_entry(tmp_path):
    folder = _dataset(tmp_path, {"train": ["a"]})
    (folder / "datalist.json").write_text(json.dumps({"train": ["imagesTr/a.nii.gz"]}))
    with pytest.raises(ValueError, match=r"entry 0 of 'train' in .* is a bare path \(imagesTr/a.nii.gz\)"):
        load_datalist(folder / "datalist.json", "train", folder, require_label=False)
