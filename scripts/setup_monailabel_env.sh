#!/usr/bin/env bash
# Create (or reuse) a separate environment for MONAI Label 0.8.5 in .venv-monailabel, beside the project's .venv.
#
# MONAI Label pins numpy < 2 (through pydicom-seg) and imports torchvision at start-up, which no CPU build of torch
# 2.13.0 has beside it, so it gets its own environment with the pinned pair torch==2.14.1 and torchvision==0.29.1
# (on these machines pip takes both from local files; the project's .venv keeps torch 2.13.0), then monailabel
# without its dependencies, then those dependencies except sam2 (the app runs with `--conf sam2 false`; its build
# would fetch another torch), mlflow and openslide (not used by a segmentation bundle), with the pins it needs to
# import (pydicom<3, pynetdicom<3, dicomweb-client<0.60). The project's components are installed without dependencies
# (editable, from this checkout) when the environment has none, so the repository's bundle folder works too (a
# model-zoo zip carries them itself); an environment that has them from another checkout keeps them (the server
# helper, scripts/monailabel_server.py, puts the checkout it serves first on PYTHONPATH).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEMCL_MONAILABEL_VENV:-$ROOT/.venv-monailabel}"
PYTHON="${PYTHON:-python3}"
REQUIREMENTS=(
    "monai[fire,gdown,ignite,itk,lmdb,nibabel,pillow,psutil,skimage,tensorboard,tqdm,einops,pyyaml,scipy,matplotlib]==1.6.1"
    "uvicorn>=0.29.0" "pydantic>=2.7.0" "pydantic-settings>=2.2.1" "python-dotenv>=1.0.1" "fastapi>=0.110.2"
    "python-multipart>=0.0.9" "httpx>=0.27.0" "schedule>=1.2.1" "dicomweb-client[gcp]>=0.59.1,<0.60" "timeloop>=1.0.2"
    "expiringdict>=1.2.2" "expiring_dict>=1.1.0" "cachetools>=5.3.3" "watchdog>=4.0.0" "pydicom>=2.4.4,<3"
    "pydicom-seg>=0.4.1" "pynetdicom>=2.0.2,<3" "pynrrd>=1.0.0" "numpymaxflow>=0.0.7" "girder-client>=3.2.3"
    "ninja>=1.11.1.1" "pyyaml>=6.0.1" "filelock>=3.11.0" "passlib>=1.7.4" "pyjwt>=2.8.0" "bcrypt>=4.1.2"
    "shapely>=2.0.4" "requests>=2.31.0" "requests-toolbelt>=1.0.0" "urllib3>=2.2.1" "scikit-learn" "scipy"
    "google-auth>=2.29.0"
)
STAMP="$VENV/installed.txt"
TORCH=("torch==2.14.1" "torchvision==0.29.1")
WANTED="monailabel==0.8.5 ${TORCH[*]} ${REQUIREMENTS[*]}"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANTED" ]; then
    echo "[monailabel-env] reusing $VENV"
else
    rm -rf "$VENV"
    echo "[monailabel-env] creating $VENV"
    "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    "${PIP[@]}" install "${TORCH[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
    "${PIP[@]}" install --no-deps "monailabel==0.8.5" 2>&1 | grep -v "is ignored: it is neither" || true
    "${PIP[@]}" install "${TORCH[@]}" "${REQUIREMENTS[@]}" 2>&1 | grep -v "is ignored: it is neither" || true
    echo "$WANTED" > "$STAMP"
fi
# (checked from / without PYTHONPATH: only what is installed counts)
if ! (cd / && env -u PYTHONPATH "$VENV/bin/python" -c "import semcl_components, semcl_phantoms" 2>/dev/null); then
    "$VENV/bin/python" -m pip --disable-pip-version-check -q install --no-deps -e "$ROOT" 2>&1 | grep -v "is ignored: it is neither" || true
fi
(cd / && env -u PYTHONPATH "$VENV/bin/python" -c "import torch, torchvision, monai, monailabel, numpy, semcl_components, semcl_phantoms; print(f'[monailabel-env] ok: monailabel {monailabel.__version__}, monai {monai.__version__}, torch {torch.__version__}, numpy {numpy.__version__}, semcl_components from {semcl_components.__path__[0]}')")
