"""The benchmark's protocol as data: the committed results still count, and a user's file adds arms and sizes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semcl_benchmark.cli import main
from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.results import results_folder
from semcl_benchmark.run_records import RunKey
from semcl_benchmark.runner import Benchmark

USER_PROTOCOL = """
arms:
  semcl_wide: {mask_mode: dilate, dilate_radius: 6}
study_arms:
  semcl_wide_warmup: {encoder_of: semcl_wide, finetune: {encoder_warmup_epochs: 40}}
sizes:
  mine:
    base: quick
    pretrain: {max_epochs: 3}
    arms: [scratch, semcl_wide]
    study_arms: [semcl_wide_warmup]
"""


def plan(size_name: str, tmp_path: Path, protocol=None) -> tuple[Benchmark, list]:
    protocol = protocol or load_protocol()
    size = protocol.sizes[size_name]
    benchmark = Benchmark(size, results_folder(size.name), tmp_path / "work", protocol=protocol)
    return benchmark, benchmark.plan(list(size.arms), list(size.settings), list(size.seeds), study=list(size.study_arms))


def test_every_committed_run_of_the_v1_size_counts(tmp_path):
    """The protocol's data gives the configuration hashes of the committed result files: nothing is planned anew."""
    benchmark, planned = plan("v1", tmp_path)
    committed = sorted(results_folder("v1").glob("*.json"))
    assert len(planned) == len(committed) == 206
    assert [run for run in planned if not benchmark.finished(run)] == []


def test_the_v1_report_is_frozen(tmp_path, capsys):
    """Version 1's report is a frozen file beside its result files (issue 34): ``--size v1 --report-only`` writes no
    report and says why, and docs/RESULTS_v1.md is left as committed."""
    report = tmp_path / "RESULTS_v1.md"
    arguments = ["--size", "v1", "--report-only", "--results", str(results_folder("v1")), "--report", str(report)]
    assert main(arguments) == 2
    assert not report.exists() and "version 1's report is frozen" in capsys.readouterr().err


def test_a_user_file_adds_an_arm_a_study_arm_and_a_size(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(USER_PROTOCOL)
    protocol = load_protocol([path])
    assert "semcl_exact" in protocol.arms and protocol.arms["semcl_wide_warmup"].study
    size = protocol.sizes["mine"]
    quick = protocol.sizes["quick"]
    assert size.pretrain == {**quick.pretrain, "max_epochs": 3} and size.network == quick.network
    assert size.seeds == quick.seeds and size.arms == ("scratch", "semcl_wide")
    _, planned = plan("mine", tmp_path, protocol)
    runs = {run.key.name: run for run in planned}
    pretrain = runs["pretrain__semcl_wide__seed0"].config
    assert pretrain["arm_settings"] == {"mask_mode": "dilate", "dilate_radius": 6} and pretrain["pretrain"]["max_epochs"] == 3
    study = runs["finetune__semcl_wide_warmup__finetune_1__seed0"].config
    assert study["pretrain"] == pretrain and study["finetune"]["encoder_warmup_epochs"] == 40


def test_changing_an_arm_makes_its_runs_count_as_not_done(tmp_path):
    path = tmp_path / "changed.json"
    path.write_text(json.dumps({"arms": {"semcl_coarse": {"mask_mode": "dilate", "dilate_radius": 2}}}))
    benchmark, planned = plan("v1", tmp_path, load_protocol([path]))
    redo = {run.key for run in planned if not benchmark.finished(run)}
    # its pretraining, embedding, fine-tuning and probe runs: 8 seeds x (1 + 1 + 2 settings) + 3 probes
    assert len(redo) == 35 and all(key.arm == "semcl_coarse" for key in redo)


def test_retuning_the_realistic_preset_makes_its_runs_count_as_not_done(tmp_path, monkeypatch):
    """A run on phantoms of another tuning is another run: the preset's fingerprint is in every run's configuration."""
    from dataclasses import replace

    import semcl_phantoms.phantoms as phantoms

    benchmark, planned = plan("difficulty", tmp_path)
    fingerprint = phantoms.preset_fingerprint("realistic")
    assert fingerprint and all(run.config["data"]["preset_fingerprint"] == fingerprint for run in planned)
    monkeypatch.setattr(phantoms, "REALISTIC", replace(phantoms.REALISTIC, noise_sd_hu=(5.0, 10.0)))
    _, retuned = plan("difficulty", tmp_path)
    assert {run.key for run in retuned} == {run.key for run in planned}
    assert not {run.hash for run in retuned} & {run.hash for run in planned}


def test_the_default_size_plans_the_fixed_protocols_runs(tmp_path):
    """docs/PROTOCOL.md, sections 3 and 8: every arm at 1 and 2 labelled volumes and 8 seeds; at 4 the method, the
    paper's setting and scratch; the upper bound (scratch) on seeds 0-2 only; the probes at 1 volume on seeds 0-2."""
    _, planned = plan("default", tmp_path)
    finetunes = [run.config for run in planned if run.config["stage"] == "finetune"]

    def arms(setting: str, probe: bool = False) -> set[str]:
        return {c["arm"] for c in finetunes if c["setting"] == setting and c["probe"] == probe}

    trained = {"scratch", "simclr", "supervised", "semcl_exact", "semcl_coarse"}
    assert arms("finetune_1") == arms("finetune_2") == trained
    assert arms("finetune_4") == {"scratch", "semcl_exact", "semcl_coarse", "semcl_labelled"}
    assert arms("finetune_all") == {"scratch"} and arms("finetune_1", probe=True) == trained
    assert sorted(c["seed"] for c in finetunes if c["setting"] == "finetune_all") == [0, 1, 2]
    assert sorted(c["seed"] for c in finetunes if c["arm"] == "scratch" and c["setting"] == "finetune_4") == list(range(8))
    assert sorted({c["seed"] for c in finetunes if c["probe"]}) == [0, 1, 2]
    assert len(finetunes) == 8 * (5 + 5 + 4) + 3 + 3 * 5


def test_every_planned_run_is_keyed_by_its_configuration_and_needs_only_planned_runs(tmp_path):
    benchmark, planned = plan("default", tmp_path)
    keys = {run.key for run in planned}
    assert len(keys) == len(planned) and all(RunKey.of_config(run.config) == run.key for run in planned)
    for run in planned:  # its encoder's pretraining, and for time to accuracy scratch's run of its setting and seed
        for need in run.needs:
            assert need in keys and need != run.key
            assert need.stage == "pretrain" or need == benchmark.planner.scratch_key(run.key.setting, run.key.seed)


@pytest.mark.parametrize(
    "content, message",
    [
        ("sizes: {mine: {base: quick, arms: [scratch, semcl_typo]}}", r"mine.yaml: size 'mine': unknown arm 'semcl_typo'"),
        ("sizes: {mine: {base: tiny}}", r"size 'mine': base 'tiny' is not another size"),
        ("sizes: {mine: {arms: [scratch]}}", r"size 'mine': .*missing .* required"),
        ("arms: {semcl_x: {encoder_of: scratch}}", r"arm 'semcl_x': encoder_of must name an arm that pretrains"),
        ("arms: {semcl_x: {workflow: infer.yaml}}", r"arm 'semcl_x': workflow must be one of"),
        ("arm: {semcl_x: {}}", r"unknown section\(s\) \['arm'\]"),
        ("sizes: {mine: {base: v3, recipe_check: {size: v3_recipe_check, baseline_size: v2}}}",
         r"size 'mine': recipe_check must name the check's size, its baseline's size"),
        ("sizes: {mine: {base: quick, setting_seeds: {finetune_all: 3}}}", r"size 'mine': setting_seeds: finetune_all: "
                                                                            r"3 is not a list of seeds"),
    ],
)
def test_a_malformed_user_file_is_refused_naming_file_and_entry(tmp_path, content, message):
    path = tmp_path / "mine.yaml"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_protocol([path])


def test_the_command_line_plans_and_reports_a_size_of_a_user_file(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text(USER_PROTOCOL)
    results = tmp_path / "results"
    arguments = ["--protocol", str(path), "--size", "mine", "--results", str(results), "--workdir", str(tmp_path)]
    assert main([*arguments, "--report-only"]) == 0
    report = (results / "RESULTS.md").read_text(encoding="utf-8")
    assert report.startswith("# Benchmark results: mine size") and "Runs finished: 0 of 14 planned" in report
    assert f"`python scripts/benchmark.py --size mine --protocol {path}`" in report
    with pytest.raises(SystemExit):
        main([*arguments, "--arms", "semcl_nothing", "--report-only"])
    assert "unknown arm(s) semcl_nothing" in capsys.readouterr().err


def test_a_cut_result_file_counts_as_unfinished_and_is_named(tmp_path, capsys):
    """Issue 19, finding 11: ``--report-only`` with one truncated result file crashed naming no file."""
    from semcl_benchmark.results import ResultStore

    benchmark, planned = plan("v1", tmp_path)
    store = ResultStore(tmp_path / "results")
    store.folder.mkdir()
    run = planned[0]
    committed = results_folder("v1") / store.file(run).name
    store.file(run).write_text(committed.read_text(encoding="utf-8")[:100])
    assert store.read(run) is None
    assert f"{store.file(run)} is not valid JSON" in capsys.readouterr().err
    store.file(run).write_text(committed.read_text(encoding="utf-8"))
    assert store.read(run).settings.config_hash == run.hash
