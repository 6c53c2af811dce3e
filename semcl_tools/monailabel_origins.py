"""MONAI Label's server behind the project's request guard: other hosts and origins, path-like ids, non-image uploads
and changes to the served bundle's files are refused before MONAI Label sees the request.

MONAI Label 0.8.5 has no such checks of its own:

- It answers every origin's cross-origin requests, with credentials, and cannot be told otherwise (with
  ``MONAI_LABEL_CORS_ORIGINS`` set, ``monailabel start_server`` fails at start-up: ``TypeError: Object of type
  AnyHttpUrl is not JSON serializable``). Browsers name the page's origin in an ``Origin`` header: a request from
  another origin is refused (HTTP 403). 3D Slicer sends no ``Origin``; the server's own pages are its own origin.
- It answers any ``Host``: a page whose name is rebound to 127.0.0.1 (DNS rebinding) sends same-origin requests
  without ``Origin``. A request whose ``Host`` is not the address that received it (with 127.0.0.1, localhost and
  [::1] on its port when that is a loopback address) or a configured name is refused (HTTP 403).
- It joins ids to paths (``PUT /datastore/image?image=../../x`` writes outside the studies folder; ``tag`` names a
  folder) and stores uploads of any kind under their name's extension (a ``train.yaml`` over the served bundle's
  config ran at the next ``POST /train``). Ids (query parameters ``image``, ``label``, ``id``, ``tag``,
  ``session_id``, URL-decoded) must be one plain file name and path segments may not be ``.`` or ``..`` (HTTP 400);
  every uploaded file (multipart ``PUT /datastore/image``, ``/datastore/label``, ``/datastore/``, ``POST /infer``,
  ``PUT /session/``, any endpoint) must be named and built as a NIfTI, NRRD or DICOM file
  (``semcl_tools.monailabel_requests``; HTTP 400); ``PUT`` and ``DELETE /model/<name>`` (replace or remove the
  served ``models/model.pt``) are refused (HTTP 403). So no upload lands outside the studies folder, and none has the
  extension of a bundle file (config, script, weights).
- It merges an infer request's ``params`` (JSON, a form field) into the task's request after the study's and the
  uploaded label's paths: ``params`` that set a file a task reads (``image_path``, ``file``, ``prior``) or an
  ``image``/``label`` that is a path are refused (HTTP 400), in multipart and URL-encoded forms alike.

Every refusal answers JSON ``{"detail": ...}`` naming the host, origin, id or file and the reason, and is logged.
The server helper starts ``monailabel start_server --uvicorn_app semcl_tools.monailabel_origins:app`` (with this
checkout on ``PYTHONPATH``). ``MONAI_LABEL_ALLOWED_ORIGINS`` (comma-separated) adds origins, e.g. an OHIF viewer
served elsewhere; ``MONAI_LABEL_ALLOWED_HOSTS`` (comma-separated ``name`` for any port or ``name:port``; the helper's
``--allowed_host``) adds names that reach the server, e.g. through a proxy or a tunnel to another local port.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, MutableMapping
from typing import IO, Any

from monailabel.app import app as monailabel_app
from starlette.datastructures import QueryParams, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from semcl_tools.monailabel_requests import (
    ID_PARAMETERS,
    allowed_hosts,
    host_problem,
    id_problem,
    medical_file_problem,
    params_problem,
    path_problem,
    upload_name_problem,
)

__all__ = ["allowed_origins", "app", "configured_hosts"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger(__name__)
SPOOL_BYTES = 16 << 20
"""A multipart body is kept in memory up to this size while it is checked, then in a temporary file."""
REPLAY_CHUNK = 1 << 20
FORMS = ("multipart/", "application/x-www-form-urlencoded")
"""Request bodies read and checked before MONAI Label sees them (its endpoints take files and ``params`` as forms)."""
BUNDLE_FILE_ROUTES = ("model",)
"""Path prefixes where requests other than GET and HEAD change the served bundle's files (``PUT /model/<name>``
replaces ``models/model.pt`` with the upload, ``DELETE`` moves it away)."""


class RefusedRequestError(Exception):
    """A request the guard answers itself: HTTP ``status`` with ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(status, detail)
        self.status, self.detail = status, detail


def allowed_origins(environ: MutableMapping[str, str] = os.environ) -> set[str]:
    """The server's own origins (127.0.0.1 and localhost on ``MONAI_LABEL_SERVER_PORT``, which ``start_server``
    sets) and those of ``MONAI_LABEL_ALLOWED_ORIGINS``."""
    port = environ.get("MONAI_LABEL_SERVER_PORT", "8000")
    extra = [origin.strip().rstrip("/") for origin in environ.get("MONAI_LABEL_ALLOWED_ORIGINS", "").split(",")]
    return {f"http://127.0.0.1:{port}", f"http://localhost:{port}", *filter(None, extra)}


def configured_hosts(environ: MutableMapping[str, str] = os.environ) -> list[str]:
    """The host names of ``MONAI_LABEL_ALLOWED_HOSTS`` (comma-separated ``name`` or ``name:port``)."""
    return [host.strip() for host in environ.get("MONAI_LABEL_ALLOWED_HOSTS", "").split(",") if host.strip()]


def _header_values(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == name]


def check_host(scope: Scope) -> None:
    """Refuse (403) a request whose ``Host`` is missing, repeated or not one of the server's own names."""
    hosts = _header_values(scope, b"host")
    if len(set(hosts)) > 1:
        raise RefusedRequestError(400, f"request refused: it names several hosts ({', '.join(hosts)})")
    server = scope.get("server")
    if server is None:  # a Unix socket: the port MONAI Label was started with
        server = ("127.0.0.1", int(os.environ.get("MONAI_LABEL_SERVER_PORT", "8000")))
    problem = host_problem(hosts[0] if hosts else None, allowed_hosts(server, configured_hosts()))
    if problem:
        raise RefusedRequestError(403, f"request for host {hosts[0] if hosts else '(none)'} refused: {problem}")


def check_origin(scope: Scope) -> None:
    """Refuse (403) a request from a web page of another origin."""
    for origin in _header_values(scope, b"origin"):
        if origin and origin not in allowed_origins():
            raise RefusedRequestError(403, f"cross-origin request from {origin} refused")


def check_target(scope: Scope) -> None:
    """Refuse a path with ``.``/``..`` segments (400), a change to the bundle's files (403) and ids that are not one
    plain file name (400; an empty ``image`` is left to :func:`check_empty_image`)."""
    path, method = scope.get("path", ""), scope.get("method", "GET")
    problem = path_problem(path)
    if problem:
        raise RefusedRequestError(400, f"path {path!r} refused: {problem}")
    segments = [segment for segment in path.split("/") if segment]
    if segments and segments[0] in BUNDLE_FILE_ROUTES and method not in ("GET", "HEAD", "OPTIONS"):
        raise RefusedRequestError(
            403,
            f"{method} {path} refused: the served bundle's files (configs, scripts, models/model.pt) are never "
            "replaced or removed through the server; train through it, or place a model.pt in the bundle copy's "
            "models/ folder on the server",
        )
    params = QueryParams(scope.get("query_string", b""))
    for name in ID_PARAMETERS:
        for value in params.getlist(name):
            if value == "" and name in ("image", "tag", "session_id"):
                continue  # MONAI Label reads these as not given (the uploaded file's name, tag 'final', no session)
            problem = id_problem(value)
            if problem:
                raise RefusedRequestError(400, f"{name} {value!r} refused: {problem}")


def check_empty_image(scope: Scope, uploads: int) -> None:
    """Refuse an empty ``image`` id (400) unless a file is uploaded (its name gives the id) or a session is named."""
    params = QueryParams(scope.get("query_string", b""))
    if "" in params.getlist("image") and not uploads and not any(params.getlist("session_id")):
        raise RefusedRequestError(400, f"image '' refused: {id_problem('')}")


def check_uploads(form: list[tuple[str, Any]]) -> int:
    """Refuse (400) any uploaded file that is not named and built as a NIfTI, NRRD or DICOM file, and ``params`` that
    name files (:func:`~semcl_tools.monailabel_requests.params_problem`); the file count."""
    count = 0
    for field, value in form:
        if not isinstance(value, UploadFile):
            problem = params_problem(value) if field == "params" and isinstance(value, str) else None
            if problem:
                raise RefusedRequestError(400, f"params refused: {problem}")
            continue
        count += 1
        name = value.filename or ""
        value.file.seek(0)
        problem = upload_name_problem(name) or medical_file_problem(name, value.file)
        value.file.seek(0)
        if problem:
            raise RefusedRequestError(400, f"upload {field!r} file {name!r} refused: {problem}")
    return count


async def read_form(scope: Scope, receive: Receive, spool: IO[bytes]) -> int:
    """Check the files and ``params`` of a form (multipart or URL-encoded; :func:`check_uploads`), parsed as MONAI
    Label's endpoints parse it (Starlette's parser), with the raw body copied into ``spool`` on the way; the file
    count."""

    async def tee() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            spool.write(message.get("body", b""))
        return message

    try:
        form = await Request(scope, tee).form()
    except (MultiPartException, HTTPException) as error:
        raise RefusedRequestError(
            400, f"malformed multipart body refused: {getattr(error, 'detail', None) or error}"
        ) from error
    try:
        return check_uploads(list(form.multi_items()))
    finally:
        await form.close()


def replay(spool: IO[bytes], receive: Receive) -> Receive:
    """A ``receive`` that hands the spooled body on in chunks, then waits on the client's (for its disconnect)."""
    size = spool.tell()
    spool.seek(0)
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        chunk = spool.read(REPLAY_CHUNK)
        sent = spool.tell() >= size
        return {"type": "http.request", "body": chunk, "more_body": not sent}

    return replayed


async def refuse(scope: Scope, send: Send, refusal: RefusedRequestError) -> None:
    """Answer a refusal (HTTP JSON, or a closed websocket) and log it."""
    logger.warning("refused %s %s: %s", scope.get("method", scope["type"]), scope.get("path", ""), refusal.detail)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"detail": refusal.detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """MONAI Label's app behind the guard: requests for other hosts, from other origins, with path-like ids, with
    uploads that are not medical images, or changing the bundle's files are answered with HTTP 400/403."""
    if scope["type"] not in ("http", "websocket"):
        await monailabel_app(scope, receive, send)
        return
    spool = None
    try:
        check_host(scope)
        check_origin(scope)
        if scope["type"] == "http":
            check_target(scope)
            uploads = 0
            if any(form in value.lower() for value in _header_values(scope, b"content-type") for form in FORMS):
                spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
                try:
                    uploads = await read_form(scope, receive, spool)
                except ClientDisconnect:
                    spool.close()
                    return
                receive = replay(spool, receive)
            check_empty_image(scope, uploads)
    except RefusedRequestError as refusal:
        if spool is not None:
            spool.close()
        await refuse(scope, send, refusal)
        return
    try:
        await monailabel_app(scope, receive, send)
    finally:
        if spool is not None:
            spool.close()
