"""A user's dataset folder is given to the bundle as data (issue 35 item 4): its path was put inside a config
expression (``$@semcl_components.bundle_runtime.labels.class_names('<path>/dataset.json')``), so a folder name with ``'`` broke
every run with a SyntaxError and a crafted one ran its code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_benchmark_user_data import CLASSES, TINY, write_dataset

from semcl_benchmark.protocol import load_protocol
from semcl_benchmark.runner import Benchmark

ROOT = Path(__file__).resolve().parents[1]
NAMES = {
    "quote": "it's data",
    # the old expression became class_names('<tmp>/x'+str(os.system('touch $SEMCL_MARKER'))+'/dataset.json'): the
    # configs import os (a name with the word "import" in it would have been stopped by MONAI's import-statement check)
    "crafted": "x'+str(os.system('touch $SEMCL_MARKER'))+'",
}


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the crafted name's command would create (``$SEMCL_MARKER``, for this process and its children)."""
    path = tmp_path / "MARKER"
    monkeypatch.setenv("SEMCL_MARKER", str(path))
    return path


def tiny_benchmark(tmp_path: Path, data: Path) -> Benchmark:
    protocol = tmp_path / "tiny.yaml"
    protocol.write_text(TINY)
    loaded = load_protocol([protocol])
    return Benchmark(
        loaded.sizes["tiny"],
        tmp_path / "results",
        tmp_path / "work",
        protocol=loaded,
        dataset_dir=data,
        device="cpu",
        allow_dirty=True,
    )


@pytest.mark.parametrize("name", sorted(NAMES))
def test_every_bundle_call_gets_the_dataset_path_as_data(tmp_path, marker, name):
    """The calls of a scratch run are planned and checked, and each one's classes read as its workflow reads them
    (its configs with its overrides): the dataset's own classes, and the crafted name runs nothing."""
    from monai.bundle import ConfigParser

    from semcl_tools.repository import CONFIGS

    data = tmp_path / NAMES[name]
    write_dataset(data)
    benchmark = tiny_benchmark(tmp_path, data)
    planned = benchmark.plan(["scratch"], ["finetune_1"], [0])
    benchmark.check(planned)
    calls = [call for run in planned for call in benchmark.planner.bundle_calls(run)]
    assert calls
    for call in calls:
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / config) for config in call.configs])
        classes = {k: str(v) for k, v in call.overrides.items() if k in ("labels_json", "class_names", "dataset_dir")}
        parser.update({"bundle_root": str(CONFIGS.parent), **classes})
        try:
            assert parser.get_parsed_content("class_names") == [CLASSES[k] for k in sorted(CLASSES) if k != "0"]
        finally:
            assert not marker.exists(), "the folder name ran as code"
        assert call.overrides["labels_json"] == str(data / "dataset.json")
        expressions = [v for v in call.overrides.values() if isinstance(v, str) and v.startswith("$")]
        assert not [v for v in expressions if NAMES[name] in v], expressions  # no path inside an expression


@pytest.mark.slow
def test_the_benchmark_runs_on_a_dataset_whose_folder_name_is_crafted(tmp_path, marker):
    """``scripts/benchmark.py --dataset_dir`` on a folder named like code: one scratch run (training and its test) and
    the report; nothing the name spells runs."""
    data = tmp_path / NAMES["crafted"]
    write_dataset(data)
    (tmp_path / "tiny.yaml").write_text(TINY)
    results = tmp_path / "results"
    command = [
        sys.executable,
        ROOT / "scripts" / "benchmark.py",
        "--protocol",
        tmp_path / "tiny.yaml",
        "--size",
        "tiny",
        "--dataset_dir",
        data,
        "--results",
        results,
        "--workdir",
        tmp_path / "work",
        "--arms",
        "scratch",
        "--allow-dirty",
        "--device",
        "cpu",
        "--jobs",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([str(c) for c in command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    run = json.loads((results / "finetune__scratch__finetune_1__seed0.json").read_text(encoding="utf-8"))
    assert run["test"]["classes"] == ["core", "shell", "vessel"]
    assert not marker.exists()
