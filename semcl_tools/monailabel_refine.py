"""The cascade's stage 2 as a second model of MONAI Label's stock ``monaibundle`` app: ``<bundle>_refine`` refines the
label that an infer request uploads (the annotator's current, rough label) organ by organ.

MONAI Label 0.8.5 hands an infer request's ``label`` upload (``POST /infer/<model>``, multipart field ``label``) to
the task as a file path under the key ``label``. Its stock ``BundleInferTask`` serves one bundle folder per model,
reads the fixed file ``configs/inference.json`` (else ``inference.yaml``) and loads ``models/model.pt`` into the
config's ``network_def``; it runs ``preprocessing``, ``inferer`` and ``postprocessing``, not the ``handlers``. So the
refine model is a folder beside the served bundle copy, ``model/<bundle>_refine``, holding:

- ``configs/inference.json``: the bundle's own cascade, ``inference.yaml`` + ``inference_cascade.yaml`` merged as
  ``monai.bundle run`` merges them, with three changes: the request's ``label`` becomes the cascade's ``prior`` (first
  transform); the prior's ``LoadImaged`` is wrapped in a ``Compose`` (MONAI Label swaps every top-level
  ``LoadImaged`` for its ``LoadImageTensord``, which fails on a missing key even with ``allow_missing_keys``, so a
  request without a label would fail); stage 2's weights (``models/refine/model.pt``, which the cascade's handler
  loads on the command line) are loaded when the inferer is built. ``network_def`` stays stage 1, which MONAI Label
  loads.
- the bundle copy's other config files (``common.yaml``, ``metadata.json``: settings and organ names), without
  ``train.yaml`` (no second trainer: it would train stage 1);
- links to the copy's ``models/`` and ``scripts/``: the same weights (a stage 1 trained through MONAI Label serves
  here too) and components.

What a request gets is what ``inference_cascade.yaml --prior LABEL`` writes: the uploaded label is checked against
the image (shape, affine, class ids: ``semcl_components.cascade.CheckPriord``, which names both files; MONAI Label
answers HTTP 500 and logs the message), each organ present in it is refined in its organ-centred crop and the organs
are stitched into a label map in the image's geometry. A request without a label runs stage 1 first (the whole
cascade), as ``inference_cascade.yaml`` does without ``--prior``.

Run by the server helper with MONAI Label's Python: ``python -m semcl_tools.monailabel_refine BUNDLE_COPY``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["REFINE_SUFFIX", "refine_config", "refine_model_name", "write_refine_model"]

REFINE_SUFFIX = "_refine"
#: The cascade's configs, merged in this order (as ``--config_file "['inference.yaml','inference_cascade.yaml']"``).
CASCADE_CONFIGS = ("inference.yaml", "inference_cascade.yaml")
#: Config files the refine model does not get: the workflows (MONAI Label would offer ``train.yaml`` as a second
#: trainer of stage 1) and the stage 1 inference config, which its ``inference.json`` replaces.
LEFT_OUT = ("train.yaml", "train.json", "inference.yaml")
#: The bundle copy's folders the refine model links to.
LINKED = ("models", "scripts")
#: The request's ``label`` (MONAI Label's upload) as the cascade's ``prior``.
LABEL_AS_PRIOR = {"_target_": "CopyItemsd", "keys": "label", "names": "prior", "allow_missing_keys": True}
#: Stage 2 with its weights: MONAI Label builds the inferer from the config but runs none of its handlers.
REFINE_NETWORK = (
    "$[@refine_network.load_state_dict(torch.load(@refine_ckpt_dir + '/model.pt', map_location=@device, "
    "weights_only=True)), @refine_network][-1]"
)


def refine_model_name(bundle_name: str) -> str:
    """The MONAI Label model that refines a label with stage 2 of bundle ``bundle_name``."""
    return bundle_name + REFINE_SUFFIX


def _loads_an_optional_key(transform: object) -> bool:
    """Whether a config item is a ``LoadImaged`` that may find its key missing (the prior's)."""
    return (
        isinstance(transform, dict)
        and transform.get("_target_") == "LoadImaged"
        and transform.get("allow_missing_keys", False) is True
    )


def refine_config(configs: Path) -> dict:
    """The refine model's config: the cascade's configs in ``configs`` merged, the request's ``label`` as the prior,
    stage 2's weights loaded with its network."""
    from monai.bundle import ConfigParser

    config = ConfigParser.load_config_files([str(configs / name) for name in CASCADE_CONFIGS])
    transforms = config["preprocessing"]["transforms"]
    for i, transform in enumerate(transforms):
        if _loads_an_optional_key(transform):
            transforms[i] = {"_target_": "Compose", "transforms": [transform]}
    transforms.insert(0, dict(LABEL_AS_PRIOR))
    config["inferer"]["refine_network"] = REFINE_NETWORK
    return config


def write_refine_model(bundle_copy: Path) -> Path:
    """Write (or rewrite) the refine model beside ``bundle_copy`` (a bundle folder in the app's ``model/``); its
    folder."""
    target = bundle_copy.parent / refine_model_name(bundle_copy.name)
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    (target / "configs").mkdir(parents=True)
    for source in sorted((bundle_copy / "configs").iterdir()):
        if source.is_file() and source.name not in LEFT_OUT:
            shutil.copy2(source, target / "configs" / source.name)
    (target / "configs" / "inference.json").write_text(
        json.dumps(refine_config(bundle_copy / "configs"), indent=2), encoding="utf-8"
    )
    for name in LINKED:
        if (bundle_copy / name).exists():
            os.symlink(Path("..") / bundle_copy.name / name, target / name, target_is_directory=True)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle_copy", type=Path, help="the served bundle folder (<app>/model/<bundle>)")
    args = parser.parse_args(argv)
    target = write_refine_model(args.bundle_copy.absolute())
    print(f"[monailabel] stage 2 served as {target.name} (refines the label an infer request uploads)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
