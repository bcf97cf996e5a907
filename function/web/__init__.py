"""The service's own web page: upload a recording, watch it processed, read the steps, copy the prompt.

One HTML page rendered by Flask (Jinja) at ``/``, with its stylesheet and script under ``/ui/``;
everything else it does goes through the public API from the same origin. No build step, nothing
from other hosts, and a strict Content-Security-Policy: the page runs only its own script, and
every text it shows (titles, steps, page errors — all of them controlled by someone else) is put
in as text, never as markup.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template

from ..models import AGENT_TARGETS, DEFAULT_AGENT_TARGET
from ..config import MAX_VIDEO_BYTES

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")

page = Blueprint("web", __name__, template_folder="templates", static_folder="static", static_url_path="/ui")


@page.get("/")
def index() -> Response:
    html = render_template("index.html", agent_targets=AGENT_TARGETS, default_target=DEFAULT_AGENT_TARGET,
                           max_bytes=MAX_VIDEO_BYTES, auth=current_app.extensions["scope"].config.auth_enabled)
    return Response(html, mimetype="text/html")


@page.after_request
def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    return response
