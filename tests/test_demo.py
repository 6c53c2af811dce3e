"""The README's main command (scripts/demo.py) runs the whole pipeline end to end, here at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib

ROOT = Path(__file__).resolve().parents[1]


def _demo(workdir: Path) -> subprocess.CompletedProcess:
    command = [
        sys.executable, str(ROOT / "scripts" / "demo.py"), "--workdir", str(workdir), "--data-dir", str(workdir / "data"),
        "--num", "6", "--size", "32", "32", "32", "--pretrain-patch", "32", "--roi", "32", "--init-filters", "8",
        "--pretrain-epochs", "1", "--finetune-epochs", "1", "--val-interval", "1", "--finetune-key", "finetune_2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, encoding="utf-8", errors="replace", cwd=workdir.parent, env=env, timeout=900)


def test_demo_runs_every_stage_and_prints_both_arms(tmp_path):
    run = _demo(tmp_path / "demo")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for stage in ("1/5 data", "2/5 pretrain", "3/5 finetune 1/2", "3/5 finetune 2/2", "4/5 evaluate", "5/5 infer"):
        assert stage in run.stdout
    report = (tmp_path / "demo" / "demo_report.txt").read_text()
    assert "pretrained (SemCL)" in report and "scratch (random init)" in report
    assert all(organ in report for organ in ("spleen", "liver", "pancreas", "mean"))
    for arm in ("semcl", "scratch"):
        summary = json.loads((tmp_path / "demo" / arm / "eval" / "evaluation_summary.json").read_text())
        assert set(summary["per_class"]["val_mean_dice"]) >= {"spleen", "liver"}
    predictions = list((tmp_path / "demo" / "predictions").glob("*_seg.nii.gz"))
    assert len(predictions) == 1 and nib.load(predictions[0]).shape == (32, 32, 32)

    again = _demo(tmp_path / "demo")  # rerunning is safe: finished stages are reused
    assert again.returncode == 0, again.stdout[-3000:]
    assert "reused existing" in again.stdout and "training had already finished" in (tmp_path / "demo" / "logs" / "finetune_semcl.log").read_text(encoding="utf-8")
