#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the package with its test extra.
# torch is pinned to 2.13.0 and installed first, so nothing can pull an unpinned (CUDA, multi-GB) build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEMCL_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment at $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0"
    "${PIP[@]}" install "torch==2.13.0"
fi
echo "[setup] installing semcl_components[test] (editable)"
"${PIP[@]}" install -e "$ROOT[test]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
"$VENV/bin/python" -c "import torch, monai, semcl_components, semcl_phantoms; print(f'[setup] ok: torch {torch.__version__}, monai {monai.__version__}')"
