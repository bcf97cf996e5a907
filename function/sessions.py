"""Session records: one per recording, owned by the caller that made it.

One interface, ``SessionStore``; ``LocalSessionStore`` keeps each record as a
JSON file laid out like the Firestore collection (``sessions/{id}.json``).
Listing is newest first with an opaque cursor.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from .config import Config
from .models import Session, Stats
from .storage import check_writable, write_atomically, write_new


class SessionsUnavailable(RuntimeError):
    """The session database cannot be reached: the request fails with 503."""


class BadPageToken(ValueError):
    pass


class SessionStore(Protocol):
    def create(self, session: Session) -> bool:
        """Store a new record unless its id is taken (``False`` then): never overwrites, whoever owns it."""
        ...

    def put(self, session: Session) -> None: ...

    def get(self, owner_id: str, session_id: str) -> Session | None: ...

    def list(self, owner_id: str, limit: int | None, page_token: str | None) -> tuple[list[Session], str | None]: ...

    def delete(self, owner_id: str, session_id: str) -> bool: ...

    def stats(self, owner_id: str) -> Stats: ...

    def check(self) -> None: ...


def encode_token(session: Session) -> str:
    raw = json.dumps([session.created_at, session.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, str]:
    try:
        created_at, session_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return str(created_at), str(session_id)
    except (ValueError, TypeError) as exc:
        raise BadPageToken("pageToken is not one this service issued") from exc


def page(sessions: list[Session], limit: int | None, page_token: str | None) -> tuple[list[Session], str | None]:
    """Newest first; after the token's (createdAt, id) when given; at most ``limit``."""
    ordered = sorted(sessions, key=lambda s: (s.created_at, s.id), reverse=True)
    if page_token:
        cursor = decode_token(page_token)
        ordered = [s for s in ordered if (s.created_at, s.id) < cursor]
    if limit is None or len(ordered) <= limit:
        return ordered, None
    return ordered[:limit], encode_token(ordered[limit - 1])


def compute_stats(sessions: list[Session]) -> Stats:
    done = [s for s in sessions if s.status == "complete"]
    avg = round(sum(s.processing_time for s in done) / len(done)) if done else 0
    return Stats(total_sessions=len(sessions), completed_sessions=len(done),
                 total_duration=sum(s.duration for s in sessions), avg_processing_time=avg)


class LocalSessionStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def _path(self, session_id: str) -> Path:
        return self.root / "sessions" / f"{session_id}.json"

    def _read(self, path: Path) -> Session | None:
        try:
            return Session.model_validate_json(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SessionsUnavailable(f"local sessions: {exc.strerror or exc}") from exc

    def _all(self, owner_id: str) -> list[Session]:
        folder = self.root / "sessions"
        if not folder.is_dir():
            self.check()  # no sessions yet, or a root we cannot use
            return []
        found = (self._read(p) for p in folder.glob("*.json"))
        return [s for s in found if s is not None and s.owner_id == owner_id]

    def create(self, session: Session) -> bool:
        try:
            return write_new(self._path(session.id), session.model_dump_json(by_alias=True).encode("utf-8"))
        except OSError as exc:
            raise SessionsUnavailable(f"local sessions: {exc.strerror or exc}") from exc

    def put(self, session: Session) -> None:
        path = self._path(session.id)
        data = session.model_dump_json(by_alias=True).encode("utf-8")
        try:
            with self._lock:
                write_atomically(path, lambda out: out.write(data))
        except OSError as exc:
            raise SessionsUnavailable(f"local sessions: {exc.strerror or exc}") from exc

    def get(self, owner_id: str, session_id: str) -> Session | None:
        if not session_id.replace("_", "").isalnum():
            return None
        session = self._read(self._path(session_id))
        return session if session is not None and session.owner_id == owner_id else None

    def list(self, owner_id: str, limit: int | None, page_token: str | None) -> tuple[list[Session], str | None]:
        return page(self._all(owner_id), limit, page_token)

    def delete(self, owner_id: str, session_id: str) -> bool:
        if self.get(owner_id, session_id) is None:
            return False
        try:
            self._path(session_id).unlink(missing_ok=True)
        except OSError as exc:
            raise SessionsUnavailable(f"local sessions: {exc.strerror or exc}") from exc
        return True

    def stats(self, owner_id: str) -> Stats:
        return compute_stats(self._all(owner_id))

    def check(self) -> None:
        try:
            check_writable(self.root)
        except OSError as exc:
            raise SessionsUnavailable(f"local sessions at {self.root} are not writable") from exc


class FirestoreSessionStore:
    """Session records as Firestore documents ``sessions/{id}``, frames as an array inside.

    One document per session keeps a record whole (written in one commit, never half)
    and well under the 1 MiB limit: frames are capped by SCOPE_MAX_FRAMES, ARIA snapshots
    in the record are trimmed (the full ones are objects in storage), the prompt is
    budgeted. Listing needs the composite index (ownerId ASC, createdAt DESC, id DESC),
    declared in ``infra/``. Transient errors are retried with backoff for ``retry_s``.
    """

    COLLECTION = "sessions"

    def __init__(self, project: str | None, retry_s: float = 30.0, retention_days: int = 0) -> None:
        from google.api_core import exceptions, retry
        from google.cloud import firestore

        self._firestore = firestore
        self._client = firestore.Client(project=project)
        self._collection = self._client.collection(self.COLLECTION)
        self._retry = retry.Retry(predicate=retry.if_transient_error, initial=0.2, maximum=5.0, multiplier=2.0,
                                  timeout=retry_s)
        self._timeout = 15.0
        self._retention = timedelta(days=retention_days) if retention_days else None
        self._errors = (exceptions.GoogleAPIError, OSError)
        self._exists = exceptions.AlreadyExists

    def _call(self, what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        try:
            return fn(*args, retry=self._retry, timeout=self._timeout, **kwargs)
        except self._errors as exc:
            raise SessionsUnavailable(f"firestore: {type(exc).__name__} on {what}") from exc

    def _document(self, session: Session) -> dict[str, object]:
        """The record as Firestore keeps it: with ``expireAt`` (a timestamp) for the TTL policy when one is set."""
        data: dict[str, object] = session.to_json()
        if self._retention is not None:
            created = datetime.fromisoformat(session.created_at.replace("Z", "+00:00"))
            data["expireAt"] = created + self._retention
        return data

    def create(self, session: Session) -> bool:
        try:  # a retried create that had succeeded answers AlreadyExists: read it back to tell
            self._call(session.id, self._collection.document(session.id).create, self._document(session))
        except SessionsUnavailable as exc:
            if not isinstance(exc.__cause__, self._exists):
                raise
            mine = self.get(session.owner_id, session.id)
            return mine is not None and mine.created_at == session.created_at and mine.title == session.title
        return True

    def put(self, session: Session) -> None:
        self._call(session.id, self._collection.document(session.id).set, self._document(session))

    def get(self, owner_id: str, session_id: str) -> Session | None:
        if not session_id.replace("_", "").isalnum():
            return None
        snapshot = self._call(session_id, self._collection.document(session_id).get)
        if not snapshot.exists:
            return None
        session = Session.model_validate(snapshot.to_dict())
        return session if session.owner_id == owner_id else None

    def _query(self, owner_id: str):  # noqa: ANN202
        from google.cloud.firestore_v1.base_query import FieldFilter

        descending = self._firestore.Query.DESCENDING
        return (self._collection.where(filter=FieldFilter("ownerId", "==", owner_id))
                .order_by("createdAt", direction=descending).order_by("id", direction=descending))

    def list(self, owner_id: str, limit: int | None, page_token: str | None) -> tuple[list[Session], str | None]:
        query = self._query(owner_id)
        if page_token:
            created_at, session_id = decode_token(page_token)
            query = query.start_after({"createdAt": created_at, "id": session_id})
        if limit is not None:
            query = query.limit(limit + 1)
        documents = self._call("the session list", query.get)
        sessions = [Session.model_validate(d.to_dict()) for d in documents]
        if limit is None or len(sessions) <= limit:
            return sessions, None
        return sessions[:limit], encode_token(sessions[limit - 1])

    def delete(self, owner_id: str, session_id: str) -> bool:
        if self.get(owner_id, session_id) is None:
            return False
        self._call(session_id, self._collection.document(session_id).delete)
        return True

    def stats(self, owner_id: str) -> Stats:
        return compute_stats(self.list(owner_id, None, None)[0])

    def check(self) -> None:
        self._call("the session collection", self._collection.limit(1).get)


def open_sessions(config: Config) -> SessionStore:
    """The session store the configuration names: local files, or Firestore."""
    if config.sessions == "firestore":
        return FirestoreSessionStore(config.gcp_project, config.store_retry_s, config.retention_days)
    return LocalSessionStore(config.data_dir / "records")
