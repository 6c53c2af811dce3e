"""Test Dice at fixed fractions of scratch's budget: a fine-tuning run's snapshots evaluated on the test split.

Time to accuracy is an endpoint of the v2 protocol (``docs/PROTOCOL.md``): besides the steps and seconds each arm
needs to reach scratch's best validation Dice (from every run's ``validation_points``), the test Dice each arm reaches
with a fixed fraction of the training scratch needed. "Scratch's budget" is, per seed and setting, the epoch of
scratch's best validation Dice (the model scratch is tested with); fraction ``f`` of it is the snapshot whose epoch is
nearest ``f`` times that epoch.

How, at little cost: every fine-tuning run of a size with ``budget_fractions`` keeps the network's weights at each
validation (``train.yaml``'s ``snapshot_interval``); after the run those nearest the fractions are evaluated here, in
one process, with the bundle's own validation pipeline (``validate#preprocessing`` and ``validate#inferer`` on the
test split, as ``evaluate.yaml`` reads it) and MONAI's ``DiceMetric`` (the bundle's ``MeanDice``); then the snapshots
are deleted. A run that stopped before a fraction's epoch (its plateau came earlier) is tested there with its final
best model, which is its ``model.pt``: recorded as ``"model": "best"``.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from semcl_tools.repository import CONFIGS

__all__ = ["budget_epochs", "evaluate_snapshots", "snapshot_files"]


def snapshot_files(folder: Path) -> dict[int, Path]:
    """``{epoch: file}`` of the snapshots a run kept in ``folder`` (``*_epoch=N.pt``)."""
    found = {}
    for path in folder.glob("*epoch=*.pt"):
        match = re.search(r"epoch=(\d+)\.pt$", path.name)
        if match:
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def budget_epochs(fractions: Sequence[float], scratch_epoch: int, snapshots: Sequence[int]) -> dict[float, int | None]:
    """For each fraction of ``scratch_epoch``, the nearest snapshot epoch (a tie: the earlier); ``None`` where the
    fraction's epoch lies beyond the run's last snapshot by more than half a snapshot interval (it stopped before)."""
    chosen: dict[float, int | None] = {}
    interval = snapshots[1] - snapshots[0] if len(snapshots) > 1 else (snapshots[0] if snapshots else 1)
    for fraction in fractions:
        target = fraction * scratch_epoch
        if not snapshots or target > snapshots[-1] + interval / 2:
            chosen[fraction] = None
            continue
        chosen[fraction] = min(snapshots, key=lambda epoch: (abs(epoch - target), epoch))
    return chosen


def evaluate_snapshots(files: dict, overrides: dict, threads: int = 1, device: str | None = None) -> dict:
    """Test Dice of each snapshot in ``files`` (``{epoch: weights file}``): ``{epoch: {"cases", "dice"}}``.

    Args:
        files: the snapshots (or a run's ``model.pt``) to evaluate, by any key.
        overrides: the run's bundle settings (data, datalist, network, ``roi_size``); the split is ``test``.
        threads: CPU threads.
        device: ``cpu`` or ``cuda`` (default: a GPU if there is one).
    """
    import torch
    from monai.bundle import ConfigParser
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    torch.set_num_threads(threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.yaml"))
    parser.read_meta(str(CONFIGS / "metadata.json"))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in overrides.items()}
    parser.update({"bundle_root": str(CONFIGS.parent), **settings, "val_key": "test"})
    parser["validate#dataset#progress"] = False  # in the benchmark's own process: no bar between its progress lines
    network = parser.get_parsed_content("network_def").to(device).eval()
    inferer = parser.get_parsed_content("validate#inferer")
    with warnings.catch_warnings():  # MONAI's notice of Orientationd's changed default, once per process
        warnings.simplefilter("ignore", FutureWarning)
        cases = list(parser.get_parsed_content("validate#dataset"))
    num_classes = parser.get_parsed_content("num_classes")
    metric = DiceMetric(include_background=False, reduction="none")
    results = {}
    for epoch, path in files.items():
        state = torch.load(path, map_location=device, weights_only=True)
        network.load_state_dict(state.get("model", state))
        dice = []
        with torch.no_grad():
            for case in cases:
                logits = inferer(case["image"][None].as_tensor().to(device), network)
                prediction = one_hot(logits.argmax(1, keepdim=True).cpu(), num_classes)
                label = one_hot(case["label"][None].as_tensor().round().long(), num_classes)
                dice.append([None if torch.isnan(v) else round(float(v), 6) for v in metric(prediction, label)[0]])
        results[epoch] = {"cases": [Path(case["image"].meta["filename_or_obj"]).name for case in cases], "dice": dice}
    return results
