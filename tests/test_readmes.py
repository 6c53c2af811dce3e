"""The READMEs keep the promises that users act on: the first screen's commands, the trust warning (issue 19, finding 12),
and links that resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUNDLE_README = ROOT / "bundles" / "abdomen_ct_semcl_segmentation" / "docs" / "README.md"


@pytest.mark.parametrize("readme", [ROOT / "README.md", BUNDLE_README], ids=["root", "bundle"])
def test_readme_warns_that_bundle_configs_run_python(readme):
    text = " ".join(readme.read_text(encoding="utf-8").split())
    assert "`$` expression" in text and "`$import`" in text
    assert "only from a source you trust" in text or "only from sources you trust" in text
    assert "weights_only=True" in text


def test_root_readme_opens_with_the_two_commands_that_ci_runs():
    first = ROOT.joinpath("README.md").read_text(encoding="utf-8").split("\n## ")[0]
    commands = re.search(r"```bash\n(.*?)```", first, re.S).group(1)
    assert "bash scripts/setup_env.sh && .venv/bin/python scripts/demo.py" in commands
    test_command = "bash scripts/setup_env.sh && .venv/bin/python -m pytest -q tests"
    assert test_command in commands
    assert test_command in ROOT.joinpath(".ci", "run").read_text(encoding="utf-8")


def test_root_readme_and_docs_link_only_files_that_exist():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)\)", page.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links {target}, which is missing"


@pytest.mark.parametrize("readme", [ROOT / "README.md", BUNDLE_README], ids=["root", "bundle"])
def test_benchmark_numbers_the_readmes_quote_are_in_the_report(readme):
    """Every number between ``<!-- benchmark-v2 -->`` markers is one that ``docs/RESULTS.md`` (written from the result
    files by ``scripts/benchmark.py --report-only``) prints: a README cannot quote a number the report does not give."""
    blocks = re.findall(r"<!-- benchmark-v2 -->(.*?)<!-- /benchmark-v2 -->", readme.read_text(encoding="utf-8"), re.S)
    assert blocks, f"{readme.relative_to(ROOT)} quotes no v2 benchmark numbers between markers"
    report = set(re.findall(r"\d+\.\d{3,4}\b", ROOT.joinpath("docs", "RESULTS.md").read_text(encoding="utf-8")))
    quoted = {number for block in blocks for number in re.findall(r"\d+\.\d{3,4}\b", block)}
    assert quoted, "the v2 block quotes no number"
    assert not quoted - report, f"{readme.relative_to(ROOT)} quotes {sorted(quoted - report)}, absent from docs/RESULTS.md"
