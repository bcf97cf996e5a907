"""The HTTP surface: routes, auth, CORS, the contract's errors and JSON shapes.

``Service`` holds the dependencies; ``Service.handle`` takes a Flask/Werkzeug
request and returns a response. Every route is served at the root and under
``/api``. Nothing here knows how a recording is processed (``pipeline``) or
where things are kept (``storage``, ``sessions``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Callable

from flask import Request, Response
from werkzeug.exceptions import ClientDisconnected, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from . import logs, pipeline, upload
from .config import Config
from .frames import VideoError
from .models import AGENT_TARGETS, SESSION_STATUSES, Session, new_id, now_rfc3339, to_json
from .prompts import Evidence, render
from .sessions import BadPageToken, SessionStore, SessionsUnavailable
from .storage import BlobStore, ObjectNotFound, StorageUnavailable

log = logging.getLogger("scope.http")

MAX_JSON_BYTES = 1024 * 1024
DRAIN_LIMIT = 128 * 1024 * 1024  # unread body we still read (and drop) so the client sees our answer
THUMBNAIL_TTL_S = 3600
RETRY_AFTER_S = 5
ANONYMOUS = "anonymous"

ROUTES = Map(
    [
        Rule("/health", endpoint="health", methods=["GET"]),
        Rule("/healthz", endpoint="health", methods=["GET"]),
        Rule("/recordings", endpoint="create_recording", methods=["POST"]),
        Rule("/sessions", endpoint="list_sessions", methods=["GET"]),
        Rule("/sessions", endpoint="create_session", methods=["POST"]),
        Rule("/sessions/stats", endpoint="stats", methods=["GET"]),
        Rule("/sessions/<session_id>", endpoint="get_session", methods=["GET"]),
        Rule("/sessions/<session_id>", endpoint="patch_session", methods=["PATCH"]),
        Rule("/sessions/<session_id>", endpoint="delete_session", methods=["DELETE"]),
        Rule("/sessions/<session_id>/status", endpoint="session_status", methods=["GET"]),
        Rule("/sessions/<session_id>/generate-prompt", endpoint="generate_prompt", methods=["POST"]),
        Rule("/sessions/<session_id>/prompt", endpoint="get_prompt", methods=["GET"]),
        Rule("/sessions/<session_id>/frames/<frame_id>", endpoint="get_frame", methods=["GET"]),
        Rule("/auth/me", endpoint="me", methods=["GET"]),
    ],
    strict_slashes=False,
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


def not_found(what: str = "session") -> ApiError:
    return ApiError(404, "NOT_FOUND", f"{what} not found")


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, headers=headers,
                    mimetype="application/json")


def frames_json(session: Session, thumbnail_url: Callable[[str, str], str]) -> list[dict[str, Any]]:
    out = []
    for frame in session.frames:
        item = to_json(frame)
        item["thumbnailUrl"] = thumbnail_url(session.id, frame.id)
        out.append(item)
    return out


def processing_json(session: Session, thumbnail_url: Callable[[str, str], str] = pipeline.frame_path) -> dict[str, Any]:
    """The contract's ProcessingResponse for a finished session."""
    inspection = to_json(session.inspection) if session.inspection else None
    return {
        "sessionId": session.id,
        "status": session.status,
        "title": session.title,
        "seedUrl": session.seed_url,
        "agentTarget": session.agent_target,
        "fileSize": session.file_size,
        "mimeType": session.mime_type,
        "prompt": session.prompt,
        "frames": frames_json(session, thumbnail_url),
        "frameCount": len(session.frames),
        "urlsInspected": list(session.urls),
        "processingMs": session.processing_time,
        "inspection": inspection,
        "warnings": list(session.warnings),
        "timings": to_json(session.timings),
    }


class Service:
    """The whole API as one request handler."""

    def __init__(self, config: Config, store: BlobStore, sessions: SessionStore,
                 run_pipeline: Callable[[pipeline.RecordingRequest], Session]) -> None:
        self.config = config
        self.store = store
        self.sessions = sessions
        self.run_pipeline = run_pipeline
        self.signing_key = (config.signing_secret or secrets.token_hex(32)).encode()
        self._slots = threading.BoundedSemaphore(config.max_inflight)

    # ------------------------------------------------------------------ entry

    def handle(self, request: Request) -> Response:
        request_id = request.headers.get("X-Request-Id", "")[:64] or "req_" + uuid.uuid4().hex[:16]
        started = time.monotonic()
        token = logs.bind_request(request_id, request.headers.get("X-Cloud-Trace-Context"), self.config.gcp_project)
        try:
            return self._handle(request, request_id, started)
        finally:
            logs.unbind_request(token)

    def _handle(self, request: Request, request_id: str, started: float) -> Response:
        try:
            if request.method == "OPTIONS":
                response = Response(status=204)
            else:
                response = self._dispatch(request)
        except ApiError as exc:
            response = self._error(exc, request_id)
        except upload.UploadError as exc:
            response = self._error(ApiError(exc.status, exc.code, exc.message, exc.field), request_id)
        except (StorageUnavailable, SessionsUnavailable, upload.DiskFull) as exc:
            log.warning("store unavailable: %s", exc)
            response = self._error(ApiError(503, "UNAVAILABLE", "storage is unavailable, try again later"),
                                   request_id)
        except Exception:  # noqa: BLE001 - the contract's 500, never a stack trace in the body
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = self._error(ApiError(500, "INTERNAL", "internal error"), request_id)
        response.headers["X-Request-Id"] = request_id
        self._cors(request, response)
        self._finish_body(request, response)
        log.info("%s %s %s", request.method, request.path, response.status_code, extra={"fields": {
            "httpRequest": {"requestMethod": request.method, "requestUrl": request.path,
                            "status": response.status_code,
                            "latency": f"{time.monotonic() - started:.3f}s"}}})
        return response

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path == "/api" or path.startswith("/api/"):
            path = path[4:] or "/"
        adapter = ROUTES.bind("", path_info=path)
        try:
            endpoint, args = adapter.match(method=request.method)
        except NotFound:
            raise ApiError(404, "NOT_FOUND", f"no route {request.method} {request.path}") from None
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or []))
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here",
                           headers={"Allow": allowed}) from None
        if endpoint == "health":
            return self.health()
        if endpoint == "get_frame":
            return self.get_frame(request, **args)
        owner = self.owner_of(request)
        return getattr(self, endpoint)(request, owner, **args)

    def _error(self, exc: ApiError, request_id: str) -> Response:
        body: dict[str, Any] = {"statusCode": exc.status, "code": exc.code, "message": exc.message}
        if exc.field:
            body["field"] = exc.field
        body["requestId"] = request_id
        return json_response(body, exc.status, exc.headers)

    def _cors(self, request: Request, response: Response) -> None:
        origin = request.headers.get("Origin")
        allowed = self.config.cors_origins
        if not origin or not allowed or ("*" not in allowed and origin not in allowed):
            return
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
        response.headers.add("Vary", "Origin")
        response.headers["Access-Control-Expose-Headers"] = "X-Next-Page-Token, X-Request-Id, Retry-After"
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH, DELETE"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"

    def _finish_body(self, request: Request, response: Response) -> None:
        """Read what the client still sends (up to DRAIN_LIMIT) so it can read our answer.

        A larger remainder is left unread and the connection closed; the response is
        made a streamed one so the framework does not try to read that remainder itself.
        """
        length = request.content_length
        if length is not None and length > DRAIN_LIMIT:
            drained = False
        else:
            stream = request.stream
            total = 0
            try:
                while total <= DRAIN_LIMIT:
                    chunk = stream.read(upload.CHUNK)
                    if not chunk:
                        break
                    total += len(chunk)
                drained = total <= DRAIN_LIMIT
            except (OSError, ClientDisconnected):
                drained = False  # the client is gone: nothing more to read, close the connection
        if not drained:
            body = response.get_data()
            response.response = iter([body])
            response.headers["Connection"] = "close"

    # ------------------------------------------------------------------ auth

    def owner_of(self, request: Request) -> str:
        """The caller: the owner of the Bearer key when auth is on, else ``anonymous``."""
        if not self.config.auth_enabled:
            return ANONYMOUS
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        owner = None
        if scheme.lower() == "bearer" and token.strip():
            presented = token.strip().encode()
            for key, key_owner in self.config.api_keys.items():
                if hmac.compare_digest(presented, key.encode()):
                    owner = key_owner
        if owner is None:
            raise ApiError(401, "UNAUTHORIZED", "a valid Authorization: Bearer <key> header is required")
        return owner

    def _signature(self, session_id: str, frame_id: str, expires: int) -> str:
        message = f"{session_id}/{frame_id}/{expires}".encode()
        return hmac.new(self.signing_key, message, hashlib.sha256).hexdigest()

    def thumbnail_url(self, session_id: str, frame_id: str) -> str:
        path = pipeline.frame_path(session_id, frame_id)
        if not self.config.auth_enabled:
            return path
        expires = int(time.time()) + THUMBNAIL_TTL_S
        return f"{path}?expires={expires}&signature={self._signature(session_id, frame_id, expires)}"

    def _signed(self, request: Request, session_id: str, frame_id: str) -> bool:
        try:
            expires = int(request.args.get("expires", ""))
        except ValueError:
            return False
        signature = request.args.get("signature", "")
        return expires >= time.time() and hmac.compare_digest(
            signature.encode(), self._signature(session_id, frame_id, expires).encode()
        )

    # ------------------------------------------------------------------ JSON shapes

    def session_json(self, session: Session, detail: bool = True) -> dict[str, Any]:
        body = to_json(replace(session, frames=[], inspection=None))
        for internal in ("ownerId", "objects", "inspection"):
            body.pop(internal, None)
        body["frames"] = frames_json(session, self.thumbnail_url)
        if detail:
            inspection = to_json(session.inspection) if session.inspection else None
            body["inspection"] = inspection
            body["inspectionJson"] = inspection
        return body

    # ------------------------------------------------------------------ routes

    def health(self) -> Response:
        """200 when the service can take work: both stores answer."""
        self.store.check()
        self.sessions.check()
        return json_response({"status": "ok", "storage": self.config.storage, "sessions": self.config.sessions,
                              "auth": self.config.auth_enabled})

    def me(self, request: Request, owner: str) -> Response:
        return json_response({"id": owner, "name": owner, "email": ""})

    def create_recording(self, request: Request, owner: str) -> Response:
        if not self._slots.acquire(blocking=False):
            raise ApiError(429, "BUSY", "the service is at its limit of recordings in flight, retry later",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        raw = None
        try:
            raw = upload.read_multipart(request.stream, request.content_type, request.content_length,
                                        tempfile.gettempdir())
            fields = upload.validate(raw)
            job = pipeline.RecordingRequest(
                video_path=raw.video_path, file_size=raw.video_size, mime_type=fields.mime_type,
                title=fields.title, seed_url=fields.seed_url, notes=fields.notes,
                agent_target=fields.agent_target, client_duration_ms=fields.client_duration_ms, owner_id=owner,
            )
            try:
                session = self.run_pipeline(job)
            except pipeline.UrlNotAllowed as exc:
                raise ApiError(422, "URL_NOT_ALLOWED", str(exc), "seedUrl") from None
            except VideoError as exc:
                raise ApiError(422, "UNDECODABLE_VIDEO", f"the video cannot be processed: {exc}", "file") from None
            except pipeline.PipelineTimeout as exc:
                raise ApiError(504, "TIMEOUT", str(exc)) from None
            return json_response(processing_json(session, self.thumbnail_url))
        finally:
            if raw is not None:
                raw.discard()
            self._slots.release()

    def _session(self, owner: str, session_id: str) -> Session:
        session = self.sessions.get(owner, session_id)
        if session is None:
            raise not_found()
        return session

    def list_sessions(self, request: Request, owner: str) -> Response:
        raw_limit = request.args.get("limit")
        limit = None
        if raw_limit is not None:
            if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 1000:
                raise ApiError(400, "INVALID_FIELD", "limit must be an integer from 1 to 1000", "limit")
            limit = int(raw_limit)
        try:
            items, token = self.sessions.list(owner, limit, request.args.get("pageToken") or None)
        except BadPageToken as exc:
            raise ApiError(400, "INVALID_FIELD", str(exc), "pageToken") from None
        headers = {"X-Next-Page-Token": token} if token else None
        return json_response([self.session_json(s, detail=False) for s in items], headers=headers)

    def stats(self, request: Request, owner: str) -> Response:
        stats = self.sessions.stats(owner)
        return json_response(to_json(stats))

    def get_session(self, request: Request, owner: str, session_id: str) -> Response:
        return json_response(self.session_json(self._session(owner, session_id)))

    def session_status(self, request: Request, owner: str, session_id: str) -> Response:
        session = self._session(owner, session_id)
        return json_response({"sessionId": session.id, "sessionStatus": session.status,
                              "processingStatus": session.status, "processingTime": session.processing_time,
                              "lastError": session.last_error})

    def get_prompt(self, request: Request, owner: str, session_id: str) -> Response:
        session = self._session(owner, session_id)
        return Response(session.prompt, mimetype="text/markdown")

    def generate_prompt(self, request: Request, owner: str, session_id: str) -> Response:
        session = self._session(owner, session_id)
        session.prompt = render(session.agent_target, Evidence.of(session), self.config.prompt_tokens)
        self._save_prompt(session)
        return json_response({"sessionId": session.id, "promptStatus": "complete", "prompt": session.prompt})

    def _save_prompt(self, session: Session) -> None:
        session.updated_at = now_rfc3339()
        if session.status == "complete":
            self.store.put_bytes(f"sessions/{session.id}/prompt.md", session.prompt.encode(), "text/markdown")
        self.sessions.put(session)

    def create_session(self, request: Request, owner: str) -> Response:
        body = self._json_body(request)
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ApiError(400, "MISSING_FIELD", "title is required", "title")
        now = now_rfc3339()
        session = Session(id=new_id("sess_"), owner_id=owner, title="", created_at=now, updated_at=now)
        self._apply(session, {"title": title, **{k: body[k] for k in ("agentTarget", "prompt", "frameCount",
                                                                       "urlCount") if k in body}})
        self.sessions.put(session)
        return json_response(self.session_json(session), 201)

    def patch_session(self, request: Request, owner: str, session_id: str) -> Response:
        session = self._session(owner, session_id)
        body = self._json_body(request)
        editable = {"title", "notes", "status", "prompt", "agentTarget", "duration", "urls", "frameCount",
                    "urlCount", "processingTime"}
        unknown = sorted(set(body) - editable)
        if unknown:
            raise ApiError(400, "INVALID_FIELD", f"{unknown[0]} cannot be changed", unknown[0])
        retarget = "agentTarget" in body and body["agentTarget"] != session.agent_target and "prompt" not in body
        self._apply(session, body)
        session.updated_at = now_rfc3339()
        if retarget:
            session.prompt = render(session.agent_target, Evidence.of(session), self.config.prompt_tokens)
        if retarget or "prompt" in body:
            self._save_prompt(session)
        else:
            self.sessions.put(session)
        return json_response(self.session_json(session))

    def delete_session(self, request: Request, owner: str, session_id: str) -> Response:
        self._session(owner, session_id)
        self.store.delete_prefix(f"sessions/{session_id}/")  # objects first: a retry still finds the record
        self.sessions.delete(owner, session_id)
        return Response(status=204)

    def get_frame(self, request: Request, session_id: str, frame_id: str) -> Response:
        if not (self.config.auth_enabled and self._signed(request, session_id, frame_id)):
            owner = self.owner_of(request)
            session = self._session(owner, session_id)
            if not any(f.id == frame_id for f in session.frames):
                raise not_found("frame")
        if not frame_id.replace("_", "").isalnum() or not session_id.replace("_", "").isalnum():
            raise not_found("frame")
        try:
            data = self.store.get_bytes(f"sessions/{session_id}/frames/{frame_id}.png")
        except ObjectNotFound:
            raise not_found("frame") from None
        return Response(data, mimetype="image/png", headers={"Cache-Control": "private, max-age=3600"})

    # ------------------------------------------------------------------ JSON bodies

    def _json_body(self, request: Request) -> dict[str, Any]:
        raw = request.stream.read(MAX_JSON_BYTES + 1)
        if len(raw) > MAX_JSON_BYTES:
            raise ApiError(413, "FILE_TOO_LARGE", f"the JSON body exceeds {MAX_JSON_BYTES} bytes")
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "INVALID_FIELD", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_FIELD", "the body must be a JSON object")
        return body

    def _apply(self, session: Session, body: dict[str, Any]) -> None:
        """Set the JSON fields on ``session``, checking each one's type and rule."""
        def text(name: str, limit: int, required: bool = False) -> str:
            value = body[name]
            if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
                raise ApiError(400, "INVALID_FIELD", f"{name} must be a string of at most {limit} characters", name)
            return value.strip() if required else value

        def count(name: str) -> int:
            value = body[name]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ApiError(400, "INVALID_FIELD", f"{name} must be a non-negative integer", name)
            return value

        if "title" in body:
            session.title = text("title", upload.MAX_TITLE_CHARS, required=True)
        if "notes" in body:
            session.notes = text("notes", upload.MAX_NOTES_CHARS)
        if "prompt" in body:
            session.prompt = text("prompt", 1_000_000)
        if "status" in body:
            if body["status"] not in SESSION_STATUSES:
                raise ApiError(400, "INVALID_FIELD", f"status must be one of {', '.join(SESSION_STATUSES)}", "status")
            session.status = body["status"]
        if "agentTarget" in body:
            if body["agentTarget"] not in AGENT_TARGETS:
                raise ApiError(400, "INVALID_FIELD", f"agentTarget must be one of {', '.join(AGENT_TARGETS)}",
                               "agentTarget")
            session.agent_target = body["agentTarget"]
        if "urls" in body:
            urls = body["urls"]
            if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or len(urls) > 1000:
                raise ApiError(400, "INVALID_FIELD", "urls must be an array of strings", "urls")
            session.urls = urls
        for name, attr in (("duration", "duration"), ("frameCount", "frame_count"), ("urlCount", "url_count"),
                           ("processingTime", "processing_time")):
            if name in body:
                setattr(session, attr, count(name))
