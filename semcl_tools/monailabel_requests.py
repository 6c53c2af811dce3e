"""What a request to the MONAI Label server may hold: ids, uploaded files and the ``Host`` it names.

MONAI Label 0.8.5 joins the ids of its requests to the studies folder's path (``PUT /datastore/image?image=../../x``
writes outside it, ``tag`` names a folder under ``labels/``) and stores any uploaded file under the extension of its
name (a ``train.yaml`` uploaded over the served bundle's config ran at the next training request). It also answers
whatever ``Host`` a request names, so a web page whose name is rebound to 127.0.0.1 (DNS rebinding) reads it as its
own origin. These checks, applied by the server's guard (``semcl_tools.monailabel_origins``), keep ids to one file
name in the studies folder, uploads to medical images (NIfTI, NRRD, DICOM, by name and content) and requests to the
server's own address. An infer request's ``params`` (JSON merged into the task's request after the uploads) may not
name the files a task reads. Each returns ``None`` when the value passes, else the reason, for a message that names it.

Standard library only: the project's tests import it without MONAI Label.
"""

from __future__ import annotations

import ipaddress
import json
import re
import struct
import zlib
from collections.abc import Iterable
from typing import BinaryIO

__all__ = [
    "ID_PARAMETERS",
    "MEDICAL_EXTENSIONS",
    "allowed_hosts",
    "host_problem",
    "id_problem",
    "medical_file_problem",
    "params_problem",
    "parse_host",
    "path_problem",
    "upload_name_problem",
]

ID_PARAMETERS = ("image", "label", "id", "tag", "session_id")
"""Query parameters that MONAI Label 0.8.5 turns into file or folder names (studies, labels, label tags, sessions)."""
FILE_PARAMETERS = ("image_path", "file", "prior")
"""Request keys that name a file a task reads (MONAI Label's image path, the cascade's prior): never set by params."""
ID_IN_PARAMS = ("image", "label")
"""Request keys that params may set to a plain name only (3D Slicer's interactive models send the segment's name as
``label``), not a path: MONAI Label puts the study's path under ``image`` and the uploaded label's under ``label``."""
MEDICAL_EXTENSIONS = {".nii.gz": "NIfTI", ".nii": "NIfTI", ".nrrd": "NRRD", ".dcm": "DICOM"}
"""The file name extensions an upload may have (compared in lower case), and their formats."""
NRRD_HEADER_LIMIT = 1 << 20
"""Bytes of an NRRD header read to look for a detached data file (a longer header is refused)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ID_RULE = "an id is one file name in the studies folder: no '/', '\\' or '..', not empty, not starting with a dot"


def id_problem(value: str) -> str | None:
    """Why ``value`` (already URL-decoded) cannot be a study, label, tag or session id, or ``None``.

    Refused: empty, ``/`` or ``\\`` (a path), ``..`` anywhere, a leading dot (hidden files such as the datastore's
    ``.lock``) and control characters.
    """
    if not value:
        return f"empty ({_ID_RULE})"
    if "/" in value or "\\" in value:
        return f"it holds a path separator ({_ID_RULE})"
    if ".." in value:
        return f"it holds '..' ({_ID_RULE})"
    if value.startswith("."):
        return f"it starts with a dot ({_ID_RULE})"
    if _CONTROL.search(value):
        return f"it holds a control character ({_ID_RULE})"
    return None


def params_problem(text: str) -> str | None:
    """Why an infer request's ``params`` form field is refused, or ``None``.

    MONAI Label 0.8.5 merges ``params`` (a JSON object) into the task's request after the study's path (``image``)
    and the uploaded label's path (``label``), so ``{"label": "/other/patient.nii.gz"}`` would make a task read any
    file on the server. Refused: keys of :data:`FILE_PARAMETERS`, and values of :data:`ID_IN_PARAMS` keys that are not
    plain names (:func:`id_problem`). Text that is not a JSON object is left to MONAI Label (its own error).
    """
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    for key in FILE_PARAMETERS:
        if key in value:
            return f"it sets {key!r}, a file the server reads (name the study in the URL, upload a label file)"
    for key in ID_IN_PARAMS:
        if key in value and (not isinstance(value[key], str) or id_problem(value[key])):
            return (
                f"its {key!r} is {value[key]!r}, not a plain name (name the study in the URL, upload the label in the "
                "'label' field)"
            )
    return None


def path_problem(path: str) -> str | None:
    """Why a request path (URL-decoded) is refused: a ``.`` or ``..`` segment or a backslash (``/session/..``,
    ``/ohif/../..``), or ``None``."""
    if "\\" in path:
        return "it holds a backslash"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "it holds a '.' or '..' segment"
    return None


def medical_extension(name: str) -> str | None:
    """The medical image extension ``name`` ends with (``.nii.gz``, ``.nii``, ``.nrrd``, ``.dcm``), or ``None``."""
    lower = name.lower()
    return next((ext for ext in MEDICAL_EXTENSIONS if lower.endswith(ext)), None)


def upload_name_problem(name: str) -> str | None:
    """Why an uploaded file's name is refused, or ``None``.

    MONAI Label takes the study id from the name when the request names none, and the stored file's extension from
    it always: the name must be a plain file name (the id rules) that ends in a medical image extension with something
    before it.
    """
    problem = id_problem(name)
    if problem:
        return f"the file name is {problem}" if not name else f"the file name: {problem}"
    extension = medical_extension(name)
    if extension is None:
        return "only NIfTI (.nii, .nii.gz), NRRD (.nrrd) and DICOM (.dcm) files are accepted"
    if len(name) == len(extension):
        return "the file name is only an extension (the study id would be empty)"
    return None


def _nifti_header_problem(head: bytes) -> str | None:
    for order in "<>":  # either byte order
        if len(head) >= 348 and struct.unpack(f"{order}i", head[:4])[0] == 348 and head[344:348] == b"n+1\x00":
            return None
        if len(head) >= 8 and struct.unpack(f"{order}i", head[:4])[0] == 540 and head[4:8] == b"n+2\x00":
            return None
    return "no NIfTI header (header size 348 with magic 'n+1', or 540 with 'n+2')"


def _gzip_head(file: BinaryIO, size: int) -> bytes | str:
    """The first ``size`` uncompressed bytes of a gzip stream, or why there are none."""
    head = file.read(2)
    if head != b"\x1f\x8b":
        return "no gzip header"
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b""
    try:
        out = decompressor.decompress(head, size)
        while len(out) < size:
            chunk = file.read(65536)
            if not chunk:
                break
            out += decompressor.decompress(decompressor.unconsumed_tail + chunk, size - len(out))
    except zlib.error as error:
        return f"not a valid gzip stream ({error})"
    return out


DETACHED_NRRD = "an NRRD header that names a detached data file (its voxels would be read from another path)"


def _nrrd_problem(file: BinaryIO) -> str | None:
    if file.read(7) != b"NRRD000":
        return "no NRRD magic ('NRRD000')"
    file.readline(NRRD_HEADER_LIMIT)  # the rest of the magic line
    read = 0
    while read <= NRRD_HEADER_LIMIT:
        line = file.readline(NRRD_HEADER_LIMIT)
        if not line:
            break
        read += len(line)
        text = line.strip().lower()
        if not text:
            return None
        if text.startswith((b"data file:", b"datafile:")):
            return DETACHED_NRRD
    return f"no end of the NRRD header within {NRRD_HEADER_LIMIT} bytes"


def medical_file_problem(name: str, file: BinaryIO) -> str | None:
    """Why an uploaded file (``name``, checked with :func:`upload_name_problem` first; ``file`` open for reading, at its
    start) is not the medical image its extension says, or ``None``.

    Content checks, reading only the start: NIfTI-1/2 header size and magic (``.nii``; ``.nii.gz`` after gzip's
    magic, decompressing the header only), ``NRRD000`` magic and no detached data file (``.nrrd``), ``DICM`` at
    byte 128 (``.dcm``).
    """
    extension = medical_extension(name)
    what = MEDICAL_EXTENSIONS.get(extension or "", "")
    if extension == ".nii.gz":
        head = _gzip_head(file, 544)
        problem = head if isinstance(head, str) else _nifti_header_problem(head)
    elif extension == ".nii":
        problem = _nifti_header_problem(file.read(544))
    elif extension == ".nrrd":
        problem = _nrrd_problem(file)
    elif extension == ".dcm":
        problem = None if file.read(132)[128:132] == b"DICM" else "no DICOM preamble ('DICM' at byte 128)"
    else:
        return upload_name_problem(name) or "not a medical image file"
    if problem is None or problem == DETACHED_NRRD:
        return problem
    return f"it is named {extension} but is not a {what} file: {problem}"


def parse_host(value: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a ``Host`` header or an allowed-host entry (``name``, ``name:port``, ``[v6]``,
    ``[v6]:port``), name in lower case, IPv6 in brackets; ``None`` when malformed."""
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(\d{1,5}))?", value.strip())
    if not match:
        return None
    return match.group(1).lower(), int(match.group(2)) if match.group(2) else None


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(server: tuple[str, int] | None, configured: Iterable[str] = ()) -> set[tuple[str, int | None]]:
    """The ``(name, port)`` pairs a request may name: the address that received it (``server``, the ASGI scope's
    local address: host and port), the loopback names on its port when that address is a loopback one, and the
    ``configured`` entries (``name``: any port; ``name:port``: that port). A port of ``None`` matches any port."""
    hosts: set[tuple[str, int | None]] = set()
    if server:
        address, port = str(server[0]), int(server[1])
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            ip = None
        mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
        name = f"[{ip}]" if ip is not None and ip.version == 6 else address.lower()
        hosts.add((name, port))
        if ip is not None and (ip.is_loopback or (mapped is not None and mapped.is_loopback)):
            hosts.update((loopback, port) for loopback in LOOPBACK_NAMES)
    for entry in configured:
        parsed = parse_host(entry)
        if parsed:
            hosts.add(parsed)
    return hosts


def host_problem(host: str | None, allowed: set[tuple[str, int | None]], default_port: int = 80) -> str | None:
    """Why a request's ``Host`` header is refused (missing, malformed, or not one of ``allowed``), or ``None``.

    A ``Host`` without a port means ``default_port`` (HTTP's 80)."""
    if not host:
        return "the request names no Host"
    parsed = parse_host(host)
    if parsed is None:
        return f"Host {host!r} is malformed"
    name, port = parsed
    port = default_port if port is None else port
    if (name, port) in allowed or (name, None) in allowed:
        return None
    own = ", ".join(sorted(f"{n}:{p}" if p else n for n, p in allowed))
    return (
        f"Host {host!r} is not this server's address ({own}): a web page whose name was rebound to this machine "
        "(DNS rebinding) sends such requests; a name that reaches the server through a proxy or tunnel is added with "
        "the helper's --allowed_host NAME (MONAI_LABEL_ALLOWED_HOSTS)"
    )
