"""The README's main command (scripts/demo.py) runs the whole pipeline end to end, here at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest

from conftest import run_captured

from semcl_benchmark import demo
from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.report import mean_dice
from semcl_benchmark.runner import Benchmark

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _demo(workdir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, ROOT / "scripts" / "demo.py", "--workdir", workdir, "--size", "quick"]
    return run_captured(command, cwd=workdir.parent, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_demo_runs_every_stage_and_prints_both_arms(tmp_path):
    run = _demo(tmp_path / "demo")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for stage in ("1/4 data", "2/4 pretrain and 3/4 finetune", "4/4 infer", "finished pretrain__semcl_exact__seed0",
                  "finished finetune__semcl_exact__finetune_1__seed0", "finished finetune__scratch__finetune_1__seed0"):
        assert stage in run.stdout
    report = (tmp_path / "demo" / "demo_report.txt").read_text(encoding="utf-8")
    assert "pretrained (semcl_exact)" in report and "scratch (random init)" in report
    rows = {line.split()[0]: line.split()[1:] for line in report.splitlines() if line.startswith(("spleen", "mean "))}
    assert set(rows) == {"spleen", "mean"} and all(len(values) == 3 for values in rows.values())  # 2 arms + difference
    # the quick size has no committed benchmark runs to compare with, and says so rather than inventing a finding
    assert "no committed run of this seed" in report and "no paired runs of semcl_exact and scratch" in report
    result = json.loads((tmp_path / "demo" / "results" / "finetune__scratch__finetune_1__seed0.json").read_text())
    assert set(result["test_summary"]["val_mean_dice"]) >= {"spleen", "liver"}
    predictions = list((tmp_path / "demo" / "predictions").glob("*_seg.nii.gz"))
    assert len(predictions) == 1 and nib.load(predictions[0]).shape == (32, 32, 24)  # the quick size's volumes

    again = _demo(tmp_path / "demo")  # rerunning is safe: finished runs are reused
    assert again.returncode == 0, again.stdout[-3000:]
    assert "3 of 3 runs finished already" in again.stdout and "0 to do now" in again.stdout


def test_demo_sets_its_run_beside_the_benchmarks_committed_runs(tmp_path):
    """At its default size (v1, until v2 runs are committed) the demo compares with the committed run of its seed and
    quotes the benchmark's finding."""
    import re

    assert demo.DEMO_SIZE == "v1"
    line = demo.benchmark_finding("v1", "semcl_exact", "finetune_2")
    assert re.fullmatch(r"The benchmark \(v1 size, \d+ paired seeds, docs/RESULTS_v1.md\): "
                        r"semcl_exact minus scratch on finetune_2 = "
                        r"[+-]\d\.\d{3} mean Dice \[95% CI [+-]\d\.\d{3}, [+-]\d\.\d{3}\], Wilcoxon p = \d\.\d{3}: "
                        r"(no )?significant gain\.", line), line
    bench = Benchmark(load_protocol().sizes["v1"], tmp_path / "results", tmp_path)
    planned = {r.key: r for r in bench.plan(["semcl_exact", "scratch"], ["finetune_2"], [0], study=[])}
    committed = demo.committed_run(planned["finetune__scratch__finetune_2__seed0"], "v1")
    assert committed is not None and committed["config"]["seed"] == 0 and 0.0 < mean_dice(committed) < 1.0
    changed = planned["finetune__scratch__finetune_2__seed0"]
    changed.config = {**changed.config, "seed": 99}  # another protocol or seed: nothing to compare with
    assert demo.committed_run(changed, "v1") is None
