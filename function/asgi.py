"""The service for Cloud Run: the same functions-framework app, served over HTTP/2 cleartext.

Cloud Run refuses HTTP/1 request bodies over 32 MiB; with HTTP/2 end to end there is no such
cap, so the container serves h2c with Hypercorn (``scripts/serve.sh``). Hypercorn's own WSGI
wrapper would buffer a whole upload in memory, so the Flask app is adapted to ASGI with a2wsgi,
whose ``wsgi.input`` streams the body as it arrives.
"""

from __future__ import annotations

from pathlib import Path

import functions_framework
from a2wsgi import WSGIMiddleware

_wsgi = functions_framework.create_app(target="scope", source=str(Path(__file__).resolve().parent / "main.py"))


def _streamed(environ: dict, start_response):  # noqa: ANN202 - a WSGI callable
    # The body ends where the stream ends (HTTP/2 need not send Content-Length): tell Werkzeug so.
    environ["wsgi.input_terminated"] = True
    return _wsgi(environ, start_response)


app = WSGIMiddleware(_streamed, workers=16)  # request threads; the service limits pipelines itself
