"""Whether every arm was trained to its best: runs stopped at their budget cap while still improving, contrastive
pretraining that collapsed, supervised pretraining's best epoch against its last.

A run *ends at its cap while still improving* when it used all its epochs and its best validation came after the start
of the last patience window (later than ``epochs - early_stop_patience * val_interval``: early stopping had not yet
ended it; without early stopping, at the last epoch).
The protocol (``docs/PROTOCOL.md``) forbids such runs in a finished benchmark: size the budget, or rerun them larger.

A run's cap is its last one: a run extended by the size's ``budget_extensions`` records its caps (``budget``, see
:mod:`.records`).

A contrastive pretraining *collapsed* as its result file says (``collapse``: the rule of
:data:`semcl_benchmark.stages.COLLAPSE` on its last epoch's effective rank and negative cosine); it is *near collapse*
when not collapsed but its negative cosine is at least :data:`NEAR_COLLAPSE_NEGATIVE_COSINE` or its embeddings span
fewer than :data:`NEAR_COLLAPSE_RANK` effective dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .records import collapse_record, epoch_cap, epoch_caps

__all__ = [
    "NEAR_COLLAPSE_NEGATIVE_COSINE",
    "NEAR_COLLAPSE_RANK",
    "Budget",
    "baselines_at_their_best",
    "capped_while_improving",
    "collapse",
    "contrastive_runs",
    "finetune_budget",
    "pretrain_budget",
]

NEAR_COLLAPSE_NEGATIVE_COSINE = 0.5
NEAR_COLLAPSE_RANK = 4.0


@dataclass(frozen=True)
class Budget:
    """How a run used its epoch budget: epochs done, the cap, the best validation's epoch, the patience window."""

    epochs: int | None
    max_epochs: int | None
    best_epoch: int | None
    window: int  # epochs before the end in which a best validation means "still improving" (0: the last one)


def finetune_budget(result: dict) -> Budget:
    """A fine-tuning run's budget from its result and configuration."""
    settings = result["config"].get("finetune") or {}  # an atlas has none
    patience = settings.get("early_stop_patience")
    window = patience * settings.get("val_interval", 1) if patience else 0
    cap = epoch_cap(result) or settings.get("max_epochs")
    return Budget(result.get("epochs"), cap, result.get("best_metric_epoch"), window)


def pretrain_budget(result: dict) -> Budget | None:
    """A pretraining run's budget when it validates (supervised pretraining); ``None`` otherwise."""
    summary = result["summary"]
    if summary.get("best_metric_epoch") is None:
        return None
    config = result["config"]
    settings = {**(config.get("pretrain") or {}), **(config.get("arm_settings") or {})}  # the arm's over the size's
    patience, interval = settings.get("early_stop_patience"), settings.get("val_interval", 1)
    cap = epoch_cap(result) or summary.get("max_epochs", settings.get("max_epochs"))
    window = patience * interval if patience else 0
    return Budget(summary.get("epochs_completed"), cap, summary["best_metric_epoch"], window)


def capped_while_improving(budget: Budget) -> tuple[bool, bool]:
    """``(ended at its cap, still improving there)`` of a run's budget."""
    if budget.epochs is None or budget.max_epochs is None:
        return False, False
    capped = budget.epochs >= budget.max_epochs
    if not capped or budget.best_epoch is None:
        return capped, False
    # with a patience window, a best validation at its very start would have stopped the run at this epoch anyway
    improving = budget.best_epoch > budget.epochs - budget.window if budget.window else budget.best_epoch >= budget.epochs
    return capped, improving


def collapse(record: dict) -> str:
    """``collapsed``, ``near collapse`` or ``no`` from a contrastive pretraining's ``collapse`` record."""
    if record["collapsed"]:
        return "collapsed"
    negative, rank = record.get("negative_cosine"), record["effective_rank"]
    if (negative is not None and negative >= NEAR_COLLAPSE_NEGATIVE_COSINE) or rank < NEAR_COLLAPSE_RANK:
        return "near collapse"
    return "no"


def contrastive_runs(pretrains) -> dict[str, dict[int, dict]]:
    """``{arm: {seed: collapse record}}`` of the pretraining arms whose runs record their collapse monitors."""
    records = {arm: {s: r for s, result in runs.items() if (r := collapse_record(result))}
               for arm, runs in pretrains.items()}
    return {arm: runs for arm, runs in records.items() if runs}


def _caps(finetunes, pretrains) -> list[str]:
    rows, improving_keys, extended_keys = [], [], []
    groups = [((arm, setting, probe), runs, finetune_budget) for (arm, setting, probe), runs in finetunes.items()]
    groups += [((arm, "pretraining", False), runs, pretrain_budget) for arm, runs in pretrains.items()]
    for (arm, setting, probe), runs, budget_of in sorted(groups, key=lambda g: (g[0][1], g[0][0], g[0][2])):
        flags = [(seed, capped_while_improving(b)) for seed, r in sorted(runs.items()) if (b := budget_of(r))]
        if not flags:
            continue
        capped = sum(c for _, (c, _) in flags)
        improving = [seed for seed, (_, i) in flags if i]
        at_last = sum(b.best_epoch is not None and b.best_epoch >= b.epochs for s, r in runs.items()
                      if (b := budget_of(r)) and capped_while_improving(b)[0])
        name = f"`{arm}` {setting}{' probe' if probe else ''} seed"
        improving_keys += [f"{name} {s}" for s in improving]
        extended_keys += [f"{name} {s} (caps {caps}, best epoch {b.best_epoch} of {b.epochs})"
                          for s, r in sorted(runs.items()) if len(caps := epoch_caps(r)) > 1 and (b := budget_of(r))]
        if capped:
            rows.append(f"| {setting} | `{arm}`{' (probe)' if probe else ''} | {len(flags)} | {capped} | "
                        f"{len(improving)} | {at_last} |")
    total = sum(r.get("stage") != "atlas" for runs in finetunes.values() for r in runs.values())
    lines = ["Runs that used their whole epoch budget, and those whose best validation came within the last patience "
             "window (still improving at the cap).", ""]
    if extended_keys:
        lines += [f"Budget doubled, as the protocol fixes for a run still improving at its cap ({len(extended_keys)}; "
                  f"the table below judges each at its last cap): {', '.join(extended_keys)}.", ""]
    if not rows:
        return lines + [f"None of the {total} fine-tuning runs (nor a validating pretraining) ended at its cap.", ""]
    lines += ["| setting | arm | runs | at the cap | still improving | best at the last epoch |",
              "| --- | --- | --- | --- | --- | --- |", *rows, ""]
    if improving_keys:
        lines += [f"Still improving at the cap ({len(improving_keys)}; the protocol asks for a rerun with a larger "
                  f"budget): {', '.join(improving_keys)}.", ""]
    else:
        lines += ["None was still improving at its cap.", ""]
    return lines


def _collapse_table(pretrains) -> list[str]:
    contrastive = contrastive_runs(pretrains)
    if not contrastive:
        return []
    rule = next(iter(next(iter(contrastive.values())).values())).get("rule") or {}
    seeds = sorted({s for runs in contrastive.values() for s in runs})
    lines = [f"Contrastive pretraining per seed at its last epoch: effective rank / negative cosine (collapsed, as the "
             f"run recorded it: effective rank < {rule.get('min_effective_rank', '?')} or negative cosine > "
             f"{rule.get('max_negative_cosine', '?')}; near collapse: negative cosine >= "
             f"{NEAR_COLLAPSE_NEGATIVE_COSINE} or effective rank < {NEAR_COLLAPSE_RANK:g}).", "",
             "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " | collapsed | near collapse |",
             "| --- |" + " --- |" * (len(seeds) + 2)]
    for arm, runs in contrastive.items():
        cells = [_monitors(runs[s]) if s in runs else "-" for s in seeds]
        states = [collapse(r) for r in runs.values()]
        lines.append(f"| `{arm}` | " + " | ".join(cells) + f" | {states.count('collapsed')} of {len(runs)} | "
                     f"{states.count('near collapse')} of {len(runs)} |")
    return lines + [""]


def _monitors(record: dict) -> str:
    negative = record.get("negative_cosine")
    return f"{record['effective_rank']:.1f} / " + ("-" if negative is None else f"{negative:.2f}")


def _supervised_table(pretrains) -> list[str]:
    validating = {arm: {s: r for s, r in runs.items() if pretrain_budget(r)} for arm, runs in pretrains.items()}
    validating = {arm: runs for arm, runs in validating.items() if runs}
    if not validating:
        return []
    lines = ["Pretraining that validates (supervised): best validation epoch against the last epoch.", "",
             "| arm | best epoch = last epoch | best epoch (median) | epochs done (median) | best validation Dice "
             "(mean) | seeds |", "| --- | --- | --- | --- | --- | --- |"]
    for arm, runs in validating.items():
        summaries = [r["summary"] for r in runs.values()]
        last = sum(s["best_metric_epoch"] >= s["epochs_completed"] for s in summaries)
        lines.append(f"| `{arm}` | {last} of {len(summaries)} | "
                     f"{np.median([s['best_metric_epoch'] for s in summaries]):.0f} | "
                     f"{np.median([s['epochs_completed'] for s in summaries]):.0f} | "
                     f"{np.mean([s['best_metric'] for s in summaries]):.3f} | {len(summaries)} |")
    return lines + [""]


def baselines_at_their_best(finetunes, pretrains) -> list[str]:
    """The section: budget caps, contrastive collapse per seed, supervised pretraining's best epoch vs its last."""
    return (["## Were the arms trained to their best?", ""] + _caps(finetunes, pretrains)
            + _collapse_table(pretrains) + _supervised_table(pretrains))


def capped_counts(finetunes) -> tuple[int, int, int]:
    """``(fine-tuning runs, at their cap, still improving there)`` over all fine-tuning runs (atlases have none)."""
    flags = [capped_while_improving(finetune_budget(r)) for runs in finetunes.values() for r in runs.values()
             if r.get("stage") != "atlas"]
    return len(flags), sum(c for c, _ in flags), sum(i for _, i in flags)
