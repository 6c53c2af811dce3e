"""Load: every finished run of a benchmark as one long table (pandas), read and validated once.

Each result file is read as a typed run record (:func:`semcl_benchmark.run_records.parse_run_record`: a malformed
file, or one whose recorded cases are not its seed's draw, is refused naming it). One row per file: ``key``,
``stage``, ``arm``, ``setting``, ``probe``, ``seed``, the draw's ``labelled`` and ``pool`` case ids (a v2 file's pool
reconstructed from :mod:`semcl_benchmark.splits`), the file's ``record`` (its JSON: the fields of :mod:`.fields`) and
for fine-tuning and atlas runs ``cases`` (the case-mean test Dice, in the order of ``test.cases``) and ``mean_dice``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..plan import Run
from ..results import ResultStore
from ..run_records import RunRecord, parse_run_record

__all__ = ["COLUMNS", "case_means", "load_runs", "mean_dice", "runs_of", "table"]

COLUMNS = ("key", "stage", "arm", "setting", "probe", "seed", "labelled", "pool", "record", "cases", "mean_dice")
TESTED = ("finetune", "atlas")  # stages whose result holds per-case, per-organ test Dice


def case_means(test: dict) -> np.ndarray:
    """Mean Dice over the organs of every test case (``test["dice"]``: cases x organs, ``null`` for an absent organ)."""
    dice = np.array([[np.nan if v is None else v for v in row] for row in test["dice"]], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.nanmean(dice, axis=1)


def mean_dice(record: dict) -> float:
    """A run's mean test Dice: the mean over test cases of each case's mean organ Dice."""
    return float(np.nanmean(case_means(record["test"])))


def _row(key: str, record: dict, draw=None) -> dict:
    config = record["config"]
    tested = config["stage"] in TESTED
    return {"key": key, "stage": config["stage"], "arm": config["arm"], "setting": config.get("setting"),
            "probe": bool(config.get("probe")), "seed": int(config["seed"]), "record": record,
            "labelled": None if draw is None else draw.labelled, "pool": None if draw is None else draw.pool,
            "cases": case_means(record["test"]) if tested else None,
            "mean_dice": mean_dice(record) if tested else np.nan}


def table(records: Sequence[RunRecord] | dict[str, dict]) -> pd.DataFrame:
    """The long table of run records (or of ``{key: result file content}`` without a draw: results derived from
    records, such as the test Dice at budget fractions), sorted by key."""
    if isinstance(records, dict):
        rows = [_row(str(key), record) for key, record in records.items()]
    else:
        rows = [_row(r.key.name, r.to_json(), r.draw) for r in records]
    return pd.DataFrame(sorted(rows, key=lambda row: row["key"]), columns=list(COLUMNS))


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
