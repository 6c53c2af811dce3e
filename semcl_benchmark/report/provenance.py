"""Where each result file came from (benchmark v2): its commit, whether its tree was dirty, the encoder it loaded.

A run starts only from a committed tree unless ``--allow-dirty`` (recorded as ``allow_dirty``); v1's files mark a
dirty tree with ``+changes`` after the commit. Fine-tuning and embedding runs of a pretrained arm record the SHA-256 of
the encoder file they loaded and the share of its keys that loaded (see :mod:`.records`).
"""

from __future__ import annotations

from .records import provenance_of

__all__ = ["file_provenance"]


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
