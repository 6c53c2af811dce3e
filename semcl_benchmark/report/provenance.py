"""Where each result file came from (benchmark v2): its commit, whether its tree was dirty, the encoder it loaded;
and which planned runs have no result file yet.

A run starts only from a committed tree unless ``--allow-dirty`` (recorded as ``allow_dirty``); v1's files mark a
dirty tree with ``+changes`` after the commit. Fine-tuning and embedding runs of a pretrained arm record the SHA-256 of
the encoder file they loaded and the share of its keys that loaded (see :mod:`.records`).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..plan import Run
from .records import provenance_of

__all__ = ["file_provenance", "unfinished"]


def _seed_ranges(seeds: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    parts, start = [], None
    for i, seed in enumerate(seeds):
        start = seed if start is None else start
        if i + 1 == len(seeds) or seeds[i + 1] != seed + 1:
            parts.append(f"{start}" if start == seed else f"{start}-{seed}")
            start = None
    return ", ".join(parts)


def unfinished(planned: Sequence[Run], results: dict[str, dict]) -> list[str]:
    """The planned runs without a result file yet, grouped by stage, arm, setting and probe, with their seeds.

    The groups keep the order of their first run in ``planned`` (the run order), whether or not that run has finished,
    so a group's row stays in place while its seeds finish.
    """
    groups: dict[tuple[str, str, str], list[int]] = {}
    for run in planned:
        c = run.config
        where = c.get("setting") or ""
        where += " (probe)" if c.get("probe") else ""
        seeds = groups.setdefault((c["stage"], c["arm"], where), [])
        if run.key not in results:
            seeds.append(c["seed"])
    groups = {group: seeds for group, seeds in groups.items() if seeds}
    if not groups:
        return []
    rows = [f"| {stage} | `{arm}` | {where or '-'} | {_seed_ranges(sorted(seeds))} |"
            for (stage, arm, where), seeds in groups.items()]
    return ["<details><summary>Runs not finished yet (" + str(sum(map(len, groups.values()))) + ")</summary>", "",
            "| stage | arm | setting | seeds |", "| --- | --- | --- | --- |", *rows, "", "</details>", ""]


def file_provenance(results: dict[str, dict]) -> list[str]:
    """Counts of files from dirty trees, without a commit, and with their encoder recorded; then one row per file."""
    if not results:
        return []
    records = {key: provenance_of(result) for key, result in sorted(results.items())}
    dirty = [key for key, r in records.items() if r.dirty]
    unknown = [key for key, r in records.items() if r.commit is None]
    commits = sorted({r.commit for r in records.values() if r.commit})
    loads = [r for r in records.values() if r.encoder_sha256]
    partial = [key for key, r in records.items() if r.loaded_fraction is not None and r.loaded_fraction < 1]
    listed_dirty = f" ({', '.join(dirty)})." if dirty else "."
    lines = ["## Provenance of the result files", "",
             f"- {len(records)} files from {len(commits)} commit(s): {', '.join(commits) or '-'}.",
             f"- From a working tree with uncommitted changes: {len(dirty)}{listed_dirty}",
             f"- Without a recorded commit: {len(unknown)}.",
             f"- Encoder recorded (SHA-256 and loaded share of its keys): {len(loads)} files; loaded less than all "
             f"keys: {len(partial)}" + (f" ({', '.join(partial)})." if partial else "."),
             "", "<details><summary>Every result file</summary>", "",
             "| result file | commit | dirty tree | encoder SHA-256 | loaded share of keys |",
             "| --- | --- | --- | --- | --- |"]
    for key, r in records.items():
        fraction = "-" if r.loaded_fraction is None else f"{r.loaded_fraction:.3f}"
        lines.append(f"| {key} | {r.commit or 'not recorded'} | {'yes' if r.dirty else 'no'} | "
                     f"{(r.encoder_sha256 or '-')[:16]} | {fraction} |")
    return lines + ["", "</details>", ""]
