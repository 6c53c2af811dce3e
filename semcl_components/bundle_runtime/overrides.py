"""Settings given on the command line: booleans as users write them, and overrides checked against the config.

``python -m monai.bundle run --config_file train.yaml --max_epoch 1`` adds a new, unused key ``max_epoch`` and trains
for the default number of epochs; ``--resume false`` hands the config the *string* ``'false'``, which Python takes as
true; ``--max_epochs abc`` fails deep inside ignite without naming the setting. :func:`check_overrides` (the first
step of every workflow's ``initialize``) stops such a command before any work, naming the setting and the closest
known key (in MONAI Label's training process, whose options come as a request instead of a command line, it checks
that request: ``monailabel_training``); :func:`as_bool` is how every boolean setting is read.
:func:`check_pretraining_settings` stops settings that are each valid but meaningless together.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .monailabel_training import check_training_request, training_request

__all__ = [
    "OBJECT_PRIORS",
    "as_bool",
    "check_overrides",
    "check_pretraining_settings",
    "parse_cli_overrides",
    "typed_cli_value",
]

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")

# ``semcl_components.`` in an expression without the ``@`` of a reference: the form from before the bundle carried
# the components, when configs imported the package; now that name is undefined there (``NameError``)
_PACKAGE_AS_NAME = re.compile(r"(?<![@\w.])semcl_components\.")
# arguments of `python -m monai.bundle run` itself, not config overrides
_RUN_ARGUMENTS = {"config_file", "meta_file", "logging_file", "args_file", "tracking", "run_id", "init_id", "final_id"}
#: Settings that name a folder a workflow writes into: one that is a file is refused before any work (a workflow would
#: otherwise fail only when it first writes there: after inference, after an epoch).
OUTPUT_FOLDERS = ("output_dir", "ckpt_dir")


def as_bool(value: Any, name: str = "value") -> bool:
    """A setting as a bool: ``True``/``False``, 0/1, or the strings true/false (yes/no, 1/0, on/off) in any case.

    Raises:
        ValueError: naming the setting, for anything else.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(f"{name} must be true or false, got {value!r}.")


def parse_cli_overrides(argv: Sequence[str]) -> dict[str, str]:
    """``{key: raw value}`` of the ``--key value`` / ``--key=value`` pairs of a command line (values as typed)."""
    overrides: dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and len(arg) > 2:
            key, has_value, value = arg[2:].partition("=")
            if not has_value:
                if i + 1 < len(args) and not args[i + 1].startswith("--"):
                    value, i = args[i + 1], i + 1
                else:
                    value = "True"  # a bare flag, as python-fire reads it
            overrides[key] = value
        i += 1
    return overrides


def typed_cli_value(raw: str) -> Any:
    """A command-line value as python-fire passes it on: a Python literal if it is one, else the string."""
    try:
        return ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        return raw


def _type_error(key: str, default: Any, value: Any) -> str | None:
    """Why ``value`` cannot stand for a setting whose config default is ``default``; None if it can."""
    if isinstance(value, str) and value.startswith("$") and _PACKAGE_AS_NAME.search(value):
        fix = "; for the classes of a dataset, give --labels_json PATH instead" if key == "class_names" else ""
        return (
            f"--{key} {value!r} names semcl_components as a module, which the configs reach as the item "
            f"@semcl_components: write '$@semcl_components.' instead of '$semcl_components.'{fix}"
        )
    if isinstance(value, str) and value.startswith(("$", "@", "%")):
        return None  # an expression or reference: the user takes charge of its type
    if isinstance(default, bool):
        try:
            as_bool(value, key)
        except ValueError:
            return f"--{key} must be true or false, got {value!r}"
        return None
    if isinstance(default, int) and not (isinstance(value, int) and not isinstance(value, bool)):
        return f"--{key} must be an integer (default {default}), got {value!r}"
    if isinstance(default, float) and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return f"--{key} must be a number (default {default}), got {value!r}"
    if isinstance(default, list) and not isinstance(value, (list, tuple)):
        return f"--{key} must be a list like {default}, got {value!r}"
    return None


def check_overrides(argv: Sequence[str] | None = None, config: Mapping[str, Any] | None = None) -> None:
    """Stop a run whose command line overrides an unknown setting or gives a value of the wrong kind.

    Every ``--key value`` of the command line (``sys.argv`` by default) must name a top-level key of the workflow's
    config files (``--a#b``: its first part), and a value must fit the kind of the key's literal default in those
    files (true/false, integer, number, list). A command line without ``--config_file`` (Python callers, which pass
    their overrides otherwise) is not checked, except MONAI Label's training process: there the options of its
    training request are checked (``monailabel_training.check_training_request``: ``max_epoch`` is refused naming
    ``max_epochs``).

    Args:
        argv: the command line.
        config: the workflow's settings as written in its files; default: the ``--config_file`` files of ``argv``.

    An output folder (``--output_dir``, ``--ckpt_dir``) that is a file is refused here too, before any work.

    Raises:
        ValueError: listing every offending override, each with the closest known key or the expected kind.
    """
    overrides = parse_cli_overrides(sys.argv[1:] if argv is None else argv)
    if config is None:
        if "config_file" not in overrides:
            request = training_request() if argv is None else None
            if request is not None:
                check_training_request(request)
            return
        from monai.bundle import ConfigParser

        config = ConfigParser.load_config_files(typed_cli_value(overrides["config_file"]))
    known = [key for key in config if not key.startswith("_")]
    problems = []
    for key, raw in overrides.items():
        top = key.split("#", 1)[0]
        if top in _RUN_ARGUMENTS:
            continue
        if top not in config:
            close = difflib.get_close_matches(top, known, n=1)
            hint = f"; did you mean --{close[0]}?" if close else "; see the keys at the top of the config file"
            problems.append(f"--{key} is not a setting of this workflow{hint}")
            continue
        if top == key:
            problem = _type_error(key, config[key], typed_cli_value(raw)) or _folder_error(key, raw)
            if problem:
                problems.append(problem)
    if problems:
        raise ValueError("invalid command-line settings: " + "; ".join(problems) + ".")


def _folder_error(key: str, raw: str) -> str | None:
    """Why ``raw`` cannot be the folder of an output setting (:data:`OUTPUT_FOLDERS`): it is a file; None if it can."""
    if key not in OUTPUT_FOLDERS or raw.startswith(("$", "@", "%")) or not os.path.isfile(raw):
        return None
    return f"--{key} {raw} is a file, not a folder: give a folder to write into (it is created if missing)"


#: The masks of pretraining's organ-centred crops (``crop_mode: object``): the label map's organs, or coarse ones
#: simulated from it (``semcl_components.transforms.RandCoarseMask``).
OBJECT_PRIORS = ("label", "simulated")


def check_pretraining_settings(
    mask_mode: str,
    positives: str,
    embedding_mode: str,
    contrast_phase_labels: Any = False,
    crop_mode: str = "patch",
    object_prior: str = "label",
) -> None:
    """Stop a pretraining whose method settings are unknown or do not fit together, naming the settings.

    The valid values are the components' own (``semcl_components.transforms.MASK_MODES`` and ``CROP_MODES``,
    :data:`OBJECT_PRIORS`,
    ``semcl_components.engines.POSITIVES`` and ``semcl_components.networks.EMBEDDING_MODES``). Pairs refused:

    - ``mask_mode: whole`` with ``positives: class``: a whole-view mask has no organ, so every sample carries the same
      class and is a positive of every other; the loss has no negatives (use ``positives: instance``, SimCLR).
    - ``contrast_phase_labels: true`` with ``positives: instance``: the organ x phase classes are never used, since
      instance positives ignore classes.

    Raises:
        ValueError: listing every problem, each naming the settings involved and a fix.
    """
    from ..engines import POSITIVES
    from ..networks import EMBEDDING_MODES
    from ..transforms import CROP_MODES, MASK_MODES

    problems = [
        f"--{name} must be one of {', '.join(valid)}, got {value!r}"
        for name, value, valid in (
            ("mask_mode", mask_mode, MASK_MODES),
            ("positives", positives, POSITIVES),
            ("embedding_mode", embedding_mode, EMBEDDING_MODES),
            ("crop_mode", crop_mode, CROP_MODES),
            ("object_prior", object_prior, OBJECT_PRIORS),
        )
        if value not in valid
    ]
    if mask_mode == "whole" and positives == "class":
        problems.append(
            "--mask_mode whole with --positives class makes every sample a positive of every other (a whole-view "
            "mask has no organ class); use --positives instance (SimCLR, configs/pretrain_simclr.yaml) or an organ "
            "mask mode"
        )
    if as_bool(contrast_phase_labels, "contrast_phase_labels") and positives == "instance":
        problems.append(
            "--contrast_phase_labels true has no effect with --positives instance (instance positives ignore the "
            "organ x phase classes); use --positives class or leave contrast_phase_labels false"
        )
    if problems:
        raise ValueError("incompatible pretraining settings: " + "; ".join(problems) + ".")
