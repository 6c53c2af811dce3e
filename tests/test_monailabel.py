"""The bundle in MONAI Label's stock ``monaibundle`` app: a real server on loopback, inference, training, bad input.

The server runs from the MONAI Label environment (``.venv-monailabel``, created by ``scripts/setup_monailabel_env.sh``
and reused while its requirements are unchanged), started and stopped here with ``scripts/monailabel_server.py``.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import BUNDLE_DIR, run_captured

from semcl_tools import monailabel as monailabel_server

NAME = BUNDLE_DIR.name
ORGANS = ["spleen", "right kidney", "left kidney", "gallbladder", "liver", "stomach", "aorta", "pancreas"]
pytestmark = pytest.mark.monailabel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict | None = None, timeout: float = 300
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def multipart(field: str, path: Path) -> tuple[bytes, dict]:
    """A multipart/form-data body with one file field."""
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


class Server:
    """A running MONAI Label server and its folders."""

    def __init__(self, app: Path, studies: Path, log: Path) -> None:
        self.app, self.studies, self.log = app, studies, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        start = time.perf_counter()
        self.process = monailabel_server.start_server(
            monailabel_server.server_command(app, studies, NAME, self.port), log
        )
        self.startup_seconds = time.perf_counter() - start

    @property
    def bundle(self) -> Path:
        return self.app / "model" / NAME

    def infer(self, image_id: str) -> tuple[int, bytes]:
        return request(f"{self.url}/infer/{NAME}?image={image_id}&output=image", method="POST")

    def add_study(self, path: Path, image_id: str) -> int:
        body, headers = multipart("file", path)
        return request(f"{self.url}/datastore/image?image={image_id}", "PUT", body, headers)[0]

    def add_label(self, path: Path, image_id: str) -> int:
        body, headers = multipart("label", path)
        return request(f"{self.url}/datastore/label?image={image_id}&tag=final", "PUT", body, headers)[0]

    def train(self, timeout: float = 600, **params) -> dict:
        """Run one training request to its end; the final task record."""
        status, body = request(
            f"{self.url}/train/{NAME}?run_sync=false",
            "POST",
            json.dumps(params).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200, body[-2000:]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(2)
            status, body = request(f"{self.url}/train/")
            task = json.loads(body) if status == 200 else {}
            if task.get("status") in ("DONE", "ERROR", "STOPPED"):
                return task
        raise AssertionError(f"training did not finish within {timeout} s")

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        monailabel_server.stop_server(self.process)


@pytest.fixture(scope="module")
def monailabel_env(record_time) -> Path:
    start = time.perf_counter()
    command = monailabel_server.setup_environment()
    record_time("MONAI Label environment (setup or reuse)", time.perf_counter() - start)
    return command


def phantom_studies(phantom_dataset: Path, studies: Path, count: int) -> list[str]:
    studies.mkdir(parents=True, exist_ok=True)
    images = sorted((phantom_dataset / "imagesTr").glob("*.nii.gz"))[:count]
    for image in images:
        shutil.copy2(image, studies / image.name)
    return [image.name.removesuffix(".nii.gz") for image in images]


@pytest.fixture(scope="module")
def zoo_server(monailabel_env, exported, phantom_dataset, tmp_path_factory, record_time):
    """The model-zoo zip, unpacked as a zoo user gets it, served with its shipped weights."""
    folder = tmp_path_factory.mktemp("monailabel_zip")
    with zipfile.ZipFile(exported["zip"]) as archive:
        archive.extractall(folder / "download")
    app = monailabel_server.prepare_app(folder / "apps", folder / "download" / NAME)
    phantom_studies(phantom_dataset, folder / "studies", 5)
    server = Server(app, folder / "studies", folder / "server.log")
    record_time("MONAI Label server start-up (zip bundle)", server.startup_seconds)
    yield server
    server.stop()


def test_info_lists_the_model_with_every_organ(zoo_server):
    status, body = request(f"{zoo_server.url}/info/")
    assert status == 200
    info = json.loads(body)
    assert info["models"][NAME]["labels"] == {organ: i + 1 for i, organ in enumerate(ORGANS)}
    assert info["models"][NAME]["type"] == "segmentation" and info["models"][NAME]["dimension"] == 3
    assert NAME in info["trainers"]


def segmentation(body: bytes, folder: Path, name: str) -> nib.Nifti1Image:
    path = folder / f"{name}.nii.gz"
    path.write_bytes(body)
    return nib.load(str(path))


def test_inference_returns_organ_labels_in_the_input_geometry(zoo_server, phantom_dataset, tmp_path, record_time):
    start = time.perf_counter()
    status, body = zoo_server.infer("phantom_000")
    record_time("MONAI Label inference (32^3 phantom)", time.perf_counter() - start)
    assert status == 200, body[-2000:]
    result = segmentation(body, tmp_path, "seg")
    source = nib.load(str(zoo_server.studies / "phantom_000.nii.gz"))
    assert result.shape == source.shape
    np.testing.assert_allclose(result.affine, source.affine, atol=1e-4)
    values = set(np.unique(np.asarray(result.dataobj)).astype(int).tolist())
    assert values <= set(range(len(ORGANS) + 1)) and values - {0}


def test_bad_studies_get_an_error_and_the_server_keeps_serving(zoo_server, tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"this is not an image")
    four_d = tmp_path / "four_d.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16, 3), np.float32), np.eye(4)), str(four_d))
    for path, image_id, expected in ((broken, "broken", "broken.nii.gz"), (four_d, "four_d", "four_d.nii.gz")):
        assert zoo_server.add_study(path, image_id) == 200
        status, body = zoo_server.infer(image_id)
        assert status >= 400, f"{image_id}: {status}"
        # MONAI Label answers an exception in a task with HTTP 500; the bundle's message names the file in its log
        assert expected in zoo_server.log_text().split("Infer Request")[-1]
        status, _ = zoo_server.infer("phantom_001")  # the next request is served
        assert status == 200


def encoder_distance(model: Path, encoder: Path) -> float:
    """Largest absolute difference between the encoder tensors of a segmentation model and an encoder checkpoint."""
    weights = torch.load(model, map_location="cpu", weights_only=True)
    reference = torch.load(encoder, map_location="cpu", weights_only=True)
    return max((weights[k].float() - v.float()).abs().max().item() for k, v in reference.items())


def test_training_starts_from_the_pretrained_encoder_and_the_new_model_serves(
    zoo_server, phantom_dataset, tmp_path, record_time
):
    models = zoo_server.bundle / "models"
    (models / "model.pt").unlink()  # a bundle's first training: no segmentation model yet, only the encoder
    for image_id in ("phantom_000", "phantom_001", "phantom_002"):
        assert zoo_server.add_label(phantom_dataset / "labelsTr" / f"{image_id}.nii.gz", image_id) == 200
    start = time.perf_counter()
    task = zoo_server.train(max_epochs=1, val_split=0.34)
    record_time("MONAI Label training (1 epoch, 2 volumes + 1 validation)", time.perf_counter() - start)
    details = "\n".join(task.get("details", []))
    assert task["status"] == "DONE", details
    assert (models / "model.pt").is_file()
    # one epoch barely moves the encoder away from the contrastive one (random initialisation would be far)
    assert encoder_distance(models / "model.pt", models / "pretrained_encoder.pt") < 0.05
    status, body = zoo_server.infer("phantom_003")
    assert status == 200, body[-2000:]
    served = np.asarray(segmentation(body, tmp_path, "served").dataobj)
    # the same model through the bundle's own inference workflow
    out = tmp_path / "cli"
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(zoo_server.bundle / "configs" / "inference.yaml"),
        "--input_path",
        str(zoo_server.studies / "phantom_003.nii.gz"),
        "--output_dir",
        str(out),
    ]
    result = run_captured(command, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (cli,) = out.glob("*.nii.gz")
    np.testing.assert_array_equal(served, np.asarray(nib.load(str(cli)).dataobj))


def test_empty_label_fails_training_with_its_name_and_the_server_keeps_serving(zoo_server, phantom_dataset, tmp_path):
    empty = tmp_path / "phantom_004.nii.gz"
    source = nib.load(str(phantom_dataset / "labelsTr" / "phantom_004.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros(source.shape, np.uint8), source.affine), str(empty))
    assert zoo_server.add_label(empty, "phantom_004") == 200
    task = zoo_server.train(max_epochs=1, val_split=0.0)
    details = "\n".join(task.get("details", []))
    assert task["status"] == "ERROR", details
    # MONAI Label reports the last lines of the training output (MONAI's "Failed to instantiate" wrapper); the
    # bundle's message naming the file is in the full output, in the server's log
    assert "phantom_004.nii.gz: the label map holds background only" in zoo_server.log_text()
    status, _ = request(f"{zoo_server.url}/info/")
    assert status == 200


def test_repository_bundle_folder_serves_too(monailabel_env, exported, phantom_dataset, tmp_path, record_time):
    """The repository's bundle folder (components from the installed package) with the exported weights."""
    app = monailabel_server.prepare_app(tmp_path / "apps", BUNDLE_DIR, weights=exported["out"])
    phantom_studies(phantom_dataset, tmp_path / "studies", 1)
    server = Server(app, tmp_path / "studies", tmp_path / "server.log")
    record_time("MONAI Label server start-up (repository bundle)", server.startup_seconds)
    try:
        status, body = server.infer("phantom_000")
        assert status == 200, server.log_text()[-3000:]
        assert (
            segmentation(body, tmp_path, "seg").shape
            == nib.load(str(tmp_path / "studies" / "phantom_000.nii.gz")).shape
        )
    finally:
        server.stop()


def package_names(text: str) -> set[str]:
    """Lower-case package names in pip requirement strings (extras and version specifiers dropped)."""
    import re

    names = set()
    for token in re.findall(r'"[^"]+"|\S+', text):
        token = token.strip('"\\')
        match = re.match(r"[A-Za-z0-9_.-]+", token)
        if match and not token.startswith("-") and match.group(0) not in ("pip", "install"):
            names.add(match.group(0).lower().replace("_", "-"))
    return names


def test_readme_install_lines_match_the_setup_script():
    """The bundle README's MONAI Label install lines name the packages scripts/setup_monailabel_env.sh installs."""
    import re

    script = (Path(monailabel_server.ROOT) / "scripts" / "setup_monailabel_env.sh").read_text()
    requirements = re.search(r"REQUIREMENTS=\((.*?)\n\)", script, re.S).group(1)
    torch_pins = re.search(r"TORCH=\((.*?)\)", script).group(1)
    readme = (BUNDLE_DIR / "docs" / "README.md").read_text()
    block = re.search(r"### Annotating with MONAI Label.*?```bash\n(.*?)```", readme, re.S).group(1)
    lines = [line for line in block.replace("\\\n", " ").splitlines() if line.startswith("pip install")]
    assert package_names(" ".join(lines)) == package_names(requirements + " " + torch_pins) | {"monailabel"}
    assert "torch==2.14.1" in block and "torchvision==0.29.1" in block and "monailabel==0.8.5" in script
