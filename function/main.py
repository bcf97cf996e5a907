"""functions-framework entry point: ``functions-framework --source function/main.py --target scope``."""

from __future__ import annotations

import sys
from pathlib import Path

# functions-framework loads this file by path; make the ``function`` package importable from it.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from flask import Request, Response  # noqa: E402

from function import config  # noqa: E402
from function.app import build_app, setup_logging  # noqa: E402

setup_logging()
app = build_app(config.load())


def scope(request: Request) -> Response:
    """The one HTTP function: every route of the API, dispatched by the service's own Flask app."""
    with app.request_context(request.environ):
        return app.full_dispatch_request()
