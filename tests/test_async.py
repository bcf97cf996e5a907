"""Recordings accepted at once and processed in the background (``Prefer: respond-async``).

In-process with a scripted pipeline (each phase waits for the test, so what the status route says
at each phase is seen for certain), then against the real service and the real pipeline.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import requests

from conftest import PageServer, RunningService, upload
from function.config import Config
from function.frames import VideoError
from function.http import create_app
from function.jobs import Jobs
from function.models import ProcessingPhase, RecordingRequest, Session
from function.pipeline import Progress
from function.records import Records
from function.sessions import LocalSessionStore
from function.storage import LocalStore

ASYNC = {"Prefer": "respond-async"}
PHASES: list[ProcessingPhase] = ["decoding", "reading frames", "inspecting pages", "writing prompt"]


class ScriptedPipeline:
    """Reports each phase, then waits until the test lets it go on; ends by raising ``failure``."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure
        self.reached = {phase: threading.Event() for phase in PHASES}
        self.go_on = {phase: threading.Event() for phase in PHASES}

    def __call__(self, request: RecordingRequest, accepted: Session, progress: Progress) -> Session:
        for phase in PHASES:
            progress(phase)
            self.reached[phase].set()
            assert self.go_on[phase].wait(30)
        raise self.failure


def in_process(tmp_path: Path, pipeline: Callable[..., Session]) -> tuple:
    config = Config(data_dir=tmp_path, allow_private_urls=True, max_inflight=1)
    records = Records(LocalStore(tmp_path / "objects"), LocalSessionStore(tmp_path / "records"))
    jobs = Jobs(records, pipeline, workers=1, deadline_s=60)
    app = create_app(config, records, lambda r: pytest.fail("the synchronous path ran"),
                     lambda request, done: jobs.submit(request, done))
    return app.test_client(), records, jobs


def stored(root: Path, session_id: str) -> list[Path]:
    return sorted(p for p in (root / "objects" / "sessions" / session_id).rglob("*") if p.is_file())


def post(client, video: Path, **headers: str):  # noqa: ANN001, ANN201 - Flask's test client
    with open(video, "rb") as fh:
        return client.post("/api/recordings", data={"file": (fh, "v.webm"), "title": "Async",
                                                     "seedUrl": "http://127.0.0.1/"},
                           content_type="multipart/form-data", headers=headers)


def test_each_phase_shows_in_the_status_and_a_failure_ends_in_error(tmp_path: Path, small_video: Path) -> None:
    pipeline = ScriptedPipeline(VideoError("no frame decodes"))
    client, records, jobs = in_process(tmp_path, pipeline)
    try:
        accepted = post(client, small_video, Prefer="wait=5, respond-async")
        assert accepted.status_code == 202, accepted.get_data(as_text=True)
        body = accepted.get_json()
        sid = body["sessionId"]
        assert accepted.headers["Location"] == f"/api/sessions/{sid}/status" == body["statusUrl"]
        assert accepted.headers["Preference-Applied"] == "respond-async"
        assert body["status"] == "processing" and body["processingStatus"] == "queued" and body["progress"] == 0
        assert [p.name for p in stored(tmp_path, sid)] == ["video.webm"]
        # One slot: a second recording is refused while the first is processed.
        assert post(client, small_video, **ASYNC).status_code == 429
        seen = []
        for phase in PHASES:
            assert pipeline.reached[phase].wait(30)
            status = client.get(f"/sessions/{sid}/status").get_json()
            seen.append((status["processingStatus"], status["progress"], status["sessionStatus"]))
            listed = client.get("/sessions").get_json()[0]
            assert listed["processingStatus"] == phase and listed["progress"] == status["progress"]
            pipeline.go_on[phase].set()
        assert [s[0] for s in seen] == PHASES
        assert [s[1] for s in seen] == sorted(s[1] for s in seen) and seen[0][1] > 0 and seen[-1][1] < 100
        assert all(s[2] == "processing" for s in seen)
        status = _wait_for(lambda: client.get(f"/sessions/{sid}/status").get_json(), "error")
        assert status["processingStatus"] == "error" and "no frame decodes" in status["lastError"]
        assert stored(tmp_path, sid) == []  # the stored video went with it
        assert post(client, small_video, **ASYNC).status_code == 202  # the slot came back
    finally:
        for gate in pipeline.go_on.values():
            gate.set()
        jobs.close()


def test_without_the_preference_the_answer_stays_synchronous(tmp_path: Path, small_video: Path) -> None:
    ran: list[str] = []

    def process(request: RecordingRequest) -> Session:
        ran.append(request.title)
        raise VideoError("nothing decodes")

    config = Config(data_dir=tmp_path, allow_private_urls=True)
    records = Records(LocalStore(tmp_path / "objects"), LocalSessionStore(tmp_path / "records"))
    client = create_app(config, records, process, lambda request, done: pytest.fail("accepted")).test_client()
    response = post(client, small_video, Prefer="return=minimal")
    assert response.status_code == 422 and response.get_json()["code"] == "UNDECODABLE_VIDEO" and ran == ["Async"]


def test_a_recording_lost_past_its_deadline_is_marked_error(tmp_path: Path, small_video: Path) -> None:
    records = Records(LocalStore(tmp_path / "objects"), LocalSessionStore(tmp_path / "records"))
    request = RecordingRequest(video_path=small_video, file_size=small_video.stat().st_size, mime_type="video/webm",
                               title="Lost", seed_url="http://127.0.0.1/", notes="", agent_target="RAW",
                               client_duration_ms=None, owner_id="anonymous")
    lost = records.accept(request, deadline_s=0.0)  # its instance stopped: nobody will finish it
    kept = records.accept(request, deadline_s=600.0)
    time.sleep(0.01)  # the deadline is a time stamp in milliseconds: let it pass
    marked = records.get("anonymous", lost.id)
    assert marked.status == "error" and "deadline" in (marked.last_error or "")
    assert stored(tmp_path, lost.id) == [] and len(stored(tmp_path, kept.id)) == 1
    assert records.get("anonymous", kept.id).status == "processing"
    assert {s.id: s.status for s in records.list("anonymous", None, None)[0]} == {lost.id: "error",
                                                                                 kept.id: "processing"}
    assert records.advance(lost, "decoding") is False and records.get("anonymous", lost.id).status == "error"


def _wait_for(read: Callable[[], dict], status: str, seconds: float = 120) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        body = read()
        if body["sessionStatus"] == status or time.monotonic() > deadline:
            assert body["sessionStatus"] == status, body
            return body
        time.sleep(0.2)


# --------------------------------------------------------------------------- the real service


@pytest.fixture(scope="module")
def service(start_service: Callable[..., RunningService]) -> RunningService:
    return start_service(SCOPE_ALLOW_PRIVATE_URLS="1")


def test_an_accepted_recording_is_processed_to_complete(service: RunningService, small_video: Path,
                                                        pages: PageServer) -> None:
    response = upload(service.url, small_video, route="/api/recordings", headers=ASYNC, seedUrl=pages.url + "/")
    assert response.status_code == 202, response.text
    sid = response.json()["sessionId"]
    assert response.headers["Location"] == f"/api/sessions/{sid}/status"
    phases = set()

    def read() -> dict:
        status = requests.get(service.url + response.headers["Location"], timeout=30).json()
        phases.add(status["processingStatus"])
        return status

    done = _wait_for(read, "complete")
    assert done["processingStatus"] == "complete" and done["progress"] == 100 and done["lastError"] is None
    assert phases <= {"queued", *PHASES, "complete"}
    session = requests.get(f"{service.url}/sessions/{sid}", timeout=30).json()
    assert session["frameCount"] == len(session["frames"]) >= 2 and session["prompt"]
    assert session["urls"] == [pages.url + "/"] and session["processingTime"] > 0
    assert all(f["pointer"] is None or {"x", "y", "stillMs"} <= f["pointer"].keys() for f in session["frames"])
    frame = requests.get(service.url + session["frames"][0]["thumbnailUrl"], timeout=30)
    assert frame.status_code == 200 and frame.headers["Content-Type"] == "image/png"
    assert any(o.endswith("/video.webm") for o in service.objects_of(sid))
    assert requests.delete(f"{service.url}/sessions/{sid}", timeout=30).status_code == 204


def test_bad_input_is_refused_before_anything_is_accepted(start_service: Callable[..., RunningService],
                                                          small_video: Path, pages: PageServer) -> None:
    guarded = start_service()  # private addresses refused, as deployed
    missing = upload(guarded.url, small_video, headers=ASYNC, title=None, seedUrl=pages.url + "/")
    assert missing.status_code == 400 and missing.json()["code"] == "MISSING_FIELD"
    private = upload(guarded.url, small_video, headers=ASYNC, seedUrl=pages.url + "/")
    assert private.status_code == 422 and private.json()["code"] == "URL_NOT_ALLOWED"
    assert guarded.records() == [] and guarded.stored_sessions() == [] and not guarded.temp_files()


def test_a_recording_that_cannot_be_decoded_ends_in_error(service: RunningService, small_video: Path,
                                                          pages: PageServer, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.webm"
    damaged.write_bytes(small_video.read_bytes()[:64] + bytes(range(256)) * 64)  # a webm header, then noise
    response = upload(service.url, damaged, headers=ASYNC, seedUrl=pages.url + "/")
    assert response.status_code == 202, response.text
    sid = response.json()["sessionId"]
    status = _wait_for(lambda: requests.get(f"{service.url}/sessions/{sid}/status", timeout=30).json(), "error")
    assert status["lastError"].startswith("the video cannot be processed")
    assert service.objects_of(sid) == []
    # The job lets go of the upload's file (and its slot) right after it writes the session's end: wait
    # for that moment rather than race it.
    deadline = time.monotonic() + 30
    while service.temp_files():
        assert time.monotonic() < deadline, service.temp_files()
        time.sleep(0.05)
    assert requests.delete(f"{service.url}/sessions/{sid}", timeout=30).status_code == 204


def test_a_session_deleted_while_processing_does_not_come_back(service: RunningService, small_video: Path,
                                                               pages: PageServer) -> None:
    response = upload(service.url, small_video, headers=ASYNC, seedUrl=pages.url + "/")
    sid = response.json()["sessionId"]
    assert requests.delete(f"{service.url}/sessions/{sid}", timeout=30).status_code == 204
    deadline = time.monotonic() + 120
    while f"session {sid} was deleted while it was processed" not in service.log_path.read_text():
        assert time.monotonic() < deadline, service.log_path.read_text()[-3000:]
        time.sleep(0.2)
    assert sid not in service.records() and sid not in service.stored_sessions()
    assert requests.get(f"{service.url}/sessions/{sid}", timeout=30).status_code == 404
