"""The HTTP surface: a Flask blueprint served at ``/`` and at ``/api``, translation only.

Each view turns a request into one call of ``records`` (or the injected ``process``,
which runs the pipeline and stores its result) and the answer into the contract's
JSON. The contract's errors are error handlers; request ids, auth, CORS, the body
drain and the access log are request hooks.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from flask import Blueprint, Flask, Response, current_app, g, request, url_for
from pydantic import ValidationError
from werkzeug.exceptions import ClientDisconnected, HTTPException, MethodNotAllowed

from . import auth, logs, upload, web
from .auth import FrameSigner, Unauthorized
from .config import Config
from .frames import VideoError
from .slots import Slots
from .models import (
    Accepted,
    Body,
    Caller,
    GeneratedPrompt,
    Model,
    ProcessingResponse,
    RecordingRequest,
    Session,
    SessionCreate,
    SessionPatch,
    SessionStatusView,
    SessionView,
)
from .pipeline import PipelineTimeout, UrlNotAllowed
from .records import Records, SessionNotFound
from .sessions import BadPageToken, SessionsUnavailable
from .storage import ObjectNotFound, StorageUnavailable
from .tasks import JOB_HEADER, JobSigner, JobTicket, QueueUnavailable

log = logging.getLogger("scope.http")

MAX_JSON_BYTES = 1024 * 1024
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})  # the methods whose bodies are read
DRAIN_LIMIT = 128 * 1024 * 1024  # unread body we still read (and drop) so the client sees our answer
EARLY_DRAIN_LIMIT = 1024 * 1024  # the same, for a body refused before any of it was read (429, 401, 415)
RETRY_AFTER_S = 5
# No Bearer token needed: health, a frame (it checks its signature itself), the web page and its files
# (they hold no data; the page asks for the key and sends it with its API calls).
# A task's callback checks its own signed ticket.
PUBLIC_ENDPOINTS = {"health", "get_frame", "index", "static", "run_job"}

Process = Callable[[RecordingRequest], Session]  # run the pipeline on a recording and store the session
Accept = Callable[[RecordingRequest, Callable[[], None]], Session]  # claim it now, process it later, then call back
RunJob = Callable[[JobTicket], "Session | None"]  # a task's callback: process the accepted session it names


class ApiError(Exception):
    """An answer of the contract's error shape."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


@dataclass
class Scope:
    """What the views work with, kept on the Flask app."""

    config: Config
    records: Records
    process: Process
    accept: Accept | None
    run_job: RunJob | None  # set when accepted recordings go through a task queue
    job_signer: JobSigner | None
    signer: FrameSigner
    slots: Slots


def _scope() -> Scope:
    return current_app.extensions["scope"]


api = Blueprint("scope", __name__)


def create_app(config: Config, records: Records, process: Process, accept: Accept | None = None,
               run_job: RunJob | None = None) -> Flask:
    """The service as a Flask app: the blueprint at ``/`` and at ``/api``, and its web page at ``/``."""
    app = Flask("scope", static_folder=None)
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False  # "/sessions//x" is no route (404), not a redirect to guess at
    queued = run_job is not None and config.tasks_queue is not None
    app.extensions["scope"] = Scope(config, records, process, accept, run_job if queued else None,
                                    JobSigner(config.signing_secret) if queued else None,
                                    FrameSigner(config.signing_secret),
                                    Slots(config.max_inflight, owners=len(set(config.api_keys.values()))))
    app.register_blueprint(api)
    app.register_blueprint(api, url_prefix="/api", name="api")
    app.register_blueprint(web.page)
    return app


def json_response(body: Model | list[Any] | dict[str, Any], status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    data = body.to_json() if isinstance(body, Model) else body
    return Response(json.dumps(data, ensure_ascii=False), status=status, headers=headers, mimetype="application/json")


# --------------------------------------------------------------------------- hooks


@api.before_app_request
def _start() -> Response | None:
    g.request_id = request.headers.get("X-Request-Id", "")[:64] or "req_" + uuid.uuid4().hex[:16]
    g.started = time.monotonic()
    g.log_token = logs.bind_request(g.request_id, request.headers.get("X-Cloud-Trace-Context"),
                                    _scope().config.gcp_project)
    if request.method not in BODY_METHODS:  # a body nobody asked for is never read (nor waited for)
        g.unread_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")
        request.environ["wsgi.input"] = io.BytesIO()
    if request.method == "OPTIONS":
        return Response(status=204)  # a CORS preflight; the headers are added on the way out
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    if request.endpoint is not None and endpoint not in PUBLIC_ENDPOINTS:
        g.owner = auth.owner_of(request.headers.get("Authorization", ""), _scope().config.api_keys)
    return None


@api.after_app_request
def _finish(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    _cors(response)
    _drain_body(response)
    latency = time.monotonic() - g.get("started", time.monotonic())
    log.info("%s %s %s", request.method, request.path, response.status_code, extra={"fields": {
        "httpRequest": {"requestMethod": request.method, "requestUrl": request.path,
                        "status": response.status_code, "latency": f"{latency:.3f}s"}}})
    return response


@api.teardown_app_request
def _unbind(_: BaseException | None) -> None:
    token = g.pop("log_token", None)
    if token is not None:
        logs.unbind_request(token)


def _cors(response: Response) -> None:
    origin = request.headers.get("Origin")
    allowed = _scope().config.cors_origins
    if not origin or not allowed or ("*" not in allowed and origin not in allowed):
        return
    response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
    response.headers.add("Vary", "Origin")
    response.headers["Access-Control-Expose-Headers"] = "X-Next-Page-Token, X-Request-Id, Retry-After, Location"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Prefer"
        response.headers["Access-Control-Max-Age"] = "600"


def _drain_body(response: Response) -> None:
    """Read what the client still sends (up to a limit) so it can read our answer.

    A refusal before the body was read (429, 401, …) reads at most EARLY_DRAIN_LIMIT of it, and
    none if the client waits for ``100 Continue`` (reading would send the 100: the connection is
    closed instead); once the body was being read, up to DRAIN_LIMIT. A larger remainder is left
    unread and the connection closed; the response is made a streamed one so the framework does
    not try to read that remainder itself. Over HTTP/2 nothing is drained: the server resets the
    stream once the answer is out, and the connection goes on.
    """
    if request.environ.get("SERVER_PROTOCOL", "").startswith("HTTP/2"):
        if request.method in BODY_METHODS:
            _leave_unread(response, close=False)
        return
    length = request.content_length
    started = g.get("body_started", False)
    limit = DRAIN_LIMIT if started else EARLY_DRAIN_LIMIT
    if not started and "100-continue" in request.headers.get("Expect", "").lower():
        drained = False
    elif request.method not in BODY_METHODS:
        drained = not g.get("unread_body")
    elif g.get("body_stalled"):
        drained = False
    elif length is not None and length > limit:
        drained = False
    else:
        total = 0
        try:
            while total <= limit:
                chunk = request.stream.read(upload.CHUNK)
                if not chunk:
                    break
                total += len(chunk)
            drained = total <= limit
        except (OSError, ClientDisconnected, upload.BodyStalled):
            drained = False  # the client is gone: nothing more to read, close the connection
    if not drained:
        _leave_unread(response, close=True)


def _leave_unread(response: Response, close: bool) -> None:
    """Make ``response`` a streamed one, so the framework does not read the rest of the body itself
    before answering; ``close`` ends the HTTP/1.1 connection after it."""
    response.response = iter([response.get_data()])
    if close:
        response.headers["Connection"] = "close"


# --------------------------------------------------------------------------- errors


def _error(status: int, code: str, message: str, field: str | None = None,
           headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"statusCode": status, "code": code, "message": message}
    if field:
        body["field"] = field
    body["requestId"] = g.get("request_id", "")
    return json_response(body, status, headers)


@api.app_errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return _error(exc.status, exc.code, exc.message, exc.field, exc.headers)


@api.app_errorhandler(upload.UploadError)
def _upload_error(exc: upload.UploadError) -> Response:
    if isinstance(exc, upload.BodyStalled):
        g.body_stalled = True  # reading on would wait again: the connection is closed instead
    return _error(exc.status, exc.code, exc.message, exc.field)


@api.app_errorhandler(Unauthorized)
def _unauthorized(exc: Unauthorized) -> Response:
    return _error(401, "UNAUTHORIZED", str(exc))


@api.app_errorhandler(SessionNotFound)
def _session_not_found(_: SessionNotFound) -> Response:
    return _error(404, "NOT_FOUND", "session not found")


@api.app_errorhandler(UrlNotAllowed)
def _url_not_allowed(exc: UrlNotAllowed) -> Response:
    return _error(422, "URL_NOT_ALLOWED", str(exc), "seedUrl")


@api.app_errorhandler(VideoError)
def _undecodable(exc: VideoError) -> Response:
    return _error(422, "UNDECODABLE_VIDEO", f"the video cannot be processed: {exc}", "file")


@api.app_errorhandler(PipelineTimeout)
def _timeout(exc: PipelineTimeout) -> Response:
    return _error(504, "TIMEOUT", str(exc))


@api.app_errorhandler(StorageUnavailable)
@api.app_errorhandler(SessionsUnavailable)
@api.app_errorhandler(QueueUnavailable)
@api.app_errorhandler(upload.DiskFull)
def _unavailable(exc: Exception) -> Response:
    log.warning("store unavailable: %s", exc)
    return _error(503, "UNAVAILABLE", "storage is unavailable, try again later")


@api.app_errorhandler(HTTPException)
def _http_exception(exc: HTTPException) -> Response:
    if isinstance(exc, MethodNotAllowed):
        allowed = ", ".join(sorted(exc.valid_methods or []))
        return _error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here", headers={"Allow": allowed})
    status = exc.code or 500
    if status == 404:
        return _error(404, "NOT_FOUND", f"no route {request.method} {request.path}")
    code = {413: "FILE_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE"}.get(status, "INVALID_FIELD")
    return _error(status, code if status < 500 else "INTERNAL", exc.description or exc.name)


@api.app_errorhandler(Exception)
def _bug(_: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, request.path)  # the log keeps what the answer hides
    return _error(500, "INTERNAL", "internal error")


# --------------------------------------------------------------------------- JSON in and out


def _json_body(model: type[Body]) -> Body:
    """The request's JSON object, validated by ``model``; the first broken rule is the contract's error."""
    g.body_started = True
    raw = request.stream.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise ApiError(413, "FILE_TOO_LARGE", f"the JSON body exceeds {MAX_JSON_BYTES} bytes")
    try:
        body = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        raise ApiError(400, "INVALID_FIELD", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_FIELD", "the body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "extra_forbidden":
            raise ApiError(400, "INVALID_FIELD", f"{name} cannot be changed", name) from None
        fields = {info.alias or key: info for key, info in model.model_fields.items()}
        value = body.get(name)
        empty = first["type"] == "missing" or (isinstance(value, str) and not value.strip())
        if empty and name in fields and fields[name].is_required():
            raise ApiError(400, "MISSING_FIELD", f"{name} is required", name) from None
        rule = fields[name].description if name in fields else None
        raise ApiError(400, "INVALID_FIELD", f"{name} must be {rule}" if rule else first["msg"], name) from None


def _thumbnail(session_id: str, frame_id: str) -> str:
    scope = _scope()
    if scope.config.auth_enabled:
        return scope.signer.signed_path(session_id, frame_id)
    return auth.frame_path(session_id, frame_id)


def session_view(session: Session, detail: bool = True) -> dict[str, Any]:
    return SessionView.of(session, _thumbnail).to_json(detail=detail)


# --------------------------------------------------------------------------- routes


@api.get("/health")
@api.get("/healthz")
def health() -> Response:
    """200 when the service can take work: both stores answer."""
    scope = _scope()
    scope.records.check()
    return json_response({"status": "ok", "storage": scope.config.storage, "sessions": scope.config.sessions,
                          "auth": scope.config.auth_enabled})


@api.get("/auth/me")
def me() -> Response:
    return json_response(Caller(id=g.owner, name=g.owner))


@api.post("/recordings")
def create_recording() -> Response:
    scope = _scope()
    owner = g.owner
    if not scope.slots.try_take(owner):
        raise ApiError(429, "BUSY", "the service is at its limit of recordings in flight (or this caller at its "
                       "share of them), retry later", headers={"Retry-After": str(RETRY_AFTER_S)})
    raw = None
    handed_off = False
    try:
        g.body_started = True
        raw = upload.read_multipart(request.stream, request.content_type, request.content_length,
                                    tempfile.gettempdir())
        fields = upload.validate(raw)
        assert raw.video_path is not None
        recording = RecordingRequest(
            video_path=raw.video_path, file_size=raw.video_size, mime_type=fields.mime_type, title=fields.title,
            seed_url=fields.seed_url, notes=fields.notes, agent_target=fields.agent_target,
            client_duration_ms=fields.client_duration_ms, owner_id=g.owner,
        )
        if scope.accept is not None and _prefers_async():
            upload_left = raw

            def done() -> None:  # the job owns the upload and the slot from here on
                upload_left.discard()
                scope.slots.give_back(owner)

            session = scope.accept(recording, done)
            handed_off = True
            status_url = url_for(f"{request.blueprint}.session_status", session_id=session.id)
            return json_response(Accepted(session_id=session.id, status=session.status,
                                          processing_status=session.processing_status, progress=session.progress,
                                          status_url=status_url),
                                 202, headers={"Location": status_url, "Preference-Applied": "respond-async"})
        session = scope.process(recording)
        return json_response(ProcessingResponse.of(session, _thumbnail))
    finally:
        if not handed_off:
            if raw is not None:
                raw.discard()
            scope.slots.give_back(owner)


def _prefers_async() -> bool:
    """``Prefer: respond-async`` (RFC 7240): answer 202 at once and process in the background."""
    preferences = ",".join(request.headers.getlist("Prefer")).lower()
    return any(p.split(";")[0].strip() == "respond-async" for p in preferences.split(","))


@api.post("/jobs/<session_id>")
def run_job(session_id: str) -> Response:
    """A task queue's callback: process the accepted session it names, inside this request (which keeps
    the instance alive). 2xx ends the task; 429 and 503 have the queue retry it later."""
    scope = _scope()
    if scope.run_job is None or scope.job_signer is None:
        raise ApiError(404, "NOT_FOUND", f"no route {request.method} {request.path}")
    ticket = scope.job_signer.ticket(request.headers.get(JOB_HEADER, ""), session_id)
    if ticket is None:
        raise Unauthorized(f"a valid {JOB_HEADER} header is required")
    if not scope.slots.try_take(ticket.owner_id):
        raise ApiError(429, "BUSY", "the instance is at its limit of recordings in flight, retry later",
                       headers={"Retry-After": str(RETRY_AFTER_S)})
    try:
        session = scope.run_job(ticket)
    finally:
        scope.slots.give_back(ticket.owner_id)
    return json_response({"sessionId": session_id, "status": session.status if session else "deleted",
                          "lastError": session.last_error if session else None})


@api.get("/sessions")
def list_sessions() -> Response:
    raw_limit = request.args.get("limit")
    limit = None
    if raw_limit is not None:
        if not raw_limit.isascii() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
            raise ApiError(400, "INVALID_FIELD", "limit must be an integer from 1 to 1000", "limit")
        limit = int(raw_limit)
    try:
        items, token = _scope().records.list(g.owner, limit, request.args.get("pageToken") or None)
    except BadPageToken as exc:
        raise ApiError(400, "INVALID_FIELD", str(exc), "pageToken") from None
    headers = {"X-Next-Page-Token": token} if token else None
    return json_response([session_view(s, detail=False) for s in items], headers=headers)


@api.post("/sessions")
def create_session() -> Response:
    body = _json_body(SessionCreate)
    return json_response(session_view(_scope().records.create(g.owner, body)), 201)


@api.get("/sessions/stats")
def stats() -> Response:
    return json_response(_scope().records.stats(g.owner))


@api.get("/sessions/<session_id>")
def get_session(session_id: str) -> Response:
    return json_response(session_view(_scope().records.get(g.owner, session_id)))


@api.patch("/sessions/<session_id>")
def patch_session(session_id: str) -> Response:
    records = _scope().records
    session = records.get(g.owner, session_id)  # an unknown session is 404 before its body is judged
    return json_response(session_view(records.patch(session, _json_body(SessionPatch))))


@api.delete("/sessions/<session_id>")
def delete_session(session_id: str) -> Response:
    _scope().records.delete(g.owner, session_id)
    return Response(status=204)


@api.get("/sessions/<session_id>/status")
def session_status(session_id: str) -> Response:
    return json_response(SessionStatusView.of(_scope().records.get(g.owner, session_id)))


@api.post("/sessions/<session_id>/generate-prompt")
def generate_prompt(session_id: str) -> Response:
    session = _scope().records.regenerate_prompt(g.owner, session_id)
    return json_response(GeneratedPrompt(session_id=session.id, prompt=session.prompt))


@api.get("/sessions/<session_id>/prompt")
def get_prompt(session_id: str) -> Response:
    return Response(_scope().records.get(g.owner, session_id).prompt, mimetype="text/markdown")


@api.get("/sessions/<session_id>/frames/<frame_id>")
def get_frame(session_id: str, frame_id: str) -> Response:
    scope = _scope()
    signed = scope.config.auth_enabled and scope.signer.allows(request.args.get("signature", ""), session_id, frame_id)
    if not signed:
        owner = auth.owner_of(request.headers.get("Authorization", ""), scope.config.api_keys)
        if not any(f.id == frame_id for f in scope.records.get(owner, session_id).frames):
            raise ApiError(404, "NOT_FOUND", "frame not found")
    if not frame_id.replace("_", "").isalnum() or not session_id.replace("_", "").isalnum():
        raise ApiError(404, "NOT_FOUND", "frame not found")
    try:
        data = scope.records.frame_image(session_id, frame_id)
    except ObjectNotFound:
        raise ApiError(404, "NOT_FOUND", "frame not found") from None
    return Response(data, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})
