"""The README's main command (scripts/demo.py) runs the whole pipeline end to end (here at a tiny size) and sets its run
beside the benchmark's committed seeds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from conftest import run_captured

from semcl_benchmark import demo
from semcl_benchmark.report import mean_dice

ROOT = Path(__file__).resolve().parents[1]


def _demo(workdir: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, ROOT / "scripts" / "demo.py", "--workdir", workdir, "--size", "quick"]
    return run_captured(command, cwd=workdir.parent, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_demo_runs_every_stage_and_shows_progress_not_epochs(tmp_path):
    run = _demo(tmp_path / "demo")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for stage in ("1/5 data", "2/5 pretrain and 3/5 finetune", "4/5 segment", "5/5 report",
                  "finished pretrain__semcl_exact__seed0", "finished finetune__semcl_exact__finetune_1__seed0"):
        assert stage in run.stdout
    # one progress line per stage: ignite's and MONAI's per-epoch lines stay in the runs' log files
    for per_epoch in ("Complete. Time taken", "Metrics --", "Epoch: 1/"):
        assert per_epoch not in run.stdout
        assert per_epoch in (tmp_path / "demo" / "logs" / "finetune__semcl_exact__finetune_1__seed0.log").read_text(encoding="utf-8")
    assert "finetune__semcl_exact__finetune_1__seed0 done in " in run.stdout and "val Dice" in run.stdout
    report = (tmp_path / "demo" / "demo_report.txt").read_text(encoding="utf-8")
    rows = {line.split()[0]: line.split()[1:] for line in report.splitlines() if line.startswith(("spleen", "mean "))}
    assert set(rows) == {"spleen", "mean"} and all(len(values) == 1 for values in rows.values())  # this run only
    # the quick size has no committed benchmark runs to set beside it, and says so rather than inventing a finding
    assert "no committed runs of semcl_exact on finetune_1 at the quick size" in report and "mean nothing" in report
    assert "difference" not in report  # no single-seed comparison between arms
    result = json.loads((tmp_path / "demo" / "results" / "finetune__semcl_exact__finetune_1__seed0.json").read_text(encoding="utf-8"))
    assert set(result["test_summary"]["val_mean_dice"]) >= {"spleen", "liver"}
    predictions = list((tmp_path / "demo" / "predictions").glob("*_seg.nii.gz"))
    assert len(predictions) == 1 and nib.load(predictions[0]).shape == (32, 32, 24)  # the quick size's volumes
    picture = tmp_path / "demo" / "segmentation.png"
    assert picture.is_file() and f"picture:     {picture}" in report
    assert Image.open(picture).size[0] > 100

    again = _demo(tmp_path / "demo")  # rerunning is safe: finished runs are reused
    assert again.returncode == 0, again.stdout[-3000:]
    assert "2 of 2 runs finished already" in again.stdout and "0 to do now" in again.stdout


def test_demo_sets_its_run_beside_the_benchmarks_committed_seeds():
    """At its default size (benchmark v2's) the demo's table holds the committed seeds' minimum, median and maximum
    for its arm and setting, and quotes the benchmark's primary test from the committed files."""
    assert (demo.DEMO_SIZE, demo.DEMO_ARM, demo.DEMO_SETTING) == ("default", "semcl_exact", "finetune_1")
    seeds = demo.committed_runs("default", "semcl_exact", "finetune_1")
    assert sorted(seeds) == list(range(8))
    table = demo.distribution_table(seeds[3], seeds).splitlines()
    assert table[0].split() == ["organ", "this", "run", "min", "median", "max"]
    means = sorted(mean_dice(result) for result in seeds.values())
    mean_row = [float(v) for v in table[-1].split()[1:]]
    assert mean_row == pytest.approx([mean_dice(seeds[3]), means[0], (means[3] + means[4]) / 2, means[-1]], abs=5e-4)
    assert means[0] <= mean_row[0] <= means[-1]


def test_demo_verdict_is_the_benchmarks_primary_test_recomputed_from_its_files():
    from scipy.stats import wilcoxon

    line = demo.benchmark_verdict("default", "semcl_exact", "finetune_1")
    match = re.fullmatch(r"The benchmark \(docs/RESULTS.md, 8 paired seeds\): semcl_exact minus scratch on finetune_1 = "
                         r"([+-]\d\.\d{3}) \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\] mean test Dice, Wilcoxon p = (\d\.\d{4}), "
                         r"Holm p = \d\.\d{4} over its 4 primary tests: (no significant difference|gain|loss)\.", line)
    assert match, line
    method = demo.committed_runs("default", "semcl_exact", "finetune_1")
    scratch = demo.committed_runs("default", "scratch", "finetune_1")
    differences = [mean_dice(method[s]) - mean_dice(scratch[s]) for s in range(8)]
    assert float(match.group(1)) == pytest.approx(np.mean(differences), abs=5e-4)
    assert float(match.group(2)) == pytest.approx(wilcoxon(differences).pvalue, abs=5e-5)
