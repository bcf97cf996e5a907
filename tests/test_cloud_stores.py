"""GCS and Firestore stores against the real emulators: consistency at every failure point, retries."""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path
from typing import Iterator

import pytest
import requests

from conftest import Emulators, PageServer, phase_events
from function import pipeline
from function.aria import BrowserSettings, Inspector
from function.config import Config
from function import records as records_module
from function.models import RecordingRequest, Session, SessionCreate
from function.records import Records
from function.sessions import FirestoreSessionStore, SessionsUnavailable
from function.storage import GcsStore, ObjectNotFound, StorageUnavailable
from function.vision import LocalProvider, Vision


@pytest.fixture(scope="module")
def browser() -> Iterator[Inspector]:
    inspector = Inspector(BrowserSettings(allow_private=True))
    yield inspector
    inspector.close()


@pytest.fixture
def cloud(emulators: Emulators, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A fresh bucket and Firestore project for one test, reached through the emulator variables."""
    name = request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[-40:].strip("-")
    env = emulators.env(name)
    for key in ("STORAGE_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST"):
        monkeypatch.setenv(key, env[key])
    store = GcsStore(env["SCOPE_BUCKET"], env["GOOGLE_CLOUD_PROJECT"], retry_s=5, emulated=True)
    sessions = FirestoreSessionStore(env["GOOGLE_CLOUD_PROJECT"], retry_s=5)
    return env, store, sessions


class FailingStore:
    """Passes calls through to a real store and fails the Nth write, as an outage would."""

    def __init__(self, inner, fail_at: int, log: list[str]) -> None:
        self.inner, self.fail_at, self.writes, self.log = inner, fail_at, 0, log

    def _write(self, kind: str, key: str, fn, *args) -> None:
        self.writes += 1
        if self.writes == self.fail_at:
            raise StorageUnavailable(f"injected failure writing {key}")
        self.log.append(f"{kind} {key.split('/', 2)[-1]}")
        fn(key, *args)

    def put_bytes(self, key, data, content_type) -> None:
        self._write("object", key, self.inner.put_bytes, data, content_type)

    def put_file(self, key, path, content_type) -> None:
        self._write("object", key, self.inner.put_file, path, content_type)

    def __getattr__(self, name):
        return getattr(self.inner, name)


class FailingSessions:
    def __init__(self, inner, fail: bool, log: list[str]) -> None:
        self.inner, self.fail, self.log = inner, fail, log

    def create(self, session: Session) -> bool:
        self.log.append(f"claim {session.status}")
        return self.inner.create(session)

    def put(self, session: Session) -> None:
        if self.fail:
            raise SessionsUnavailable("injected failure writing the record")
        self.log.append("record")
        self.inner.put(session)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def run_pipeline(store, sessions, browser: Inspector, pages: PageServer, video: Path) -> Session:
    """The pipeline's evidence stored through the records layer, into the given (failing) stores."""
    lanes = pipeline.Lanes(Config(allow_private_urls=True), Vision(LocalProvider()), browser)
    request = RecordingRequest(video, video.stat().st_size, "video/webm", "t", pages.url + "/", "",
                               "CLAUDE_CODE", None, "alice")
    return Records(store, sessions).save_recording(request, pipeline.run(request, lanes))


def bucket_names(env: dict) -> list[str]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=env["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})
    return [b.name for b in client.list_blobs(env["SCOPE_BUCKET"])]


def test_the_id_is_claimed_then_the_objects_then_the_record(cloud, browser, pages, small_video) -> None:
    env, store, sessions = cloud
    log: list[str] = []
    session = run_pipeline(FailingStore(store, 0, log), FailingSessions(sessions, False, log), browser, pages,
                           small_video)
    assert log[0] == "claim processing" and log[-1] == "record"
    assert all(entry.startswith("object") for entry in log[1:-1])
    assert log[1] == "object video.webm" and "object prompt.md" in log
    names = bucket_names(env)
    assert f"sessions/{session.id}/video.webm" in names and len(names) == len(log) - 2
    assert sessions.get("alice", session.id).status == "complete"
    stored = sessions.get("alice", session.id)
    assert stored.frame_count == 3 and stored.frames[1].id == session.frames[1].id
    assert stored.inspection.snapshots[0].aria_tree


def test_a_failed_write_leaves_nothing_behind(cloud, browser, pages, small_video) -> None:
    """Every object write of a recording fails in turn (video, each frame, snapshot, screenshot, prompt)."""
    env, store, sessions = cloud
    written: list[str] = []
    run_pipeline(FailingStore(store, 0, written), sessions, browser, pages, small_video)
    session_id = sessions.list("alice", None, None)[0][0].id
    store.delete_prefix(f"sessions/{session_id}/")
    sessions.delete("alice", session_id)
    assert written[0] == "object video.webm" and written[-1] == "object prompt.md" and len(written) >= 6
    for fail_at in range(1, len(written) + 1):
        with pytest.raises(StorageUnavailable):
            run_pipeline(FailingStore(store, fail_at, []), sessions, browser, pages, small_video)
        assert bucket_names(env) == [], f"write {fail_at} ({written[fail_at - 1]}) failed"
        assert sessions.list("alice", None, None)[0] == []


def test_a_failed_record_write_removes_the_objects(cloud, browser, pages, small_video,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    env, store, sessions = cloud
    caplog.set_level(logging.INFO, logger="scope")
    with pytest.raises(SessionsUnavailable):
        run_pipeline(store, FailingSessions(sessions, True, []), browser, pages, small_video)
    assert bucket_names(env) == []
    assert sessions.list("alice", None, None)[0] == []
    ends = phase_events(caplog, "end")
    [end] = [e for e in ends if e["phase"] == "prompt"]  # the phase that began has its end, marked as a failure
    assert end["failed"] is True and end["ms"] >= 0
    earlier = [e for e in ends if e["phase"] in {"extract", "browser"}]  # the lanes before it ended well
    assert {e["phase"] for e in earlier} == {"extract", "browser"} and all("failed" not in e for e in earlier)


def test_a_taken_session_id_is_never_overwritten(cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids are drawn at random: one already taken (by anyone) is refused by the store and another drawn."""
    _, store, sessions = cloud
    bobs = Session(id="sess_TAKEN001", owner_id="bob", title="Bob's", created_at="2026-11-30T10:00:00.000Z")
    assert sessions.create(bobs)
    assert not sessions.create(bobs.model_copy(update={"owner_id": "alice", "title": "Alice's"}))
    drawn = iter(["sess_TAKEN001", "sess_FRESH001"])
    monkeypatch.setattr(records_module, "new_id", lambda prefix: next(drawn))
    made = Records(store, sessions).create("alice", SessionCreate(title="Alice's"))
    assert made.id == "sess_FRESH001" and sessions.get("alice", "sess_FRESH001").title == "Alice's"
    assert sessions.get("bob", "sess_TAKEN001").title == "Bob's" and sessions.get("alice", "sess_TAKEN001") is None


def test_records_carry_their_expiry_for_the_ttl_policy(cloud) -> None:
    """With a retention period, each record holds expireAt as a Firestore timestamp; the TTL policy
    (infra/main.tf) deletes it then. It reads back as the same Session."""
    env, _, _ = cloud
    store = FirestoreSessionStore(env["GOOGLE_CLOUD_PROJECT"], retry_s=5, retention_days=30)
    session = Session(id="sess_TTL00001", owner_id="alice", title="t", created_at="2026-11-30T10:00:00.000Z")
    assert store.create(session)
    raw = store._collection.document("sess_TTL00001").get().to_dict()
    assert raw["expireAt"].isoformat().startswith("2026-12-30T10:00:00")
    assert store.get("alice", "sess_TTL00001") == session
    kept = FirestoreSessionStore(env["GOOGLE_CLOUD_PROJECT"], retry_s=5)  # no retention: no expiry
    kept.put(session.model_copy(update={"id": "sess_TTL00002"}))
    assert "expireAt" not in kept._collection.document("sess_TTL00002").get().to_dict()


class FlakyProxy:
    """Answers the first ``failures`` requests with 503, then forwards to the emulator."""

    def __init__(self, target: str, failures: int) -> None:
        self.failures, self.seen = failures, 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                proxy.seen += 1
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.seen <= proxy.failures:
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
                answer = requests.request(self.command, target + self.path, data=body, headers=headers, timeout=30)
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in {"transfer-encoding", "content-length", "connection", "content-encoding"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_transient_errors_are_retried(cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    env, store, _ = cloud
    store.put_bytes("sessions/sess_RETRY001/prompt.md", b"prompt", "text/markdown")
    proxy = FlakyProxy(env["STORAGE_EMULATOR_HOST"], failures=2)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        flaky = GcsStore(env["SCOPE_BUCKET"], env["GOOGLE_CLOUD_PROJECT"], retry_s=20, emulated=True)
        assert flaky.get_bytes("sessions/sess_RETRY001/prompt.md") == b"prompt"
        assert proxy.seen > 2  # the two 503s were retried, then it went through
        with pytest.raises(ObjectNotFound):
            flaky.get_bytes("sessions/sess_RETRY001/missing.png")
    finally:
        proxy.close()


def test_a_store_that_stays_down_is_unavailable(cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    env, _, _ = cloud
    proxy = FlakyProxy(env["STORAGE_EMULATOR_HOST"], failures=10_000)
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        down = GcsStore(env["SCOPE_BUCKET"], env["GOOGLE_CLOUD_PROJECT"], retry_s=2, emulated=True)
        with pytest.raises(StorageUnavailable):
            down.put_bytes("sessions/sess_DOWN0001/prompt.md", b"x", "text/markdown")
        assert proxy.seen >= 2  # it tried again before giving up
    finally:
        proxy.close()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    with pytest.raises(SessionsUnavailable):
        FirestoreSessionStore(env["GOOGLE_CLOUD_PROJECT"], retry_s=1).get("alice", "sess_DOWN0001")
