"""The recipe selection of benchmark v3 (``docs/PROTOCOL_v3.md``, section 5): each recipe arm's fine-tuning recipe,
chosen on the tuning seeds and written into the size's ``recipes`` entry of the protocol file.

Every arm of a size's ``recipe_arms`` runs each of its ``recipe_candidates`` on each tuning seed and labelled setting
it is planned in (run keys ending in the candidate's name: ``finetune__cascade_semcl__finetune_1__seed100__R2``). The
criterion: a candidate's score is the mean of its runs' best validation Dice (2 tuning seeds x 2 settings: 4 runs);
the chosen recipe is the earliest candidate (in the order of ``recipe_candidates``, the protocol's table) whose score
is within :data:`TIE` of the best. A candidate lacking a run is not scored: the selection is refused, naming the runs.
As for the runner, a run counts only while its result file holds the configuration the size plans for it now
(:func:`tuning_records`): a file of an older protocol counts as missing.

Command (after the tuning seeds' runs; writes the choice and the table into the file that defines the size, so the
runner lets the other seeds' runs of those arms start)::

    python -m semcl_benchmark.recipes --size v3 [--results DIR] [--workdir DIR] [--protocol FILE ...] [--arms ARM ...]
                                      [--dry-run]

A recorded choice is never replaced: a change after the main seeds' runs began is a deviation (section 12).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from semcl_components.bundle_runtime.atomic_io import atomic_write

from semcl_tools.repository import ROOT

from .protocol import BUILTIN_PROTOCOL, Protocol, Size, load_protocol
from .results import results_folder
from .run_records import RunKey, RunRecord

__all__ = ["TIE", "RecipeChoice", "check_records", "defining_file", "main", "select_recipes", "table", "tuning_keys",
           "tuning_records",
           "write_recipes"]

TIE = 0.005
"""Scores within this much of the best tie; a tie goes to the earlier candidate."""

#: the digits a candidate's score keeps in the protocol file
DIGITS = 4


@dataclass(frozen=True)
class RecipeChoice:
    """One arm's recipe selection: the chosen candidate and every candidate's mean best validation Dice over its
    tuning runs (in the candidates' order)."""

    arm: str
    chosen: str
    validation_dice: Mapping[str, float]

    def to_entry(self) -> dict:
        """The arm's entry in the size's ``recipes``: ``{chosen: NAME, validation_dice: {NAME: DICE, ...}}``."""
        return {"chosen": self.chosen,
                "validation_dice": {name: round(dice, DIGITS) for name, dice in self.validation_dice.items()}}


def tuning_keys(size: Size, protocol: Protocol, arm: str, candidate: str) -> list[RunKey]:
    """The runs that score ``candidate`` for ``arm``: a fine-tuning run on each tuning seed and labelled setting the
    size plans the arm in."""
    planned = protocol.arm(arm, size)
    return [RunKey("finetune", arm, setting, seed, tuning_recipe=candidate)
            for seed in size.tuning_seeds for setting in size.settings if size.plans(planned, setting, seed)]


def select_recipes(size: Size, protocol: Protocol, records: Iterable[RunRecord],
                   arms: Sequence[str] | None = None) -> dict[str, RecipeChoice]:
    """Each of ``arms`` (default: the size's ``recipe_arms``) with its recipe chosen from the tuning runs'
    ``records`` by the criterion of the module docstring.

    Raises:
        ValueError: an arm that chooses no recipe, a size without tuning seeds, or runs missing (or without a best
            validation Dice, or recording another recipe than their key's), naming every one.
    """
    arms = list(size.recipe_arms if arms is None else arms)
    other = [arm for arm in arms if arm not in size.recipe_arms]
    if other or not size.tuning_seeds:
        raise ValueError(f"size {size.name!r}: {', '.join(other) or 'no arm'} chooses no recipe (its recipe_arms: "
                         f"{', '.join(size.recipe_arms) or 'none'}; tuning seeds: {list(size.tuning_seeds)}).")
    by_key = {record.key: record for record in records}
    problems, choices = [], {}
    for arm in arms:
        scores = {}
        for candidate in size.recipe_candidates:
            keys = tuning_keys(size, protocol, arm, candidate)
            if not keys:
                problems.append(f"{arm} with {candidate} (the size plans no tuning run of it)")
            dice = [_best_dice(by_key.get(key), key, problems) for key in keys]
            if dice and None not in dice:
                scores[candidate] = sum(dice) / len(dice)
        if len(scores) == len(size.recipe_candidates):
            best = max(scores.values())
            chosen = next(name for name, score in scores.items() if score >= best - TIE - 1e-12)
            choices[arm] = RecipeChoice(arm, chosen, scores)
    if problems:
        raise ValueError(f"the recipe selection of size {size.name!r} needs every candidate's tuning runs; "
                         f"{len(problems)} are missing or unusable: " + "; ".join(problems))
    return choices


def tuning_records(size: Size, protocol: Protocol, results: Path, work: Path) -> list[RunRecord]:
    """The records of the tuning runs the size plans now (its recipe arms on its tuning seeds, every candidate) whose
    result files in ``results`` hold the run's configuration (:meth:`semcl_benchmark.results.ResultStore.records`).

    Raises:
        ValueError: the size's runs cannot be planned (e.g. a stage not built).
    """
    from .runner import Benchmark  # the runner plans through the stages' planner

    benchmark = Benchmark(size, results, work, protocol=protocol)
    planned = benchmark.plan(list(size.recipe_arms), list(size.settings), list(size.tuning_seeds), study=[])
    return benchmark.store.records([run for run in planned if run.key.tuning_recipe is not None])


def check_records(protocol: Protocol, size: Size, results: Path | None = None,
                  baseline_results: Path | None = None) -> tuple[Size, list[RunRecord]]:
    """The check size of ``size``'s ``recipe_check`` (v3's v2 recipe check, ``docs/PROTOCOL_v3.md`` section 4) and
    the records of its finished runs: its arms' fine-tuning runs on its seeds and tuning seeds (every candidate) whose
    result files in ``results`` (default: the check size's folder) hold the configuration the check plans now, and
    the baseline arm's fine-tuning runs of the baseline size on the check's seeds and settings, read from
    ``baseline_results`` (default: the baseline size's folder; committed runs, not run again).

    Raises:
        ValueError: ``size`` has no ``recipe_check``, or a size's runs cannot be planned.
    """
    from .runner import Benchmark  # the runner plans through the stages' planner

    if size.recipe_check is None:
        raise ValueError(f"size {size.name!r} has no recipe_check.")
    check = protocol.sizes[size.recipe_check["size"]]
    baseline = protocol.sizes[size.recipe_check["baseline_size"]]
    records = []
    for planned_size, arms, seeds, folder in (
            (check, list(check.arms), [*check.seeds, *check.tuning_seeds], results),
            (baseline, [size.recipe_check["baseline_arm"]], list(check.seeds), baseline_results)):
        folder = folder or results_folder(planned_size.name)
        benchmark = Benchmark(planned_size, folder, ROOT / "runs" / "benchmark" / planned_size.name, protocol=protocol)
        planned = benchmark.plan(arms, list(check.settings), seeds, study=[])
        records += benchmark.store.records([run for run in planned if run.key.stage == "finetune" and not
                                            run.config.get("probe")])
    return check, records


def _best_dice(record: RunRecord | None, key: RunKey, problems: list[str]) -> float | None:
    """A tuning run's best validation Dice; ``None`` (with the reason in ``problems``) where it cannot count."""
    if record is None:
        problems.append(f"{key.name} (no result file of its configuration)")
        return None
    recipe = record.pipeline.recipe
    if recipe is not None and recipe.name != key.tuning_recipe:
        problems.append(f"{key.name} (it records the recipe {recipe.name})")
        return None
    dice = record.result.best_validation_dice
    if isinstance(dice, bool) or not isinstance(dice, (int, float)) or not math.isfinite(dice):
        problems.append(f"{key.name} (no best validation Dice)")
        return None
    return float(dice)


# ------------------------------------------------------------------------------------------ the protocol file


def write_recipes(path: str | os.PathLike, size: Size, choices: Mapping[str, RecipeChoice]) -> str:
    """Write ``choices`` into the ``recipes:`` entry of ``size`` in the protocol file ``path``, keeping every other
    line (comments included) as it is; returns the file's new text.

    Only that entry's lines are replaced (a YAML block under the key, its leaves in flow style); the file is read
    back to check that it gives the size exactly these recipes.

    Raises:
        ValueError: the file has no ``recipes:`` entry under the size (``recipes: {}`` is where the selection
            writes), or already records another choice for one of the arms (a change after the main seeds' runs
            began is a deviation, section 12, made by hand).
    """
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    start, end, indent = _recipes_lines(lines, size.name, path)
    recorded = dict(size.recipes)
    for arm, choice in choices.items():
        if arm in recorded and recorded[arm] != choice.to_entry():
            raise ValueError(f"{path}: size {size.name!r} records the recipe {recorded[arm].get('chosen')!r} for "
                             f"{arm!r} already, and the selection gives {choice.chosen!r} "
                             f"({choice.to_entry()['validation_dice']}): a recorded choice is not replaced (a change "
                             "is a deviation, docs/PROTOCOL_v3.md section 12).")
        recorded[arm] = choice.to_entry()
    dumped = yaml.safe_dump({"recipes": recorded}, default_flow_style=None, sort_keys=False, width=100)
    block = "".join(" " * indent + line + "\n" for line in dumped.splitlines())
    text = "".join(lines[:start]) + block + "".join(lines[end:])
    written = yaml.safe_load(text)["sizes"][size.name].get("recipes")
    if written != recorded:  # never leave a file that says something else
        raise ValueError(f"{path}: the rewritten recipes entry would read as {written!r}, not {recorded!r}.")
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text


def _recipes_lines(lines: list[str], size_name: str, path: Path) -> tuple[int, int, int]:
    """The lines ``[start, end)`` of the size's ``recipes:`` entry and its indent."""

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip(" "))

    def content(line: str) -> bool:
        return bool(line.strip())

    sizes = next((i for i, line in enumerate(lines) if re.fullmatch(r"sizes:\s*", line)), len(lines))
    header = next((i for i in range(sizes + 1, len(lines))
                   if re.fullmatch(rf"\s+{re.escape(size_name)}:\s*", lines[i])), None)
    if header is not None:
        size_indent = indent(lines[header])
        stop = next((i for i in range(header + 1, len(lines))
                     if content(lines[i]) and indent(lines[i]) <= size_indent), len(lines))
        keys = [i for i in range(header + 1, stop) if content(lines[i]) and not lines[i].lstrip().startswith("#")]
        key_indent = min((indent(lines[i]) for i in keys), default=0)
        for i in keys:
            if indent(lines[i]) == key_indent and re.match(r"recipes:(\s|$)", lines[i].lstrip()):
                end = next((j for j in range(i + 1, stop)
                            if not content(lines[j]) or indent(lines[j]) <= key_indent), stop)
                return i, end, key_indent
    raise ValueError(f"{path}: size {size_name!r} has no 'recipes:' entry to write the selection into (add "
                     "'recipes: {}' to the size).")


def defining_file(size_name: str, files: Sequence[str | os.PathLike]) -> Path:
    """The protocol file whose entry defines the size: the last of the built-in protocol and ``files`` naming it."""
    defining = BUILTIN_PROTOCOL
    for path in map(Path, files):
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if size_name in (content.get("sizes") or {}):
            defining = path
    return defining


def table(size: Size, choices: Mapping[str, RecipeChoice]) -> str:
    """The selection as a Markdown table: one row per arm, a column per candidate, the chosen one in bold."""
    names = list(size.recipe_candidates)
    rows = ["| arm | " + " | ".join(names) + " | chosen |", "| --- |" + " ---: |" * len(names) + " --- |"]
    for arm, choice in choices.items():
        cells = [f"**{choice.validation_dice[n]:.4f}**" if n == choice.chosen else f"{choice.validation_dice[n]:.4f}"
                 for n in names]
        rows.append(f"| `{arm}` | " + " | ".join(cells) + f" | {choice.chosen} |")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m semcl_benchmark.recipes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", required=True, help="the size whose recipe arms choose (e.g. v3)")
    parser.add_argument("--results", type=Path, help="the tuning runs' result files (default: the size's committed "
                                                     "results folder, docs/results/benchmark/<size>)")
    parser.add_argument("--workdir", type=Path, help="the benchmark's work folder (default: runs/benchmark/<size>; "
                                                     "only its paths are planned, nothing is read or written there)")
    parser.add_argument("--protocol", nargs="+", default=[], help="protocol files over the built-in one")
    parser.add_argument("--arms", nargs="+", help="choose for these recipe arms only (default: every one)")
    parser.add_argument("--dry-run", action="store_true", help="print the table; write nothing")
    args = parser.parse_args(argv)
    try:
        protocol = load_protocol(args.protocol)
        if args.size not in protocol.sizes:
            parser.error(f"--size {args.size}: the protocol has the sizes {', '.join(protocol.sizes)}.")
        size = protocol.sizes[args.size]
        work = args.workdir or ROOT / "runs" / "benchmark" / size.name
        records = tuning_records(size, protocol, args.results or results_folder(size.name), work)
        choices = select_recipes(size, protocol, records, args.arms)
        print(table(size, choices))
        if not args.dry_run:
            path = defining_file(size.name, args.protocol)
            write_recipes(path, size, choices)
            print(f"[recipes] written into {path} (size {size.name!r}, recipes)")
    except (OSError, ValueError) as error:
        print(f"[recipes] {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
