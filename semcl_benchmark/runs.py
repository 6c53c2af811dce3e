"""A planned run of the benchmark, the bundle workflow calls that do it, and where runs write.

A run is identified by its :class:`~semcl_benchmark.run_records.RunKey`; its configuration (and the hash of it) holds
everything that decides its result, so a result file counts only for exactly that configuration. The plan
(:mod:`semcl_benchmark.plan`, :mod:`semcl_benchmark.cascade_plan`) makes runs and their calls.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .run_records import RunKey

__all__ = ["BundleCall", "Run", "Workspace", "config_hash"]


def config_hash(config: dict) -> str:
    """A short hash of a run's configuration: a result file counts only for exactly this configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Run:
    """One planned run: its key (its name is the result file's), its configuration, and the runs it needs first.

    A key given by its name (``"finetune__scratch__finetune_1__seed0"``) is parsed into a :class:`RunKey`.
    """

    key: RunKey
    config: dict
    needs: list[RunKey] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.key = self.key if isinstance(self.key, RunKey) else RunKey.parse(self.key)

    @property
    def hash(self) -> str:
        return config_hash(self.config)


@dataclass(frozen=True)
class BundleCall:
    """One ``python -m monai.bundle run`` of a run: a name for messages, config files, overrides and log file, and the
    number of processes (``> 1``: started by ``torchrun``, with the workflow's ``multi_gpu_*`` overlay)."""

    name: str
    configs: list[str]
    overrides: dict
    log: Path
    processes: int = 1


@dataclass(frozen=True)
class Workspace:
    """Where a benchmark's runs write: ``<work>/data``, ``<work>/<stage>/<run key>`` and ``<work>/logs``."""

    work: Path

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    def folder(self, run: Run) -> Path:
        """Where a pretraining or fine-tuning run writes its checkpoints and outputs."""
        return self.work / run.key.stage / run.key.name

    def log(self, name: str | RunKey) -> Path:
        return self.work / "logs" / f"{name}.log"
