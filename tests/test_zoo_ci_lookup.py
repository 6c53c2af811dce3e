"""Where the tests find the model zoo's CI, what they do without it, and ``scripts/get_zoo_ci.sh`` (all offline).

The lookup helpers of ``conftest`` take the environment and the ``shared/zoo-ci`` path as arguments, so these tests
use temporary folders and never depend on what this machine holds. The script's tests take the folder the other tests
use (the ``zoo_ci`` fixture: ``../shared/zoo-ci``, the copy the manifest was made from, where it exists), so they are
skipped without it and fail under ``CI=true``; its download is exercised with a stand-in ``curl`` that copies from that
folder: nothing touches the network.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (
    CONFIGS,
    ZOO_CI_REQUIRED,
    find_zoo_ci,
    holds_zoo_ci,
    require_zoo_ci,
    zoo_ci_cache,
    zoo_ci_candidates,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "get_zoo_ci.sh"
MANIFEST = ROOT / "scripts" / "zoo_ci.sha256"
ZOO_COMMIT = "dfae206df112837d817e78d3727c9f32b3b52e82"


def make_zoo_ci(folder: Path, names: tuple[str, ...] = ZOO_CI_REQUIRED) -> Path:
    """A stand-in zoo CI folder holding (empty) ``names``."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).touch()
    return folder


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``bash scripts/get_zoo_ci.sh <args>``, its stdout and stderr captured together."""
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60
    )


def manifest_paths() -> list[str]:
    """The relative paths ``scripts/zoo_ci.sha256`` lists."""
    return [line.split("  ", 1)[1] for line in MANIFEST.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------------------------------
# lookup order
# ---------------------------------------------------------------------------------------------------------------------


def test_semcl_zoo_ci_when_set_is_the_only_place_looked_in(tmp_path):
    explicit, shared = make_zoo_ci(tmp_path / "explicit"), make_zoo_ci(tmp_path / "shared")
    env = {"SEMCL_ZOO_CI": str(explicit), "HOME": str(tmp_path / "home")}
    assert zoo_ci_candidates(env, shared) == [explicit]
    assert find_zoo_ci(env, shared) == explicit
    env["SEMCL_ZOO_CI"] = str(tmp_path / "nonexistent")  # an explicit folder without the CI is not found: no fallback
    assert find_zoo_ci(env, shared) is None


def test_shared_folder_comes_before_the_user_cache(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    cache, shared = tmp_path / "xdg" / "semcl" / "zoo-ci", tmp_path / "shared"
    assert zoo_ci_candidates(env, shared) == [shared, cache]
    assert find_zoo_ci(env, shared) is None
    make_zoo_ci(cache)
    assert find_zoo_ci(env, shared) == cache
    make_zoo_ci(shared)
    assert find_zoo_ci(env, shared) == shared


@pytest.mark.parametrize("xdg", [None, ""])
def test_the_user_cache_defaults_to_dot_cache_in_home(tmp_path, xdg):
    env = {"HOME": str(tmp_path / "home")} | ({} if xdg is None else {"XDG_CACHE_HOME": xdg})
    assert zoo_ci_cache(env) == tmp_path / "home" / ".cache" / "semcl" / "zoo-ci"
    make_zoo_ci(zoo_ci_cache(env))
    assert find_zoo_ci(env, tmp_path / "shared") == zoo_ci_cache(env)


@pytest.mark.parametrize("name", ZOO_CI_REQUIRED)
def test_a_folder_counts_only_with_the_verify_script_and_the_schema(tmp_path, name):
    partial = make_zoo_ci(tmp_path / "partial", tuple(n for n in ZOO_CI_REQUIRED if n != name))
    assert not holds_zoo_ci(partial)
    assert find_zoo_ci({"SEMCL_ZOO_CI": str(partial)}, tmp_path / "shared") is None


# ---------------------------------------------------------------------------------------------------------------------
# without it: skip with a reason, or fail under CI=true
# ---------------------------------------------------------------------------------------------------------------------


def test_require_returns_the_folder_found(tmp_path):
    shared = make_zoo_ci(tmp_path / "shared")
    assert require_zoo_ci({"HOME": str(tmp_path / "home"), "CI": "true"}, shared) == shared


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_without_it_the_test_is_skipped_naming_the_places_and_how_to_get_it(tmp_path, ci):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")}
    if ci is not None:
        env["CI"] = ci
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_zoo_ci(env, tmp_path / "shared")
    reason = str(skipped.value)
    assert str(tmp_path / "shared") in reason and str(tmp_path / "xdg" / "semcl" / "zoo-ci") in reason
    assert "bash scripts/get_zoo_ci.sh" in reason and "SEMCL_ZOO_CI" in reason


def test_a_missing_explicit_folder_is_named_in_the_skip_reason(tmp_path):
    env = {"SEMCL_ZOO_CI": str(tmp_path / "nonexistent"), "HOME": str(tmp_path / "home")}
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_zoo_ci(env, make_zoo_ci(tmp_path / "shared"))
    assert str(tmp_path / "nonexistent") in str(skipped.value)
    assert str(tmp_path / "shared") not in str(skipped.value)


@pytest.mark.parametrize("ci", ["true", "TRUE", "True", "1"])
def test_under_ci_a_missing_zoo_ci_fails_naming_the_paths(tmp_path, ci):
    env = {"XDG_CACHE_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home"), "CI": ci}
    with pytest.raises(pytest.fail.Exception) as failed:
        require_zoo_ci(env, tmp_path / "shared")
    assert str(tmp_path / "shared") in str(failed.value)
    assert str(tmp_path / "xdg" / "semcl" / "zoo-ci") in str(failed.value)


# ---------------------------------------------------------------------------------------------------------------------
# scripts/get_zoo_ci.sh and its manifest
# ---------------------------------------------------------------------------------------------------------------------


def test_the_script_downloads_every_file_from_the_pinned_sources():
    listed = run_script("--list")
    assert listed.returncode == 0, listed.stdout
    urls = dict(line.split(" ", 1) for line in listed.stdout.splitlines())
    assert list(urls) == manifest_paths()
    schema_url = json.loads((CONFIGS / "metadata.json").read_text(encoding="utf-8"))["schema"]
    assert urls.pop("schema/meta_schema_20240725.json") == schema_url
    assert urls.pop("schema/LICENSE").startswith("https://raw.githubusercontent.com/Project-MONAI/project-monai")
    for path, url in urls.items():
        assert url == f"https://raw.githubusercontent.com/Project-MONAI/model-zoo/{ZOO_COMMIT}/{path}"


def test_the_manifest_lists_the_zoo_ci_folder_byte_for_byte(zoo_ci):
    files = {str(p.relative_to(zoo_ci)) for p in zoo_ci.rglob("*") if p.is_file()}
    assert set(manifest_paths()) == files - {"SOURCE.md"}
    checked = run_script("--check", str(zoo_ci))
    assert checked.returncode == 0, checked.stdout
    assert "matches" in checked.stdout


def test_check_fails_naming_a_file_with_one_byte_changed(zoo_ci, tmp_path):
    copy = Path(shutil.copytree(zoo_ci, tmp_path / "zoo-ci"))
    changed = copy / "ci" / "verify_bundle.py"
    data = bytearray(changed.read_bytes())
    data[100] ^= 0x01
    changed.write_bytes(bytes(data))
    checked = run_script("--check", str(copy))
    assert checked.returncode != 0
    assert "ci/verify_bundle.py: FAILED" in checked.stdout


def test_check_fails_naming_a_missing_file(zoo_ci, tmp_path):
    copy = Path(shutil.copytree(zoo_ci, tmp_path / "zoo-ci"))
    (copy / "schema" / "LICENSE").unlink()
    checked = run_script("--check", str(copy))
    assert checked.returncode != 0
    assert "schema/LICENSE" in checked.stdout


FAKE_CURL = """#!{python}
# stand-in curl: copies the file mapped to the URL (the last argument) to --output; a URL not mapped fails like curl
import json, os, shutil, sys
url, out = sys.argv[-1], sys.argv[sys.argv.index("--output") + 1]
source = json.loads(os.environ["FAKE_CURL_MAP"]).get(url)
if source is None:
    sys.exit(f"curl: (22) The requested URL returned error: 404 ({{url}})")
shutil.copyfile(source, out)
"""


def fake_curl_env(tmp_path: Path, sources: dict[str, Path]) -> dict[str, str]:
    """An environment whose ``curl`` serves ``sources`` (URL -> file), with the user cache in ``tmp_path/xdg``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    curl = bin_dir / "curl"
    curl.write_text(FAKE_CURL.format(python=sys.executable))
    curl.chmod(curl.stat().st_mode | stat.S_IXUSR)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "FAKE_CURL_MAP": json.dumps({url: str(path) for url, path in sources.items()}),
    }


def served_sources(source: Path) -> dict[str, Path]:
    """URL -> file of ``source`` for every file the script downloads."""
    listed = run_script("--list").stdout.splitlines()
    return {url: source / path for path, url in (line.split(" ", 1) for line in listed)}


def test_fetch_fills_the_user_cache_that_the_lookup_then_finds(zoo_ci, tmp_path):
    env = fake_curl_env(tmp_path, served_sources(zoo_ci))
    fetched = run_script(env=env)
    cache = tmp_path / "xdg" / "semcl" / "zoo-ci"
    assert fetched.returncode == 0, fetched.stdout
    assert str(cache) in fetched.stdout and "the tests find it there" in fetched.stdout
    assert run_script("--check", str(cache)).returncode == 0
    assert sorted(p.name for p in cache.parent.iterdir()) == ["zoo-ci"]  # no temporary folder left
    assert find_zoo_ci({"XDG_CACHE_HOME": str(tmp_path / "xdg")}, tmp_path / "shared") == cache
    again = run_script(env=env)
    assert again.returncode == 0 and "nothing downloaded" in again.stdout


@pytest.mark.parametrize("fault", ["corrupt", "unavailable"])
def test_a_bad_download_names_the_file_and_leaves_no_cache(zoo_ci, tmp_path, fault):
    source = Path(shutil.copytree(zoo_ci, tmp_path / "source"))
    sources = served_sources(source)
    schema_url = next(url for url, path in sources.items() if path.name == "meta_schema_20240725.json")
    if fault == "corrupt":
        sources[schema_url].write_text("{}\n")
    else:
        del sources[schema_url]
    dest = tmp_path / "cache" / "zoo-ci"
    fetched = run_script(str(dest), env=fake_curl_env(tmp_path, sources))
    assert fetched.returncode != 0
    assert "schema/meta_schema_20240725.json" in fetched.stdout
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # never a half-filled cache
