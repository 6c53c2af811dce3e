"""Serve the bundle to annotators with MONAI Label's stock ``monaibundle`` app, on 127.0.0.1, fully offline.

Steps: (1) the MONAI Label environment ``.venv-monailabel`` (``scripts/setup_monailabel_env.sh``; reused when
present), (2) the ``monaibundle`` sample app copied from the installed MONAI Label wheel (no network), (3) a writable
copy of the bundle in ``<app>/model/<bundle>`` (the server writes ``models/model.pt`` and ``eval/`` there when it
trains): its configs, docs and code are refreshed at every start, but a copy whose ``models/`` holds a ``model.pt``
keeps its ``models/`` and ``eval/`` (a model trained through MONAI Label survives a restart; the output says what is
kept), and ``--weights`` fills a copy that has none, (4) when the copy has stage 2 of the cascade
(``models/refine/model.pt``), a second model ``<bundle>_refine`` that refines the label an infer request uploads (the
annotator's current label; ``semcl_tools.monailabel_refine``), (5) no start without ``models/model.pt`` (MONAI Label
would list no model, answer inference with an unrelated HTTP 500, and serve a model trained later only after a
restart), (6)
``monailabel start_server`` with the settings that keep it offline: ``zoo_source github`` (``monaihosting`` would
fetch the model zoo's index even for a local bundle) and ``sam2 false`` (else it downloads SAM2 weights), on
127.0.0.1 only and behind the project's request guard (``semcl_tools.monailabel_origins``: requests from web pages
of other origins or for other hosts, ids that are paths, uploads that are not NIfTI/NRRD/DICOM images and changes to
the bundle's files are refused; MONAI Label's default lets any web page the annotator opens call it, and setting its
``MONAI_LABEL_CORS_ORIGINS`` makes it fail at start-up). Stopping this script (Ctrl-C, ``kill``,
closing its terminal) stops the server and its training process.

Usage:
    python scripts/monailabel_server.py [--bundle DIR] [--weights DIR] [--studies DIR] [--app-dir DIR] [--port 8000]
        [--allowed_host NAME ...]

Any Python >= 3.10 runs it (standard library only; the phantom studies and the refine model's config are written by the
MONAI Label environment's Python). ``--bundle`` is the repository's bundle folder (default; the server imports the
components from this checkout) or an unpacked model-zoo zip (which carries them). ``--weights`` is a folder with
``model.pt`` (and ``pretrained_encoder.pt``, ``refine/model.pt``), e.g. an export's output folder or an unpacked zip's
``models/``. ``--studies`` defaults to ``<app-dir>/studies`` with 4 phantom volumes written into it if it is empty. Then
open 3D Slicer's MONAI Label module on http://127.0.0.1:<port>. ``--allowed_host NAME`` (repeatable; ``NAME`` for any
port, ``NAME:PORT`` for one) accepts requests naming another host, e.g. ``127.0.0.1:9000`` for an SSH tunnel from
another local port or a reverse proxy's name: without it, a request whose ``Host`` is not 127.0.0.1, localhost or [::1]
on ``--port`` is refused (DNS rebinding).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .monailabel_refine import refine_model_name
from .monailabel_requests import parse_host
from .repository import BUNDLE, ROOT

VENV = Path(os.environ.get("SEMCL_MONAILABEL_VENV", ROOT / ".venv-monailabel"))
READY = "Uvicorn running on"
"""The server's last start-up log line (uvicorn's), printed once the socket is bound."""
COPIED = ("configs", "docs", "scripts", "models", "LICENSE", "large_files.yml")
"""What of a bundle folder the app gets (no eval/, data/ or run locks)."""
SERVED_OUTPUTS = ("models", "eval")
"""What the server writes into its copy of the bundle; kept across starts once ``models/`` holds a ``model.pt``."""
WEIGHT_FILES = ("model.pt", "pretrained_encoder.pt", "refine/model.pt")
"""The weight files ``--weights`` provides (``refine/``: stage 2 of the cascade, served as ``<bundle>_refine``)."""
NO_MODEL = """no models/model.pt in {bundle}: MONAI Label would list no model, answer every inference with HTTP 500, and
serve a model trained later only after a restart. Give the weights: --weights DIR (a folder with model.pt, e.g. the
output folder of scripts/export_bundle.py or an unpacked model-zoo zip's models/), serve an unpacked zip
(--bundle DIR), or train the bundle once first (python -m monai.bundle run --config_file {bundle}/configs/train.yaml
--bundle_root {bundle})."""


def setup_environment() -> Path:
    """Create or reuse the MONAI Label environment; its ``monailabel`` command."""
    subprocess.run(["bash", str(ROOT / "scripts" / "setup_monailabel_env.sh")], check=True)
    return VENV / "bin" / "monailabel"


def carries_components(bundle: Path) -> bool:
    """Whether a bundle folder carries its own copy of the components (a model-zoo zip's ``scripts/``)."""
    return (bundle / "scripts" / "semcl_components" / "__init__.py").is_file()


def server_environment(with_checkout: bool = False, allowed_hosts: Sequence[str] = ()) -> dict[str, str]:
    """The environment of MONAI Label's commands.

    MONAI Label's venv first on ``PATH`` (its ``monailabel`` script runs ``python``). ``with_checkout``: this
    checkout first on ``PYTHONPATH``, for the request guard of :func:`server_command` and for a bundle without its own
    copy of the components (the repository's folder), so that the server runs the code of the checkout it serves,
    whichever checkout the environment was built from. ``allowed_hosts``: host names the guard accepts besides the
    server's own address (``MONAI_LABEL_ALLOWED_HOSTS``, added to any already set).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("OMP_NUM_THREADS", "2")
    if with_checkout:
        env["PYTHONPATH"] = str(ROOT)
    if allowed_hosts:
        hosts = [env["MONAI_LABEL_ALLOWED_HOSTS"]] if env.get("MONAI_LABEL_ALLOWED_HOSTS") else []
        env["MONAI_LABEL_ALLOWED_HOSTS"] = ",".join([*hosts, *allowed_hosts])
    return env


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def prepare_app(app_dir: Path, bundle: Path = BUNDLE, weights: Path | None = None) -> Path:
    """The ``monaibundle`` app in ``app_dir`` with an up-to-date copy of ``bundle``; the app folder.

    The copy's configs, docs and code are replaced by the bundle's. Its ``models/`` and ``eval/`` are kept when
    ``models/model.pt`` exists (trained through MONAI Label, or placed on an earlier start), else taken from the
    bundle, and then ``weights`` (a folder with ``model.pt``, ``pretrained_encoder.pt`` and/or ``refine/model.pt``)
    fill ``models/``. With stage 2's ``models/refine/model.pt``, the refine model ``<bundle>_refine`` is written
    beside the copy (``semcl_tools.monailabel_refine``, run by MONAI Label's Python), else an earlier one is removed.
    What is kept or placed is printed.
    """
    app = app_dir / "monaibundle"
    if not (app / "main.py").is_file():
        app_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(VENV / "bin" / "monailabel"), "apps", "--download", "--name", "monaibundle", "--output",
                        str(app_dir)], check=True, env=server_environment())
    target = app / "model" / bundle.name
    served_model = target / "models" / "model.pt"
    keep = served_model.is_file()
    if target.exists():
        for entry in target.iterdir():
            if not (keep and entry.name in SERVED_OUTPUTS):
                _remove(entry)
    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = bundle / name
        if keep and name in SERVED_OUTPUTS:
            continue
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", ".lock", "*.pyc"))
        elif source.is_file():
            shutil.copy2(source, target / name)
    if keep:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(served_model.stat().st_mtime))
        print(f"[monailabel] keeping the served models/ and eval/ of {target} (model.pt of {stamp}); delete "
              f"{target / 'models'} to serve the bundle's own weights or --weights again", flush=True)
    elif weights is not None:
        (target / "models").mkdir(exist_ok=True)
        placed = [name for name in WEIGHT_FILES if (weights / name).is_file()]
        for name in placed:
            (target / "models" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(weights / name, target / "models" / name)
        print(f"[monailabel] placed {', '.join(placed) or 'no weight file'} from {weights} in {target / 'models'}",
              flush=True)
    refine = app / "model" / refine_model_name(bundle.name)
    if (target / "models" / "refine" / "model.pt").is_file():
        subprocess.run([str(VENV / "bin" / "python"), "-m", "semcl_tools.monailabel_refine", str(target)], check=True,
                       env=server_environment(with_checkout=True))
    elif refine.exists() or refine.is_symlink():
        _remove(refine)
    return app


def served_models(app: Path, model: str) -> list[str]:
    """The models ``app`` serves for the bundle ``model``: the bundle, and its refine model when prepared."""
    return [model] + [name for name in [refine_model_name(model)] if (app / "model" / name).is_dir()]


def server_command(app: Path, studies: Path, model: str, port: int) -> list[str]:
    """``monailabel start_server`` for ``app`` serving the bundle ``model`` (and its refine model,
    :func:`served_models`) offline on 127.0.0.1:``port``, behind the request guard
    (``semcl_tools.monailabel_origins``; needs :func:`server_environment` ``with_checkout``).

    The environment's Python runs MONAI Label's CLI module directly: its ``monailabel`` script puts the folder two
    levels above itself first on ``PYTHONPATH``, i.e. the checkout that holds the environment, not necessarily this
    one."""
    return [str(VENV / "bin" / "python"), "-m", "monailabel.main", "start_server", "--app", str(app), "--studies",
            str(studies),
            "--conf", "models", ",".join(served_models(app, model)), "--conf", "zoo_source", "github",
            "--conf", "sam2", "false",
            "--host", "127.0.0.1", "--port", str(port), "--uvicorn_app", "semcl_tools.monailabel_origins:app"]


def start_server(
    command: Sequence[str],
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 180,
) -> subprocess.Popen:
    """Start the server (own process group), wait until it listens; raise with the log's tail if it does not."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    offset = log_file.stat().st_size if log_file.exists() else 0  # a restart appends to the log
    with open(log_file, "a", encoding="utf-8") as log:
        process = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                   env=server_environment(with_checkout=True) if env is None else env,
                                   start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_file.read_bytes()[offset:].decode("utf-8", errors="replace")
        if READY in text:
            return process
        if process.poll() is not None or "Application startup failed" in text:
            break
        time.sleep(0.5)
    stop_server(process)
    tail = log_file.read_text(encoding="utf-8", errors="replace")[-4000:]
    raise RuntimeError(f"MONAI Label did not start within {timeout:.0f} s (log {log_file}):\n{tail}")


def stop_server(process: subprocess.Popen, timeout: float = 10) -> None:
    """Stop the server and every process of its group (training runs in a child process)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break  # the group is gone
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue


def run_server(command: Sequence[str], env: dict[str, str]) -> int:
    """Run the server in the foreground until it ends or this process is told to stop; its exit status (128 + the
    signal's number when stopped).

    The server gets its own process group, which SIGINT (Ctrl-C), SIGTERM and SIGHUP to this process end as a whole,
    training included: stopping the helper never leaves an orphaned server. (MONAI Label's server does not end on
    SIGTERM by itself, its background threads keep it alive: :func:`stop_server` kills what is left.)
    """
    process = subprocess.Popen(list(command), env=env, start_new_session=True)
    received: list[int] = []

    def note(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while process.poll() is None and not received:
            time.sleep(0.5)
    finally:
        if received:
            print(f"[monailabel] {signal.Signals(received[0]).name}: stopping the server (pid {process.pid})",
                  flush=True)
        stop_server(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received else process.returncode


def write_phantom_studies(studies: Path) -> None:
    """The ``annotation`` phantom set's CT volumes as studies, for a first look without data (written by MONAI Label's
    Python)."""
    scratch = studies.parent / "phantom_source"
    code = (
        "import sys\n"
        "from semcl_phantoms.phantoms import write_phantom_set\n"
        "write_phantom_set(sys.argv[1], 'annotation', preview=False, verbose=False)\n"
    )
    subprocess.run(
        [str(VENV / "bin" / "python"), "-c", code, str(scratch)], check=True, env=server_environment(with_checkout=True)
    )
    studies.mkdir(parents=True, exist_ok=True)
    for image in sorted((scratch / "imagesTr").glob("*.nii.gz")):
        shutil.copy2(image, studies / image.name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=BUNDLE, help="a bundle folder (default: the repository's)")
    parser.add_argument("--weights", type=Path, help="a folder with model.pt (and pretrained_encoder.pt) to serve")
    parser.add_argument("--app-dir", type=Path, default=ROOT / "runs" / "monailabel", help="where the app goes")
    parser.add_argument("--studies", type=Path, help="the studies folder (default <app-dir>/studies, phantoms)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allowed_host", "--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name (NAME, or NAME:PORT) requests may name besides 127.0.0.1/localhost/[::1] on "
                        "--port, e.g. a tunnel's or proxy's (repeatable)")
    args = parser.parse_args(argv)
    for host in args.allowed_host:
        if parse_host(host) is None:
            parser.error(f"--allowed_host {host!r}: not a host name (NAME or NAME:PORT, e.g. 127.0.0.1:9000)")
    bundle = args.bundle.absolute()
    if not (bundle / "configs" / "inference.yaml").is_file():
        parser.error(f"--bundle {bundle}: not a bundle folder (no configs/inference.yaml)")
    if args.weights is not None and not (args.weights / "model.pt").is_file():
        parser.error(f"--weights {args.weights}: no model.pt in that folder")
    setup_environment()
    app = prepare_app(args.app_dir.absolute(), bundle, args.weights)
    if not (app / "model" / bundle.name / "models" / "model.pt").is_file():
        print(f"[monailabel] error: {NO_MODEL.format(bundle=bundle)}", file=sys.stderr, flush=True)
        return 2
    studies = (args.studies or args.app_dir / "studies").absolute()
    if args.studies is None and not any(studies.glob("*.nii*")):
        write_phantom_studies(studies)
    command = server_command(app, studies, bundle.name, args.port)
    print(f"[monailabel] {' '.join(command)}", flush=True)
    return run_server(command, server_environment(with_checkout=True, allowed_hosts=args.allowed_host))


if __name__ == "__main__":
    sys.exit(main())
