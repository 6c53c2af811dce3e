"""Serve the bundle to annotators with MONAI Label's stock ``monaibundle`` app, on 127.0.0.1, fully offline.

Steps: (1) the MONAI Label environment ``.venv-monailabel`` (``scripts/setup_monailabel_env.sh``; reused when
present), (2) the ``monaibundle`` sample app copied from the installed MONAI Label wheel (no network), (3) a writable
copy of the bundle in ``<app>/model/<bundle>`` (the server writes ``models/model.pt`` and ``eval/`` there when it
trains), with the weights of ``--weights`` if given, (4) ``monailabel start_server`` with the settings that keep it
offline: ``zoo_source github`` (``monaihosting`` would fetch the model zoo's index even for a local bundle) and
``sam2 false`` (else it downloads SAM2 weights).

Usage:
    python scripts/monailabel_server.py [--bundle DIR] [--weights DIR] [--studies DIR] [--app-dir DIR] [--port 8000]

``--bundle`` is the repository's bundle folder (default; the MONAI Label environment has the components installed)
or an unpacked model-zoo zip (which carries them). ``--studies`` defaults to ``<app-dir>/studies`` with 4 phantom
volumes written into it if it is empty. Then open 3D Slicer's MONAI Label module on http://127.0.0.1:<port>.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .repository import BUNDLE, ROOT

VENV = Path(os.environ.get("SEMCL_MONAILABEL_VENV", ROOT / ".venv-monailabel"))
READY = "Uvicorn running on"
"""The server's last start-up log line (uvicorn's), printed once the socket is bound."""
COPIED = ("configs", "docs", "scripts", "models", "LICENSE", "large_files.yml")
"""What of a bundle folder the app gets (no eval/, data/ or run locks)."""


def setup_environment() -> Path:
    """Create or reuse the MONAI Label environment; its ``monailabel`` command."""
    subprocess.run(["bash", str(ROOT / "scripts" / "setup_monailabel_env.sh")], check=True)
    return VENV / "bin" / "monailabel"


def prepare_app(app_dir: Path, bundle: Path = BUNDLE, weights: Path | None = None) -> Path:
    """The ``monaibundle`` app in ``app_dir`` with a fresh copy of ``bundle`` (and ``weights``); the app folder."""
    app = app_dir / "monaibundle"
    if not (app / "main.py").is_file():
        app_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(VENV / "bin" / "monailabel"), "apps", "--download", "--name", "monaibundle", "--output",
                        str(app_dir)], check=True, env=_environment())
    target = app / "model" / bundle.name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in COPIED:
        source = bundle / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", ".lock", "*.pyc"))
        elif source.is_file():
            shutil.copy2(source, target / name)
    if weights is not None:
        (target / "models").mkdir(exist_ok=True)
        for name in ("model.pt", "pretrained_encoder.pt"):
            if (weights / name).is_file():
                shutil.copy2(weights / name, target / "models" / name)
    return app


def server_command(app: Path, studies: Path, model: str, port: int) -> list[str]:
    """``monailabel start_server`` for ``app`` serving the bundle ``model`` offline on 127.0.0.1:``port``."""
    return [str(VENV / "bin" / "monailabel"), "start_server", "--app", str(app), "--studies", str(studies),
            "--conf", "models", model, "--conf", "zoo_source", "github", "--conf", "sam2", "false",
            "--host", "127.0.0.1", "--port", str(port)]


def _environment() -> dict[str, str]:
    """The server's environment: MONAI Label's venv first on PATH (its ``monailabel`` script runs ``python``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def start_server(command: Sequence[str], log_file: Path, timeout: float = 180) -> subprocess.Popen:
    """Start the server (own process group), wait until it listens; raise with the log's tail if it does not."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "w", encoding="utf-8")
    process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, env=_environment(),
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_file.read_text(encoding="utf-8", errors="replace")
        if READY in text:
            return process
        if process.poll() is not None or "Application startup failed" in text:
            break
        time.sleep(0.5)
    stop_server(process)
    tail = log_file.read_text(encoding="utf-8", errors="replace")[-4000:]
    raise RuntimeError(f"MONAI Label did not start within {timeout:.0f} s (log {log_file}):\n{tail}")


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server and its children (training runs in a child process)."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def write_phantom_studies(studies: Path) -> None:
    """The ``annotation`` phantom set's CT volumes as studies, for a first look without data."""
    from semcl_components.data.phantoms import write_phantom_set

    scratch = studies.parent / "phantom_source"
    write_phantom_set(scratch, "annotation", preview=False, verbose=False)
    studies.mkdir(parents=True, exist_ok=True)
    for image in sorted((scratch / "imagesTr").glob("*.nii.gz")):
        shutil.copy2(image, studies / image.name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="a bundle folder (default: the repository's)")
    parser.add_argument("--weights", type=Path, help="a folder with model.pt and pretrained_encoder.pt to serve")
    parser.add_argument("--app-dir", type=Path, default=ROOT / "runs" / "monailabel", help="where the app goes")
    parser.add_argument("--studies", type=Path, help="the studies folder (default <app-dir>/studies, phantoms)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    setup_environment()
    app = prepare_app(args.app_dir.absolute(), args.bundle.absolute(), args.weights)
    studies = (args.studies or args.app_dir / "studies").absolute()
    if args.studies is None and not any(studies.glob("*.nii*")):
        write_phantom_studies(studies)
    if not (app / "model" / args.bundle.name / "models" / "model.pt").is_file():
        print("[monailabel] note: no models/model.pt in the served bundle: inference needs one (--weights DIR, or "
              "train once through MONAI Label)", flush=True)
    command = server_command(app, studies, args.bundle.name, args.port)
    print(f"[monailabel] {' '.join(command)}", flush=True)
    return subprocess.call(command, env=_environment())


if __name__ == "__main__":
    sys.exit(main())
