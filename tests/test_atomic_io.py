"""Atomic file writing: a reader sees the old complete file or the new one, never a partial one."""

from __future__ import annotations

import os

import pytest
import torch

from semcl_components.bundle_runtime.atomic_io import atomic_write, write_json_atomic


def test_write_json_atomic_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "summary.json"
    write_json_atomic({"a": 1}, target)
    write_json_atomic({"a": torch.tensor(2.5)}, target)
    assert target.read_text(encoding="utf-8").strip().replace(" ", "").replace("\n", "") == '{"a":2.5}'
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "seg.nii.gz"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz")  # writers that pick a format by suffix
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]


def test_image_writer_killed_mid_write_keeps_the_previous_segmentation(tmp_path, monkeypatch):
    import itk
    import nibabel as nib
    import numpy as np
    from monai.transforms import SaveImage

    from semcl_components.bundle_runtime.atomic_io import AtomicITKWriter

    def save(array, name="seg"):
        SaveImage(output_dir=tmp_path, output_postfix="", separate_folder=False, writer=AtomicITKWriter,
                  print_log=False)(torch.as_tensor(array)[None], meta_data={"filename_or_obj": f"{name}.nii.gz"})

    save(np.full((6, 6, 6), 3, np.uint8))
    target = tmp_path / "seg.nii.gz"
    assert np.asarray(nib.load(target).dataobj).max() == 3
    real_imwrite = itk.imwrite

    def killed_imwrite(image, filename, *args, **kwargs):
        with open(filename, "wb") as partial:
            partial.write(b"\x1f\x8b half a file")
        raise KeyboardInterrupt  # stands for the kill

    monkeypatch.setattr(itk, "imwrite", killed_imwrite)
    with pytest.raises(KeyboardInterrupt):
        save(np.full((6, 6, 6), 5, np.uint8))
    monkeypatch.setattr(itk, "imwrite", real_imwrite)
    assert np.asarray(nib.load(target).dataobj).max() == 3
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]


def _save_segmentation(folder, value: int, shape=(6, 6, 6), affine=None) -> None:
    import numpy as np
    from monai.data import MetaTensor
    from monai.transforms import SaveImage

    from semcl_components.bundle_runtime.atomic_io import AtomicITKWriter

    array = MetaTensor(torch.full((1, *shape), value, dtype=torch.uint8), affine=affine)
    array.meta["filename_or_obj"] = "seg.nii.gz"
    SaveImage(output_dir=folder, output_postfix="", separate_folder=False, writer=AtomicITKWriter, print_log=False,
              output_dtype=np.uint8)(array)


@pytest.mark.parametrize("kept_fraction", [0.0, 0.5])
def test_image_writer_on_a_full_disk_keeps_the_previous_segmentation_and_names_the_file(tmp_path, monkeypatch,
                                                                                         kept_fraction):
    """ITK does not raise when the disk fills up: it leaves an empty or cut file, which must never replace a good one."""
    import itk
    import nibabel as nib
    import numpy as np

    _save_segmentation(tmp_path, 3, shape=(20, 20, 20))
    target = tmp_path / "seg.nii.gz"
    real_imwrite = itk.imwrite

    def full_disk_imwrite(image, filename, *args, **kwargs):
        real_imwrite(image, filename, *args, **kwargs)
        with open(filename, "r+b") as written:
            written.truncate(int(os.path.getsize(filename) * kept_fraction))  # a full disk, and no error from ITK

    monkeypatch.setattr(itk, "imwrite", full_disk_imwrite)
    # MONAI's SaveImage reports a writer's error inside its own RuntimeError (with the writer's message)
    with pytest.raises(RuntimeError, match=r"could not write \S*seg\.nii\.gz: ITK wrote an incomplete file .* disk may be full"):
        _save_segmentation(tmp_path, 5, shape=(20, 20, 20))
    monkeypatch.setattr(itk, "imwrite", real_imwrite)
    assert np.asarray(nib.load(target).dataobj).max() == 3
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]


def test_a_full_disk_names_the_file_being_written(tmp_path):
    import errno

    target = tmp_path / "run_summary.json"
    target.write_text("{}")
    with pytest.raises(OSError, match="run_summary.json.*No space left on device.*free") as raised:
        with atomic_write(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert raised.value.errno == errno.ENOSPC
    assert target.read_text(encoding="utf-8") == "{}"


def test_read_json_names_a_truncated_file_and_the_way_out(tmp_path):
    from semcl_components.bundle_runtime.atomic_io import read_json

    path = tmp_path / "finetune_seed0.json"
    write_json_atomic({"config_hash": "abc", "test": {"dice": [[0.5, 0.7]]}}, path)
    assert read_json(path)["test"]["dice"] == [[0.5, 0.7]]
    path.write_text(path.read_text(encoding="utf-8")[:25])  # a copy cut short, a disk that filled up under another writer
    with pytest.raises(ValueError, match=rf"{path} is not valid JSON \(line \d+ column \d+: .*\): the file is cut short "
                                         r"or damaged\. Move it away to repeat that run\."):
        read_json(path, fix="Move it away to repeat that run.")


def test_read_json_names_a_missing_file(tmp_path):
    from semcl_components.bundle_runtime.atomic_io import read_json

    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'missing.json'} does not exist"):
        read_json(tmp_path / "missing.json")


@pytest.mark.parametrize("shape", [(32, 32, 1), (1, 32, 32), (1, 1, 1)])
def test_image_writer_keeps_single_slice_volumes_3d_with_their_spacing(tmp_path, shape):
    import nibabel as nib
    import numpy as np

    affine = np.diag([0.8, 0.9, 1.5, 1.0])
    affine[:3, 3] = [10.0, -20.0, 30.0]
    _save_segmentation(tmp_path, 2, shape=shape, affine=torch.as_tensor(affine))
    written = nib.load(tmp_path / "seg.nii.gz")
    assert written.shape == shape
    np.testing.assert_allclose(written.header.get_zooms(), [0.8, 0.9, 1.5])
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)
