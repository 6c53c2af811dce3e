"""The benchmark's --quick size end to end: every stage through the bundle, a result file per run, a report, resume.

The quick size exercises every path of the v2 protocol at a tiny size: realistic phantoms, seeds drawing their own
labelled volumes, an atlas arm, the upper bound, probes of a pretrained and of a random encoder, a capped run
continued, test Dice at fractions of scratch's budget, and the study."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_captured

from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.runner import Benchmark

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
PROTOCOL = load_protocol()

pytestmark = pytest.mark.slow


def run_benchmark(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--results",
        str(tmp_path / "results"),
        "--workdir",
        str(tmp_path / "work"),
        "--allow-dirty",  # a developer's checkout; the refusal of a dirty tree is tested in test_benchmark_provenance
        *extra,
    ]
    return run_captured(command, cwd=tmp_path, timeout=900)


def test_quick_benchmark_writes_results_and_a_report_and_resumes(tmp_path):
    first = run_benchmark(tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    results = sorted(p.name for p in (tmp_path / "results").glob("*.json"))
    assert results == [
        "atlas__atlas_body_box__finetune_1__seed0.json",
        "atlas__atlas_body_box__finetune_1__seed1.json",
        "atlas__atlas_body_box__finetune_all__seed0.json",
        "atlas__atlas_body_box__finetune_all__seed1.json",
        "embedding__scratch__seed0.json",
        "embedding__scratch__seed1.json",
        "embedding__semcl_exact__seed0.json",
        "embedding__semcl_exact__seed1.json",
        "finetune__scratch__finetune_1__seed0.json",
        "finetune__scratch__finetune_1__seed0__probe.json",  # a frozen random encoder
        "finetune__scratch__finetune_1__seed1.json",
        "finetune__scratch__finetune_all__seed0.json",  # the upper bound: scratch and the atlas only
        "finetune__scratch__finetune_all__seed1.json",
        "finetune__semcl_exact__finetune_1__seed0.json",
        "finetune__semcl_exact__finetune_1__seed0__probe.json",
        "finetune__semcl_exact__finetune_1__seed1.json",
        "finetune__semcl_exact_warmup__finetune_1__seed0.json",
        "pretrain__semcl_exact__seed0.json",
        "pretrain__semcl_exact__seed1.json",
    ]
    run = json.loads((tmp_path / "results" / "finetune__semcl_exact__finetune_1__seed0.json").read_text(encoding="utf-8"))
    assert run["config"]["arm"] == "semcl_exact" and run["config"]["seed"] == 0 and len(run["config_hash"]) == 16
    assert len(run["test"]["dice"]) == len(run["test"]["cases"]) >= 1
    assert run["test"]["classes"][:3] == ["spleen", "right kidney", "left kidney"]
    assert run["cost"]["train"]["seconds"] > 0 and run["cost"]["train"]["peak_memory_mb"] > 100
    assert 0 < run["cost"]["train"]["cpu_seconds"]  # the training process's own CPU time (contention shows as less)
    assert run["validation_curve"] and len(run["confusion_matrix"]["counts"]) == 9
    # v2: what the run learned from, what it loaded, how its budget went, its time-to-accuracy data
    other = json.loads((tmp_path / "results" / "finetune__semcl_exact__finetune_1__seed1.json").read_text(encoding="utf-8"))
    assert len(run["labelled_cases"]) == 1 and run["labelled_cases"][0]["contrast_phase"]
    assert run["labelled_cases"] != other["labelled_cases"]  # each seed draws its own labelled volume
    assert run["encoder"]["loaded_fraction"] == 1.0 and len(run["encoder"]["sha256"]) == 64
    assert run["allow_dirty"] is True and run["budget"]["max_epochs"][0] == 2
    assert [p["fraction"] for p in run["budget_fractions"]["points"]] == [0.25, 0.5, 1.0]
    scratch = json.loads((tmp_path / "results" / "finetune__scratch__finetune_1__seed0.json").read_text(encoding="utf-8"))
    assert run["budget_fractions"]["scratch_best_epoch"] == scratch["best_metric_epoch"]
    assert [p["step"] for p in run["validation_points"]][:2] == [1, 2] and run["validation_points"][0]["seconds"] > 0
    datalist = json.loads((tmp_path / "work" / "datalists" / "datalist_seed0.json").read_text(encoding="utf-8"))
    assert len(datalist["test"]) == 4 and len(datalist["finetune_all"]) == 4
    assert {e["contrast_phase"] for e in datalist["test"]} == {"native", "arterial", "portal_venous", "delayed"}
    atlas = json.loads((tmp_path / "results" / "atlas__atlas_body_box__finetune_1__seed0.json").read_text(encoding="utf-8"))
    assert atlas["test"]["cases"] == run["test"]["cases"] and atlas["labelled_cases"] == run["labelled_cases"]
    phases = {e["image"].rsplit("/", 1)[-1]: e["contrast_phase"] for e in datalist["test"]}
    assert run["test"]["contrast_phases"] == atlas["test"]["contrast_phases"] == [phases[c] for c in run["test"]["cases"]]
    pretrain = json.loads((tmp_path / "results" / "pretrain__semcl_exact__seed0.json").read_text(encoding="utf-8"))
    assert set(pretrain["collapse"]) >= {"effective_rank", "negative_cosine", "collapsed"}
    # every file records its seed's whole draw (labelled, pretraining pool, validation, test) and the schema version
    ids = {split: [e["image"].rsplit("/", 1)[-1].split(".")[0] for e in entries] for split, entries in datalist.items()}
    for record in (run, atlas, pretrain):
        assert record["schema_version"] == 4
        assert (record["draw"]["pool"], record["draw"]["validation"], record["draw"]["test"]) == (
            ids["pretrain"], ids["validation"], ids["test"])
    assert run["draw"]["labelled"] == [case["case"] for case in run["labelled_cases"]] == ids["finetune_1"]
    assert pretrain["draw"]["labelled"] == [] and pretrain["budget"]["steps"] == pretrain["history"][-1]["iteration"]
    report = (tmp_path / "results" / "RESULTS.md").read_text(encoding="utf-8")
    # a size with splits gets the v2 report, read from these very files: every section holds numbers
    assert report.startswith("# Benchmark results: quick size (protocol v2, `docs/PROTOCOL.md`)\n\n## Verdict (primary "
                             "endpoint)")
    assert "- finetune_1: `semcl_exact` vs `scratch`: **" in report and "2 paired seeds" in report
    embedding = json.loads((tmp_path / "results" / "embedding__semcl_exact__seed0.json").read_text(encoding="utf-8"))
    assert 0.0 <= embedding["knn_accuracy"] <= 1.0 and len(embedding["pca"]["xy"]) == sum(embedding["objects"].values())
    for section in (
        "## Deviations from the protocol",
        "## Diagnosis",
        "## Mean test Dice per arm",
        "## Primary endpoint",
        "## Per phase bucket",
        "## Time to accuracy",
        "## Frozen-encoder probe",
        "## Were the arms trained to their best?",
        "## Cost per run",
        "## Embedding quality",
        "## Shortcut study (finetune_1, seeds 0)",
        "## Plots",
        "## How this was made",
        "## Provenance of the result files",
    ):
        assert section in report
    numbers = r"[-+]?\d\.\d{3} \[[-+]?\d\.\d{3}, [-+]?\d\.\d{3}\]"  # an estimate and its interval
    assert re.search(r"- \*\*Headroom\.\*\* `scratch` with every training volume labelled \(`finetune_all`, \d seeds?\) reaches "
                     + numbers, report)
    assert re.search(r"\*\*Atlas `atlas_body_box` \(no training\)\.\*\* finetune_1: `scratch` minus `atlas_body_box` "
                     + numbers, report)
    assert re.search(r"\| finetune_1 \| `semcl_exact` \| `scratch` \| " + numbers, report)  # the primary endpoint
    for phase in ("native", "arterial", "portal_venous", "delayed"):  # one test case of each phase
        assert re.search(rf"\| {phase} \| finetune_1 \| `semcl_exact` \| `scratch` \| " + numbers, report)
    assert re.search(r"\| finetune_1 \| `semcl_exact` \| \d of 2 \(not reached: \d\) \|", report)  # steps to scratch's best
    for fraction in ("0.25", "0.5", "1"):  # test Dice at fractions of scratch's budget
        assert re.search(rf"\| finetune_1 @ {fraction} \| `semcl_exact` \| `scratch` \| " + numbers, report)
    assert re.search(r"\| `semcl_exact` \| \d+\.\d / \d\.\d\d \| \d+\.\d / \d\.\d\d \| \d of 2 \|", report)  # collapse
    assert "- 19 files from " in report and "Encoder recorded (SHA-256 and loaded share of its keys): 4 files" in report
    assert "| finetune__semcl_exact__finetune_1__seed0 | " in report
    assert "a `channel`/`pool` ratio of" in report  # the step cost of the two embedding modes, quoted from its file
    # the study arm fine-tunes semcl_exact's encoder of the same seed with an encoder warm-up
    study = json.loads((tmp_path / "results" / "finetune__semcl_exact_warmup__finetune_1__seed0.json").read_text(encoding="utf-8"))
    assert study["config"]["finetune"]["encoder_warmup_epochs"] == 80
    assert study["config"]["pretrain"] == run["config"]["pretrain"]
    row = next(line for line in report.splitlines() if line.startswith("| `semcl_exact_warmup` |"))
    assert "`encoder_warmup_epochs=80` (`semcl_exact`'s encoders)" in row
    assert (tmp_path / "results" / "plots" / "dice_vs_labelled_volumes.png").stat().st_size > 1000

    # a second call finds every run finished and only rewrites the report; a changed protocol would rerun them
    second = run_benchmark(tmp_path)
    assert second.returncode == 0, second.stdout[-3000:]
    assert "19 runs planned, 19 finished already, 0 to do now" in second.stdout


def _sized(size) -> bool:
    """Whether every training setting of a size is filled (v3's refine and pretrain: still to size, PROTOCOL_v3.md)."""
    return bool(size.finetune) and (size.stage1_pixdim is None or bool(size.refine and size.pretrain))


@pytest.mark.parametrize("name", sorted(n for n, size in PROTOCOL.sizes.items() if _sized(size)))  # v3_tiny, not v3
def test_every_planned_workflow_call_is_valid(tmp_path, name):
    """Arms that only the --full size (GPU) or the study runs, such as `semcl_weighted`, are checked here on CPU, with
    the size's arm settings (e.g. supervised pretraining's own budget), in every setting an arm may be planned in."""
    size = dataclasses.replace(PROTOCOL.sizes[name], setting_arms={})  # every arm in every setting it may be in
    benchmark = Benchmark(size, tmp_path / "results", tmp_path / "work")
    settings = list(dict.fromkeys([*size.settings, *(s for arm in PROTOCOL.arms.values() for s in arm.settings or ())]))
    # study arms as main arms; a v3 size (stage1_pixdim) plans v3's pipeline arms (their stage), the others the rest
    arms = [arm for arm in PROTOCOL.arms if (benchmark.planner.arm(arm).stage is None) == (size.stage1_pixdim is None)]
    planned = benchmark.plan(arms, settings, list(size.seeds), study=[])
    assert {run.config["arm"] for run in planned if run.config["stage"] in ("finetune", "atlas")} == set(arms)
    benchmark.check(planned)  # raises on an unknown setting or a value of the wrong kind


def test_an_invalid_setting_stops_the_benchmark_before_any_work(tmp_path):
    benchmark = Benchmark(PROTOCOL.sizes["quick"], tmp_path / "results", tmp_path / "work", allow_dirty=True)
    planned = benchmark.plan(["scratch"], ["finetune_1"], [0], study=[])
    planned[0].config["finetune"]["max_epoch"] = 5  # a typo of max_epochs
    with pytest.raises(ValueError, match=r"finetune__scratch__finetune_1__seed0: .*--max_epoch is not a setting .*"
                                         r"did you mean --max_epochs\?"):
        benchmark.run(planned)
    assert not (tmp_path / "work").exists() and not list((tmp_path / "results").glob("*.json"))


def test_gpu_runs_under_torchrun_take_each_workflows_multi_process_overlay(tmp_path):
    """``--nproc_per_node 2``: every bundle call has its workflow's multi_gpu overlay and is started by torchrun."""
    benchmark = Benchmark(PROTOCOL.sizes["full"], tmp_path / "results", tmp_path / "work", device="cuda", processes=2)
    planned = benchmark.plan(["scratch", "semcl_exact", "supervised"], ["finetune_1"], [0], study=[])
    calls = [call for run in planned for call in benchmark.planner.bundle_calls(run)]
    assert {tuple(call.configs) for call in calls} == {
        ("pretrain.yaml", "multi_gpu_pretrain.yaml"),
        ("train.yaml", "multi_gpu_train.yaml"),
        ("train.yaml", "evaluate.yaml", "multi_gpu_evaluate.yaml"),
    }
    assert all(call.processes == 2 and "device" not in call.overrides for call in calls)  # each rank picks its GPU
    assert all(call.overrides["roi_size"] == [96, 96, 96] for call in calls if "roi_size" in call.overrides)
    benchmark.check(planned)
    single = Benchmark(PROTOCOL.sizes["full"], tmp_path / "results", tmp_path / "work", device="cuda")
    (call, *_) = single.planner.bundle_calls(planned[0])
    assert call.overrides["device"] == "$torch.device('cuda')" and call.processes == 1


def test_the_difficulty_command_at_a_tiny_size(tmp_path):
    """Issue 20's measurement (``--size difficulty``: scratch and the atlases with 1, 4 and 8 labelled volumes), at a
    tiny size of the same layout: its report starts with the four criteria, each measured or waiting."""
    protocol = tmp_path / "tiny.yaml"
    protocol.write_text(
        "sizes:\n"
        "  tiny_difficulty:\n"
        "    base: quick\n"
        "    data: {preset: realistic, num: 20, size: [32, 32, 24], seed: 0}\n"
        "    splits: {test: 4, validation: 2, training_pool: 8, pretraining_pool: 2}\n"
        "    arms: [scratch, atlas, atlas_body_box, atlas_centroid]\n"
        "    settings: [finetune_1, finetune_4, finetune_8]\n"
        "    setting_arms: {}\n"
        "    seeds: [0]\n"
        "    probe_arms: []\n"
        "    study_arms: []\n"
        "    difficulty_criteria: true\n"
    )
    command = [sys.executable, str(SCRIPT), "--protocol", str(protocol), "--size", "tiny_difficulty", "--results",
               str(tmp_path / "results"), "--workdir", str(tmp_path / "work"), "--allow-dirty"]
    completed = run_captured(command, cwd=tmp_path, timeout=900)
    assert completed.returncode == 0, completed.stdout[-3000:]
    results = sorted(p.stem for p in (tmp_path / "results").glob("*.json"))
    assert [r for r in results if r.startswith("finetune__")] == [
        f"finetune__scratch__{s}__seed0" for s in ("finetune_1", "finetune_4", "finetune_8")]
    assert len([r for r in results if r.startswith("atlas__")]) == 9  # three atlases in three settings
    report = (tmp_path / "results" / "RESULTS.md").read_text(encoding="utf-8")
    assert report.startswith("# Benchmark results: tiny_difficulty size (protocol v2, `docs/PROTOCOL.md`)\n\n"
                             "## Difficulty criteria (issue 20: `scratch` and atlases only)")
    rows = [line for line in report.splitlines() if line.startswith("| ") and line.split("|")[1].strip().split()
            and line.split("|")[1].strip().split()[0] in ("Headroom", "Learning", "Coverage", "Cost")]
    assert len(rows) == 4
    for row in rows:  # every run a criterion needs has finished: each holds or fails, on the numbers shown
        assert row.endswith(("| **holds** |", "| **fails** |")), row
    assert "| finetune_1 | 1 |" in report and "| finetune_8 | 1 |" in report  # the cost table, every setting
