"""What the MONAI Label server's guard lets through: ids, uploaded files and Host headers (no server; the REST tests
in ``test_monailabel.py`` check the guard in a running server)."""

from __future__ import annotations

import gzip
import io
import struct

import pytest

from semcl_tools.monailabel_requests import (
    allowed_hosts,
    host_problem,
    id_problem,
    medical_file_problem,
    params_problem,
    parse_host,
    path_problem,
    upload_name_problem,
)


def nifti1_header(byte_order: str = "<") -> bytes:
    """A 352-byte NIfTI-1 single-file header: size 348, magic ``n+1``."""
    header = bytearray(352)
    header[:4] = struct.pack(f"{byte_order}i", 348)
    header[344:348] = b"n+1\x00"
    return bytes(header)


@pytest.mark.parametrize("value", ["phantom_000", "case 1 (arterial)", "1.2.840.113619.2.55", "label-final"])
def test_plain_file_names_are_ids(value):
    assert id_problem(value) is None


@pytest.mark.parametrize(
    "value, reason",
    [
        ("", "empty"),
        ("../x", "path separator"),
        ("a/b", "path separator"),
        ("..\\x", "path separator"),
        ("..", "'..'"),
        ("x..y", "'..'"),
        (".hidden", "starts with a dot"),
        ("x\x00y", "control character"),
    ],
)
def test_path_like_ids_are_refused(value, reason):
    assert reason in id_problem(value)


def test_dot_segments_and_backslashes_in_paths_are_refused():
    assert path_problem("/session/..") and path_problem("/ohif/./x") and path_problem("/a\\b")
    assert path_problem("/datastore/image") is None and path_problem("/infer/abdomen_ct_semcl_segmentation") is None


@pytest.mark.parametrize(
    "name, reason",
    [
        ("train.yaml", "only NIfTI"),
        ("x.nii.gz.py", "only NIfTI"),
        (".nii.gz", "starts with a dot"),
        ("../x.nii.gz", "path separator"),
        ("", "empty"),
    ],
)
def test_upload_names_must_be_plain_medical_image_names(name, reason):
    assert reason in upload_name_problem(name)


@pytest.mark.parametrize("name", ["ct.nii.gz", "CT.NII.GZ", "ct.nii", "label.seg.nrrd", "slice.dcm"])
def test_medical_image_names_pass(name):
    assert upload_name_problem(name) is None


@pytest.mark.parametrize(
    "name, content",
    [
        ("ct.nii", nifti1_header("<")),
        ("ct.nii", nifti1_header(">")),
        ("ct.nii.gz", gzip.compress(nifti1_header() + bytes(1000))),
        ("ct.nii", struct.pack("<i", 540) + b"n+2\x00\r\n\x1a\n" + bytes(532)),
        ("ct.nrrd", b"NRRD0004\ntype: uint8\ndimension: 1\nsizes: 2\nencoding: raw\n\n\x00\x01"),
        ("ct.dcm", bytes(128) + b"DICM" + bytes(64)),
    ],
)
def test_medical_images_pass_the_content_checks(name, content):
    assert medical_file_problem(name, io.BytesIO(content)) is None


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("ct.nii.gz", b"key: $expr\n", "no gzip header"),
        ("ct.nii.gz", gzip.compress(b"key: $expr\n"), "no NIfTI header"),
        ("ct.nii.gz", b"\x1f\x8b" + b"garbage" * 10, "not a valid gzip stream"),
        ("ct.nii", b"key: $expr\n", "no NIfTI header"),
        ("ct.nii", nifti1_header()[:344] + b"ni1\x00", "no NIfTI header"),  # a header-only pair's .hdr
        ("ct.nrrd", b"key: $expr\n", "no NRRD magic"),
        ("ct.nrrd", b"NRRD0004\ntype: uint8\ndata file: /etc/passwd\n\n", "detached data file"),
        ("ct.nrrd", b"NRRD0004\ntype: uint8\n", "no end of the NRRD header"),
        ("ct.dcm", b"key: $expr\n", "no DICOM preamble"),
        ("ct.dcm", b"", "no DICOM preamble"),
    ],
)
def test_other_content_under_a_medical_name_is_refused(name, content, reason):
    assert reason in medical_file_problem(name, io.BytesIO(content))


def test_host_entries_parse_with_and_without_port():
    assert parse_host("LocalHost:8000") == ("localhost", 8000)
    assert parse_host("[::1]:8000") == ("[::1]", 8000)
    assert parse_host("annotation.example") == ("annotation.example", None)
    assert parse_host("evil.example/x") is None and parse_host("a b") is None and parse_host("") is None


def test_a_loopback_server_accepts_its_loopback_names_on_its_port():
    allowed = allowed_hosts(("127.0.0.1", 8765))
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST:8765"):
        assert host_problem(host, allowed) is None, host
    for host in ("attacker.example:8765", "localhost:8766", "localhost", "127.0.0.1.attacker.example:8765"):
        assert "is not this server's address" in host_problem(host, allowed), host


def test_configured_names_are_accepted_on_any_port_or_the_one_given():
    allowed = allowed_hosts(("127.0.0.1", 8765), ["annotation.example", "tunnel.example:9000"])
    assert host_problem("annotation.example:1234", allowed) is None
    assert host_problem("annotation.example", allowed) is None
    assert host_problem("tunnel.example:9000", allowed) is None
    assert host_problem("tunnel.example:9001", allowed) is not None


def test_a_server_on_another_address_accepts_that_address_only():
    allowed = allowed_hosts(("192.168.1.5", 8000))
    assert host_problem("192.168.1.5:8000", allowed) is None
    assert host_problem("localhost:8000", allowed) is not None
    assert host_problem(None, allowed) == "the request names no Host"


@pytest.mark.parametrize(
    "text", ["", "{}", '{"device": "cpu"}', '{"label": "spleen"}', '{"image": "phantom_000"}', "[1, 2]", "not json"]
)
def test_params_that_name_no_file_pass(text):
    assert params_problem(text) is None


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"label": "/data/other_patient.nii.gz"}', "its 'label' is '/data/other_patient.nii.gz', not a plain name"),
        ('{"label": "../labels/final/x.nii.gz"}', "its 'label' is"),
        ('{"image": "/etc/hostname", "device": "cpu"}', "its 'image' is '/etc/hostname', not a plain name"),
        ('{"label": 3}', "its 'label' is 3, not a plain name"),
        ('{"prior": "x.nii.gz"}', "it sets 'prior', a file the server reads"),
        ('{"image_path": "phantom_000"}', "it sets 'image_path', a file the server reads"),
    ],
)
def test_params_that_name_a_file_are_refused(text, reason):
    assert reason in params_problem(text)
