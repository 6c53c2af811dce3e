"""Atomic file writing: a reader sees the old complete file or the new one, never a partial one."""

from __future__ import annotations

import pytest
import torch

from semcl_components.atomic_io import atomic_write, write_json_atomic


def test_write_json_atomic_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "summary.json"
    write_json_atomic({"a": 1}, target)
    write_json_atomic({"a": torch.tensor(2.5)}, target)
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"a":2.5}'
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

    from semcl_components.atomic_io import AtomicITKWriter

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
