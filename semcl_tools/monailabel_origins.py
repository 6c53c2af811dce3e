"""MONAI Label's server behind a same-origin guard: requests that web pages of other origins send are refused.

MONAI Label 0.8.5 answers every origin's cross-origin requests, with credentials, and cannot be told otherwise: with
``MONAI_LABEL_CORS_ORIGINS`` set, ``monailabel start_server`` fails at start-up (``TypeError: Object of type
AnyHttpUrl is not JSON serializable``). A page open in the annotator's browser could then upload files, start training
or run inference on any image path of the server, even on 127.0.0.1. Browsers name the page's origin in an ``Origin``
header on such requests; this ASGI app answers those from another origin with HTTP 403 and passes everything else
(3D Slicer sends no ``Origin``; the server's own pages are its own origin) to MONAI Label's app unchanged.

The server helper starts ``monailabel start_server --uvicorn_app semcl_tools.monailabel_origins:app`` (with this
checkout on ``PYTHONPATH``); ``MONAI_LABEL_ALLOWED_ORIGINS`` (comma-separated) adds origins, e.g. an OHIF viewer
served elsewhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from monailabel.app import app as monailabel_app

__all__ = ["allowed_origins", "app"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def allowed_origins(environ: MutableMapping[str, str] = os.environ) -> set[str]:
    """The server's own origins (127.0.0.1 and localhost on ``MONAI_LABEL_SERVER_PORT``, which ``start_server``
    sets) and those of ``MONAI_LABEL_ALLOWED_ORIGINS``."""
    port = environ.get("MONAI_LABEL_SERVER_PORT", "8000")
    extra = [origin.strip().rstrip("/") for origin in environ.get("MONAI_LABEL_ALLOWED_ORIGINS", "").split(",")]
    return {f"http://127.0.0.1:{port}", f"http://localhost:{port}", *filter(None, extra)}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """MONAI Label's app, with requests from other origins refused (HTTP 403, naming the origin)."""
    if scope["type"] == "http":
        origin = dict(scope.get("headers", [])).get(b"origin", b"").decode("latin-1")
        if origin and origin not in allowed_origins():
            body = json.dumps({"detail": f"cross-origin request from {origin} refused"}).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 403, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
    await monailabel_app(scope, receive, send)
