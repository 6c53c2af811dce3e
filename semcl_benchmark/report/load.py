"""Load: every finished run of a benchmark as one long table (pandas), read and validated once, and typed views of
the result fields the analysis reads.

Each result file is read as a run record (:func:`semcl_benchmark.run_records.parse_run_record`: a malformed file, or
one whose cases are not its seed's draw, is refused naming it). One row per file (:data:`COLUMNS`): the run key's
parts; the draw's ``labelled`` and ``pool`` case ids and whether they were ``reconstructed`` from the splits (v2 files
record the labelled and test cases only); ``record``, the file's JSON (layout: :mod:`semcl_benchmark.run_records`);
for fine-tuning and atlas runs ``cases`` (each test case's mean Dice, ``test.cases`` order) and ``mean_dice``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..plan import Run
from ..results import ResultStore
from ..run_records import RunRecord, TestScores, parse_run_record

__all__ = ["FileProvenance", "by_arm", "case_means", "case_phases", "deviations", "load_runs", "mean_dice",
           "provenance_of", "runs_of", "table"]

COLUMNS = ("key", "stage", "arm", "setting", "probe", "seed", "labelled", "pool", "reconstructed", "record", "cases",
           "mean_dice")
TESTED = ("finetune", "atlas")  # stages whose result holds per-case, per-organ test Dice


def case_means(test: dict) -> np.ndarray:
    """``(cases,)``: each test case's mean Dice over its organs (``test``: a result's test field)."""
    return TestScores.from_json(test).case_means()


def mean_dice(record: dict) -> float:
    """A run's mean test Dice: the mean over test cases of each case's mean organ Dice."""
    return TestScores.from_json(record["test"]).mean_dice


def _row(key: str, record: dict, draw=None) -> dict:
    config = record["config"]
    tested = config["stage"] in TESTED
    return {"key": key, "stage": config["stage"], "arm": config["arm"], "setting": config.get("setting"),
            "probe": bool(config.get("probe")), "seed": int(config["seed"]), "record": record,
            "labelled": None if draw is None else draw.labelled, "pool": None if draw is None else draw.pool,
            "reconstructed": None if draw is None else draw.reconstructed,
            "cases": case_means(record["test"]) if tested else None,
            "mean_dice": mean_dice(record) if tested else np.nan}


def table(records: Sequence[RunRecord] | dict[str, dict]) -> pd.DataFrame:
    """The long table of run records (or of ``{key: result file content}`` without a draw: results derived from
    records, such as the test Dice at budget fractions), sorted by key."""
    if isinstance(records, dict):
        rows = [_row(str(key), record) for key, record in records.items()]
    else:
        rows = [_row(r.key.name, r.to_json(), r.draw) for r in records]
    runs = pd.DataFrame(sorted(rows, key=lambda row: row["key"]), columns=list(COLUMNS))
    return runs.astype({"probe": bool, "seed": int})


def load_runs(planned: Sequence[Run], store: ResultStore) -> pd.DataFrame:
    """The finished runs among ``planned`` (their file holds their configuration hash), each read as a run record."""
    return table([parse_run_record(content, f"{key}.json") for key, content in store.load(planned).items()])


def runs_of(runs: pd.DataFrame, arm: str, setting: str | None = None, probe: bool = False,
            stage: str | None = None) -> dict[int, dict]:
    """``{seed: record}`` of one arm (and setting, probe; or one ``stage`` for pretraining and embedding runs)."""
    if stage is None:
        rows = runs[runs.stage.isin(TESTED) & (runs.arm == arm) & (runs.setting == setting) & (runs.probe == probe)]
    else:
        rows = runs[(runs.stage == stage) & (runs.arm == arm)]
    return dict(zip(rows.seed.astype(int), rows.record))


def by_arm(runs: pd.DataFrame, stage: str) -> dict[str, dict[int, dict]]:
    """``{arm: {seed: record}}`` of one stage's runs, the arms in table order."""
    return {arm: runs_of(runs, arm, stage=stage) for arm in dict.fromkeys(runs[runs.stage == stage].arm)}


DEVIATION_KEYS = ("text", "date", "reason")


def case_phases(result: dict) -> list[str | None] | None:
    """The phase bucket of each test case, in the order of ``test["cases"]``; ``None`` if not recorded."""
    phases = result["test"].get("contrast_phases")
    if phases is not None and len(phases) != len(result["test"]["cases"]):
        raise ValueError(f"result {result.get('key', '?')}: test.contrast_phases has {len(phases)} entries for "
                         f"{len(result['test']['cases'])} test cases; it must name the phase of every case, in order.")
    return None if phases is None else list(phases)


def deviations(size) -> list[dict]:
    """The size's recorded deviations from the protocol (``text``, ``date``, ``reason``; checked)."""
    entries = getattr(size, "deviations", None) or ()
    for index, entry in enumerate(entries):
        missing = [k for k in DEVIATION_KEYS if not isinstance(entry, Mapping) or not entry.get(k)]
        if missing:
            raise ValueError(f"size {size.name!r}: deviations[{index}] lacks {', '.join(missing)}; each deviation is "
                             f"a mapping {{text: what changed, date: YYYY-MM-DD, reason: why}}, got {entry!r}.")
    return [dict(entry) for entry in entries]


#: Where a result file came from: its commit, whether from a dirty tree, the encoder it loaded (SHA-256, the share of
#: its keys loaded) and whether that share is below 1.
FileProvenance = NamedTuple("FileProvenance", [("key", str), ("commit", str | None), ("dirty", bool),
                                               ("encoder_sha256", str | None), ("loaded_fraction", float | None),
                                               ("partial_load", bool)])


def provenance_of(key: str, result: dict) -> FileProvenance:
    """A result's provenance fields; a commit ending in ``+changes`` counts as from a dirty tree."""
    code, encoder = result.get("code"), result.get("encoder") or {}
    dirty = bool(result.get("allow_dirty")) or (code is not None and code.endswith("+changes"))
    loaded = encoder.get("loaded_fraction")
    return FileProvenance(key, None if code is None else code.removesuffix("+changes"), dirty, encoder.get("sha256"),
                          loaded, loaded is not None and loaded < 1)
