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
