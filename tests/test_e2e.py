"""End to end: the real service as a subprocess (functions-framework), real uploads over HTTP."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests

from conftest import REPO, PageServer, RunningService, free_port, upload
from fake_anthropic import FakeAnthropic, error
from function.vision import LOCAL_PROVIDER

SESSION_ID = re.compile(r"^sess_[A-Z0-9]{8}$")
FRAME_ID = re.compile(r"^frm_[A-Z0-9]{8}$")


def assert_error(response: requests.Response, status: int, code: str, field: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["statusCode"] == status and body["code"] == code and body["message"]
    assert body["requestId"] and body["requestId"] == response.headers["X-Request-Id"]
    if field:
        assert body["field"] == field
    assert "Traceback" not in response.text
    return body


def assert_nothing_left(service: RunningService) -> None:
    assert service.stored_sessions() == [] and service.records() == []
    assert service.temp_files() == []


@pytest.fixture(scope="module", params=["local", "cloud"])
def backend(request: pytest.FixtureRequest) -> Callable[[str], dict[str, str]]:
    """The whole suite runs once on the local store and once on GCS + Firestore (the emulators)."""
    if request.param == "local":
        return lambda name: {}
    emulators = request.getfixturevalue("emulators")
    return emulators.env


@pytest.fixture(scope="module")
def open_service(start_service, backend) -> RunningService:
    return start_service(SCOPE_ALLOW_PRIVATE_URLS="1", SCOPE_CORS_ORIGINS="https://dash.example", **backend("open"))


# --------------------------------------------------------------------------- the happy path


def test_recording_to_prompt_and_the_sessions_api(open_service: RunningService, pages: PageServer,
                                                  small_video: Path) -> None:
    svc = open_service
    response = upload(svc.url, small_video, seedUrl=pages.url + "/", agentTarget="CLAUDE_CODE")
    assert response.status_code == 200, response.text
    body = response.json()
    assert SESSION_ID.match(body["sessionId"]) and body["status"] == "complete"
    assert body["fileSize"] == small_video.stat().st_size and body["mimeType"] == "video/webm"
    assert body["title"] == "Todo is not saved" and body["agentTarget"] == "CLAUDE_CODE"
    assert body["frameCount"] == len(body["frames"]) == 3
    assert body["urlsInspected"] == [pages.url + "/"] and body["warnings"] == []
    assert [f["timestamp"] for f in body["frames"]] == sorted(f["timestamp"] for f in body["frames"])
    for frame in body["frames"]:
        assert FRAME_ID.match(frame["id"]) and frame["sessionId"] == body["sessionId"]
        assert frame["thumbnailUrl"] == f"/sessions/{body['sessionId']}/frames/{frame['id']}"
        assert set(frame["diffSummary"]) == {"added", "changed", "removed"} and isinstance(frame["ariaTree"], list)
        assert frame["analysis"]["provider"] == LOCAL_PROVIDER and frame["analysis"]["description"]
        assert 0 <= frame["changeScore"] <= 1 and frame["createdAt"].endswith("Z")
    snap = body["inspection"]["snapshots"][0]
    assert snap["success"] and snap["title"] == "Todo app" and snap["httpStatus"] == 200
    assert snap["counts"]["buttons"] == 1 and 'button "Add"' in snap["ariaTree"]
    assert body["inspection"]["browser"].startswith("chromium")
    prompt = body["prompt"]
    assert body["promptStatus"] == "complete"  # the public web app reads it
    assert "<task>" in prompt and "Todo is not saved" in prompt and "pressing Enter does nothing" in prompt
    assert 'button "Add"' in prompt and pages.url in prompt
    # The steps: one per change (nothing but two blocks appearing, no pointer, no typing), tied to the frames
    # that show their result, and the prompt's reproduction section is written from them.
    assert [s["index"] for s in body["steps"]] == [1, 2]
    assert [s["frameId"] for s in body["steps"]] == [f["id"] for f in body["frames"][1:]]
    for step in body["steps"]:
        assert step["action"] in {"key", "other"} and step["target"] is None and 0 < step["confidence"] < 0.5
        assert step["timestamp"] <= step["endTimestamp"] and step["description"] in prompt
        assert set(step) == {"index", "timestamp", "endTimestamp", "action", "target", "value", "url", "frameId",
                             "description", "confidence", "source"}

    sid = body["sessionId"]
    frame = body["frames"][1]
    image = requests.get(svc.url + frame["thumbnailUrl"], timeout=10)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.content.startswith(b"\x89PNG")

    for base in (svc.url, svc.url + "/api"):
        session = requests.get(f"{base}/sessions/{sid}", headers={"Content-Type": "application/json"}).json()
        assert session["id"] == sid and session["status"] == "complete" and session["frameCount"] == 3
        assert session["urls"] == [pages.url + "/"] and session["urlCount"] == 1
        assert session["inspection"] == session["inspectionJson"] and session["inspection"]["snapshots"]
        assert session["duration"] == 4 and session["prompt"] == prompt and session["steps"] == body["steps"]
        assert session["timings"]["videoMs"] > 0 and session["timings"]["browserMs"] > 0
    listing = requests.get(svc.url + "/api/sessions").json()
    assert [s["id"] for s in listing][:1] == [sid] and isinstance(listing[0]["frames"], list)
    status = requests.get(f"{svc.url}/sessions/{sid}/status").json()
    assert status == {"sessionId": sid, "sessionStatus": "complete", "processingStatus": "complete", "progress": 100,
                      "processingTime": body["processingMs"], "lastError": None}
    markdown = requests.get(f"{svc.url}/sessions/{sid}/prompt")
    assert markdown.headers["Content-Type"].startswith("text/markdown") and markdown.text == prompt

    patched = requests.patch(f"{svc.url}/api/sessions/{sid}", json={"agentTarget": "CODEX", "title": "Renamed"})
    assert patched.status_code == 200
    assert patched.json()["agentTarget"] == "CODEX" and "## Acceptance criteria" in patched.json()["prompt"]
    assert "Renamed" in patched.json()["prompt"]
    regenerated = requests.post(f"{svc.url}/sessions/{sid}/generate-prompt").json()
    assert regenerated == {"sessionId": sid, "promptStatus": "complete", "prompt": patched.json()["prompt"]}
    assert_error(requests.patch(f"{svc.url}/sessions/{sid}", json={"status": "done"}), 400, "INVALID_FIELD", "status")
    assert_error(requests.patch(f"{svc.url}/sessions/{sid}", data="{not json", headers={"Content-Type": "application/json"}),
                 400, "INVALID_FIELD")

    stats = requests.get(f"{svc.url}/sessions/stats").json()
    assert stats["totalSessions"] >= 1 and stats["completedSessions"] >= 1 and stats["totalDuration"] >= 4

    deleted = requests.delete(f"{svc.url}/api/sessions/{sid}", headers={"Content-Type": "application/json"})
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(requests.get(f"{svc.url}/sessions/{sid}"), 404, "NOT_FOUND")
    assert_error(requests.get(svc.url + frame["thumbnailUrl"]), 404, "NOT_FOUND")
    assert svc.objects_of(sid) == [] and sid not in svc.records()
    assert svc.temp_files() == []


def test_lanes_run_concurrently(open_service: RunningService, pages: PageServer, recordings: Path) -> None:
    """The browser lane waits on a slow page while the video lane decodes: the time is the longer lane's."""
    response = upload(open_service.url, recordings / "todomvc_quick_1280_h264.mkv", seedUrl=pages.url + "/slow?d=3")
    assert response.status_code == 200, response.text
    body = response.json()
    timings = body["timings"]
    assert timings["browserMs"] >= 3000 and timings["videoMs"] >= 1000
    (video_start, video_end), (browser_start, browser_end) = timings["videoSpan"], timings["browserSpan"]
    assert video_start < browser_end and browser_start < video_end  # the two lanes' intervals overlap
    assert body["processingMs"] >= max(video_end, browser_end)
    assert body["mimeType"] == "video/x-matroska" and body["frameCount"] >= 8


def test_browser_recorded_webm_without_duration(open_service: RunningService, pages: PageServer,
                                                recordings: Path) -> None:
    response = upload(open_service.url, recordings / "todomvc_basic_1280_mediarecorder.webm",
                      seedUrl=pages.url + "/", durationMs="41000", agentTarget="RAW")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["frameCount"] >= 10 and body["prompt"].startswith("# Todo is not saved")
    session = requests.get(f"{open_service.url}/sessions/{body['sessionId']}").json()
    assert session["duration"] == 41


@contextlib.contextmanager
def fixed_port_turn(port: int) -> Iterator[None]:
    """Hold this machine's lock for ``port`` (an flock on a file in the temporary folder) while using it."""
    with open(Path(tempfile.gettempdir()) / f"claude-scope-port-{port}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def test_pages_the_recording_visits_are_inspected_too(open_service: RunningService, recordings: Path) -> None:
    """The recording shows a browser's address bar: each same-origin URL it visits is opened as well."""
    truth = json.loads((recordings / "todomvc_browser_1280_vp9.json").read_text())
    # The app the recording was made of answered on this fixed port (its address bar shows it): runs of
    # the suite side by side take turns with it.
    with fixed_port_turn(truth["port"]):
        app = PageServer(port=truth["port"])
        try:
            response = upload(open_service.url, recordings / "todomvc_browser_1280_vp9.webm",
                              seedUrl=truth["initial_url"])
        finally:
            app.close()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["urlsInspected"] == truth["urls_visited"]
    assert [s["url"] for s in body["inspection"]["snapshots"]] == truth["urls_visited"]
    assert all(s["success"] for s in body["inspection"]["snapshots"])
    assert body["frames"][0]["url"] == truth["initial_url"]
    assert {f["url"] for f in body["frames"]} == set(truth["urls_visited"])
    # Each later page the user reached is a step that names its address.
    reached = [s["url"] for s in body["steps"] if s["action"] in {"click", "navigate"} and s["value"]]
    assert set(truth["urls_visited"][1:]) <= set(reached)


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    yield server
    server.close()


@pytest.fixture(scope="module")
def claude_service(start_service, backend, claude: FakeAnthropic) -> RunningService:
    return start_service(SCOPE_ALLOW_PRIVATE_URLS="1", ANTHROPIC_API_KEY="sk-test", ANTHROPIC_BASE_URL=claude.url,
                         SCOPE_VISION_MODEL="claude-test", SCOPE_VISION_BATCH="2", SCOPE_VISION_TIMEOUT_S="5",
                         **backend("claude"))


def test_claude_reads_the_frames(claude_service: RunningService, claude: FakeAnthropic, pages: PageServer,
                                 small_video: Path) -> None:
    claude.requests.clear()
    claude.script.clear()
    response = upload(claude_service.url, small_video, seedUrl=pages.url + "/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(claude.requests) == 2  # 3 frames, 2 to a request
    assert [f["analysis"]["provider"] for f in body["frames"]] == ["anthropic:claude-test"] * 3
    assert body["frames"][2]["analysis"]["anomalies"] == ["Error: could not save"]
    assert body["frames"][1]["diffSummary"]["changed"] == 1  # the toggle's state changed
    assert "Saving a todo fails." in body["prompt"] and "step at frame 1" in body["prompt"]
    session = requests.get(f"{claude_service.url}/sessions/{body['sessionId']}").json()
    assert session["visionProvider"] == "anthropic:claude-test" and session["visionRequests"] == 2
    assert session["visionInputTokens"] == 3000 and session["visionOutputTokens"] == 300
    assert session["visionCostUsd"] == pytest.approx((3000 * 3 + 300 * 15) / 1e6)
    assert session["observedProblem"] == "Saving a todo fails."


def test_claude_down_degrades_to_the_local_analyser(claude_service: RunningService, claude: FakeAnthropic,
                                                    pages: PageServer, small_video: Path) -> None:
    claude.default = error(500)
    try:
        response = upload(claude_service.url, small_video, seedUrl=pages.url + "/")
    finally:
        claude.default = __import__("fake_anthropic").tool_answer
    assert response.status_code == 200, response.text
    body = response.json()
    assert {f["analysis"]["provider"] for f in body["frames"]} == {LOCAL_PROVIDER}
    assert any("local analyser" in w for w in body["warnings"])


def test_a_page_that_fails_is_a_warning_not_a_failure(open_service: RunningService, small_video: Path) -> None:
    response = upload(open_service.url, small_video, seedUrl="http://127.0.0.1:9/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["inspection"]["snapshots"][0]["success"] is False
    assert body["inspection"]["snapshots"][0]["error"]
    assert any("could not be inspected" in w for w in body["warnings"])


# --------------------------------------------------------------------------- every error of POST /recordings


@pytest.fixture
def clean_service(open_service: RunningService) -> Iterator[RunningService]:
    """The open service with no sessions, so a test can check nothing was stored."""
    for sid in open_service.stored_sessions():
        requests.delete(f"{open_service.url}/sessions/{sid}")
    assert_nothing_left(open_service)
    yield open_service
    assert_nothing_left(open_service)


def test_missing_field(clean_service: RunningService, small_video: Path, pages: PageServer) -> None:
    response = upload(clean_service.url, small_video, title=None, seedUrl=pages.url)
    assert assert_error(response, 400, "MISSING_FIELD", "title")["message"] == "title is required"
    no_file = requests.post(clean_service.url + "/recordings", files={"title": (None, "t"), "seedUrl": (None, pages.url)})
    assert_error(no_file, 400, "MISSING_FIELD", "file")


def test_invalid_field(clean_service: RunningService, small_video: Path, pages: PageServer) -> None:
    assert_error(upload(clean_service.url, small_video, seedUrl=pages.url, agentTarget="GEMINI"),
                 400, "INVALID_FIELD", "agentTarget")
    assert_error(upload(clean_service.url, small_video, seedUrl="javascript:alert(1)"), 400, "INVALID_FIELD", "seedUrl")
    assert_error(upload(clean_service.url, small_video, seedUrl=pages.url, title="x" * 501), 400, "INVALID_FIELD", "title")


def _multipart_stream(total_file_bytes: int) -> Iterator[bytes]:
    yield (b'--b0undary\r\nContent-Disposition: form-data; name="title"\r\n\r\nBig\r\n'
           b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="big.webm"\r\n\r\n')
    chunk = b"\x1a\x45\xdf\xa3" + b"\x00" * (1024 * 1024 - 4)
    for _ in range(total_file_bytes // len(chunk)):
        yield chunk
    yield b"\r\n--b0undary--\r\n"


def test_file_too_large_while_streaming(clean_service: RunningService) -> None:
    response = requests.post(clean_service.url + "/recordings", data=_multipart_stream(101 * 1024 * 1024),
                             headers={"Content-Type": "multipart/form-data; boundary=b0undary"}, timeout=120)
    assert_error(response, 413, "FILE_TOO_LARGE", "file")


def test_declared_body_too_large(clean_service: RunningService) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", clean_service.port, timeout=30)
    conn.putrequest("POST", "/api/recordings")
    conn.putheader("Content-Type", "multipart/form-data; boundary=b0undary")
    conn.putheader("Content-Length", str(500 * 1024 * 1024))
    conn.endheaders()
    conn.send(b"--b0undary\r\n")
    response = conn.getresponse()
    body = json.loads(response.read())
    assert response.status == 413 and body["code"] == "FILE_TOO_LARGE"
    conn.close()


def test_unsupported_media_type(clean_service: RunningService, tmp_path: Path, pages: PageServer) -> None:
    as_json = requests.post(clean_service.url + "/recordings", json={"title": "t", "seedUrl": pages.url})
    assert_error(as_json, 415, "UNSUPPORTED_MEDIA_TYPE")
    fake = tmp_path / "screenshot.webm"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 5000)
    assert_error(upload(clean_service.url, fake, seedUrl=pages.url), 415, "UNSUPPORTED_MEDIA_TYPE", "file")


def test_undecodable_video(clean_service: RunningService, tmp_path: Path, pages: PageServer,
                           small_video: Path) -> None:
    broken = tmp_path / "broken.webm"
    broken.write_bytes(small_video.read_bytes()[:60] + b"\x00\xff" * 4000)
    assert_error(upload(clean_service.url, broken, seedUrl=pages.url), 422, "UNDECODABLE_VIDEO", "file")


def test_unknown_session_and_route(clean_service: RunningService) -> None:
    assert_error(requests.get(clean_service.url + "/sessions/sess_NOPE0000"), 404, "NOT_FOUND")
    assert_error(requests.get(clean_service.url + "/api/nothing-here"), 404, "NOT_FOUND")
    assert_error(requests.put(clean_service.url + "/recordings"), 405, "METHOD_NOT_ALLOWED")


def test_cors_preflight_and_errors_carry_cors_headers(open_service: RunningService) -> None:
    origin = {"Origin": "https://dash.example"}
    preflight = requests.options(open_service.url + "/api/sessions", headers={
        **origin, "Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    assert "DELETE" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    missing = requests.get(open_service.url + "/sessions/sess_NOPE0000", headers=origin)
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == "https://dash.example"
    other = requests.get(open_service.url + "/sessions", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_health(open_service: RunningService) -> None:
    for path in ("/health", "/healthz", "/api/health"):
        assert requests.get(open_service.url + path).json()["status"] == "ok"
    assert requests.get(open_service.url + "/auth/me").json() == {"id": "anonymous", "name": "anonymous", "email": ""}


# --------------------------------------------------------------------------- auth, owners and the URL guard


@pytest.fixture(scope="module")
def locked_service(start_service, pages: PageServer, backend) -> RunningService:
    return start_service(SCOPE_API_KEYS="alice:key-alice,bob:key-bob", SCOPE_ALLOW_PRIVATE_URLS="0",
                         SCOPE_ALLOWED_HOSTS=f"127.0.0.1:{pages.port}", **backend("locked"))


ALICE = {"Authorization": "Bearer key-alice"}
BOB = {"Authorization": "Bearer key-bob"}


def test_unauthorized(locked_service: RunningService, small_video: Path, pages: PageServer) -> None:
    assert requests.get(locked_service.url + "/health").status_code == 200
    assert_error(requests.get(locked_service.url + "/sessions"), 401, "UNAUTHORIZED")
    assert_error(requests.get(locked_service.url + "/sessions", headers={"Authorization": "Bearer key-alicf"}),
                 401, "UNAUTHORIZED")
    assert_error(upload(locked_service.url, small_video, seedUrl=pages.url), 401, "UNAUTHORIZED")
    assert requests.get(locked_service.url + "/auth/me", headers=ALICE).json()["id"] == "alice"
    assert_nothing_left(locked_service)


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]", "localhost.", "[::1]"])
def test_url_not_allowed(locked_service: RunningService, small_video: Path, host: str) -> None:
    response = upload(locked_service.url, small_video, seedUrl=f"http://{host}:8080/admin", headers=ALICE)
    assert_error(response, 422, "URL_NOT_ALLOWED", "seedUrl")
    assert_nothing_left(locked_service)


def test_sessions_belong_to_their_owner_and_thumbnails_are_signed(locked_service: RunningService, small_video: Path,
                                                                  pages: PageServer) -> None:
    response = upload(locked_service.url, small_video, seedUrl=pages.url + "/", headers=ALICE)
    assert response.status_code == 200, response.text
    body = response.json()
    sid = body["sessionId"]
    assert_error(requests.get(f"{locked_service.url}/sessions/{sid}", headers=BOB), 404, "NOT_FOUND")
    assert requests.get(locked_service.url + "/sessions", headers=BOB).json() == []
    assert_error(requests.delete(f"{locked_service.url}/sessions/{sid}", headers=BOB), 404, "NOT_FOUND")
    thumb = body["frames"][0]["thumbnailUrl"]
    assert "signature=" in thumb
    assert requests.get(locked_service.url + thumb).content.startswith(b"\x89PNG")  # an <img> sends no header
    bare = thumb.split("?")[0]
    assert_error(requests.get(locked_service.url + bare), 401, "UNAUTHORIZED")
    assert requests.get(locked_service.url + bare, headers=ALICE).status_code == 200
    assert_error(requests.get(locked_service.url + bare, headers=BOB), 404, "NOT_FOUND")
    assert_error(requests.get(locked_service.url + thumb.replace("signature=", "signature=0")), 401, "UNAUTHORIZED")
    created = requests.post(locked_service.url + "/sessions", json={"title": "By hand", "frameCount": 2}, headers=BOB)
    assert created.status_code == 201 and created.json()["status"] == "processing"
    assert created.json()["prompt"] == "" and created.json()["frames"] == []
    assert [s["id"] for s in requests.get(locked_service.url + "/sessions", headers=BOB).json()] == [created.json()["id"]]
    assert requests.delete(f"{locked_service.url}/sessions/{sid}", headers=ALICE).status_code == 204


# --------------------------------------------------------------------------- back-pressure, deadline, storage


@pytest.fixture(scope="module")
def tight_service(start_service, backend) -> RunningService:
    # The deadline leaves a loaded machine time to start the browser and ask for the slow page (the
    # test waits for that request), and is far shorter than the page's delay.
    return start_service(SCOPE_ALLOW_PRIVATE_URLS="1", SCOPE_MAX_INFLIGHT="1", SCOPE_DEADLINE_S="8", **backend("tight"))


def slow_page(seconds: int) -> str:
    """A path of the page server that answers after about ``seconds``, unique to this call."""
    return f"/slow?d={seconds}.{uuid.uuid4().int % 10**6:06d}"


def wait_for_hit(pages: PageServer, path: str) -> None:
    """Until the page server has been asked for ``path`` (the pipeline is then under way)."""
    deadline = time.monotonic() + 60
    while path not in pages.hits:
        assert time.monotonic() < deadline, f"{path} was never requested"
        time.sleep(0.05)


def test_deadline_and_busy(tight_service: RunningService, small_video: Path, pages: PageServer) -> None:
    results: dict[str, requests.Response] = {}
    path = slow_page(30)

    def slow() -> None:
        results["slow"] = upload(tight_service.url, small_video, seedUrl=pages.url + path)

    worker = threading.Thread(target=slow)
    worker.start()
    wait_for_hit(pages, path)
    busy = upload(tight_service.url, small_video, seedUrl=pages.url + "/")
    worker.join(60)
    body = assert_error(busy, 429, "BUSY")
    assert int(busy.headers["Retry-After"]) > 0 and "limit" in body["message"]
    assert_error(results["slow"], 504, "TIMEOUT")
    assert_nothing_left(tight_service)


@pytest.fixture(scope="module")
def shared_service(start_service, pages: PageServer, backend) -> RunningService:
    return start_service(SCOPE_API_KEYS="alice:key-alice,bob:key-bob", SCOPE_MAX_INFLIGHT="2",
                         SCOPE_ALLOWED_HOSTS=f"127.0.0.1:{pages.port}", **backend("fair"))


def test_one_owner_cannot_take_every_slot(shared_service: RunningService, small_video: Path,
                                          pages: PageServer) -> None:
    """Two slots, two owners: Alice's slow recording holds one, her second is refused, Bob's goes through."""
    results: dict[str, requests.Response] = {}
    path = slow_page(8)  # Alice holds her slot this long after the page was asked for

    def slow() -> None:
        results["slow"] = upload(shared_service.url, small_video, headers=ALICE, seedUrl=pages.url + path)

    worker = threading.Thread(target=slow)
    worker.start()
    wait_for_hit(pages, path)
    second = upload(shared_service.url, small_video, headers=ALICE, seedUrl=pages.url + "/")
    bobs = upload(shared_service.url, small_video, headers=BOB, seedUrl=pages.url + "/")
    worker.join(60)
    assert "share" in assert_error(second, 429, "BUSY")["message"]
    assert bobs.status_code == 200, bobs.text
    assert results["slow"].status_code == 200, results["slow"].text


def test_storage_unavailable(start_service, tmp_path_factory, small_video: Path, pages: PageServer,
                             backend) -> None:
    env = backend("down")
    if env:  # the cloud stores, but nothing answers where they should be
        env.update({"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{free_port()}",
                    "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{free_port()}", "SCOPE_STORE_RETRY_S": "1"})
    else:  # a file where the data folder should be
        blocker = tmp_path_factory.mktemp("blocked") / "not-a-dir"
        blocker.write_text("a file where the data folder should be")
        env = {"SCOPE_DATA_DIR": str(blocker / "data")}
    service = start_service(SCOPE_ALLOW_PRIVATE_URLS="1", **env)
    assert_error(requests.get(service.url + "/health"), 503, "UNAVAILABLE")
    assert_error(upload(service.url, small_video, seedUrl=pages.url + "/"), 503, "UNAVAILABLE")
    assert_error(requests.get(service.url + "/sessions"), 503, "UNAVAILABLE")
    assert_error(requests.post(service.url + "/sessions", json={"title": "x"}), 503, "UNAVAILABLE")
    assert service.temp_files() == []


def test_client_gone_mid_upload_leaves_nothing(clean_service: RunningService) -> None:
    import socket

    seen = len(clean_service.log_path.read_text())
    with socket.create_connection(("127.0.0.1", clean_service.port)) as sock:
        sock.sendall(b"POST /recordings HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b0undary\r\n"
                     b"Content-Length: 20000000\r\n\r\n--b0undary\r\nContent-Disposition: form-data; name=\"file\"; "
                     b"filename=\"a.webm\"\r\n\r\n\x1a\x45\xdf\xa3" + b"\x00" * 3_000_000)
    deadline = time.time() + 20
    while '"POST /recordings ' not in clean_service.log_path.read_text()[seen:] and time.time() < deadline:
        time.sleep(0.2)  # until the service has answered this request
    # The body ended early: 400 "the upload ended before the body was complete" (logged; the client is gone).
    assert re.findall(r'"POST /recordings \d+', clean_service.log_path.read_text()[seen:]) == ['"POST /recordings 400']
    assert clean_service.temp_files() == []
    assert "Traceback" not in clean_service.log_path.read_text()
    assert requests.get(clean_service.url + "/health").status_code == 200  # and it still serves


def test_full_temporary_disk(start_service, small_video: Path, pages: PageServer, tmp_path: Path) -> None:
    service = start_service(max_file_bytes=2_000_000, SCOPE_ALLOW_PRIVATE_URLS="1")
    big = tmp_path / "big.webm"
    big.write_bytes(small_video.read_bytes() + b"\x00" * 3_000_000)
    assert_error(upload(service.url, big, seedUrl=pages.url + "/"), 503, "UNAVAILABLE")
    assert service.temp_files() == [] and service.stored_sessions() == []


# --------------------------------------------------------------------------- the CLI


def test_cli_prints_the_prompt_and_the_json(tmp_path: Path, small_video: Path, pages: PageServer) -> None:
    env = {"PATH": "/usr/bin:/bin", "SCOPE_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    args = [sys.executable, "-m", "function.cli", str(small_video), "--title", "CLI run", "--url", pages.url + "/"]
    prompt = subprocess.run(args + ["--target", "CURSOR"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert prompt.returncode == 0, prompt.stderr  # a local tool: the page on 127.0.0.1 is allowed by default...
    assert "private URLs are allowed" in prompt.stderr  # ...and it says so
    assert prompt.stdout.startswith("Fix the problem") and "\"CLI run\"" in prompt.stdout
    # For an agent on this machine the frames are files it can open: absolute paths into the local store.
    local = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    images = re.findall(r"image (\S+\.png)", local.stdout)
    assert local.returncode == 0 and len(images) == 3
    assert all(Path(image).is_absolute() and Path(image).read_bytes().startswith(b"\x89PNG") for image in images)
    as_json = subprocess.run(args + ["--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    body = json.loads(as_json.stdout)
    assert SESSION_ID.match(body["sessionId"]) and body["frameCount"] == 3
    refused = subprocess.run(args[:6] + ["--url", "ftp://x"], cwd=REPO, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "seedUrl" in refused.stderr
    guarded = subprocess.run(args + ["--no-private-urls"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120)
    assert guarded.returncode == 1 and "seedUrl is not allowed" in guarded.stderr
    assert "private URLs are allowed" not in guarded.stderr
    helped = subprocess.run([sys.executable, "-m", "function.cli", "--help"], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert "--no-private-urls" in helped.stdout and "examples:" in helped.stdout


def test_cli_shows_its_phases_on_a_terminal_and_nothing_extra_when_piped(tmp_path: Path, small_video: Path,
                                                                          pages: PageServer) -> None:
    import pty

    env = {"PATH": "/usr/bin:/bin", "SCOPE_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    args = [sys.executable, "-m", "function.cli", str(small_video), "--title", "CLI run", "--url", pages.url + "/"]
    primary, secondary = pty.openpty()
    with open(os.devnull, "wb") as quiet:
        on_terminal = subprocess.run(args, cwd=REPO, env=env, stdout=quiet, stderr=secondary, timeout=120)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    text = shown.decode()
    assert on_terminal.returncode == 0, text
    for phase in ("decoding the video", "reading the key frames", "opening the page", "writing the prompt"):
        assert f"… {phase}" in text and f"✓ {phase} (" in text, text
    assert re.search(r"… decoding the video \[[█░]{24}\] +\d+%", text), text  # decoding's bar, by time
    assert re.search(r"… reading the key frames \[[█░]{24}\] +\d+% \d+/\d+ frames", text), text
    assert re.search(r"… writing the prompt \[[█░]{24}\] +\d+% \d+/\d+ objects", text), text
    assert re.search(r"… opening the page \[[█░]{24}\] +\d+% [1-4]/4 steps", text), text
    assert '"severity"' not in text and "extract at" not in text  # only the phases, and warnings as lines
    assert "  ! SCOPE_ALLOW_PRIVATE_URLS=1: the browser may open loopback" in text
    piped = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "✓" not in piped.stderr and "…" not in piped.stderr


def test_logs_are_structured_and_hold_no_secrets(locked_service: RunningService, small_video: Path,
                                                 pages: PageServer) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = upload(locked_service.url, small_video, seedUrl=pages.url + "/", notes="secret customer data 1234",
                      headers={**ALICE, "X-Cloud-Trace-Context": f"{trace}/1;o=1", "X-Request-Id": "req-log-test"})
    assert response.status_code == 200, response.text
    requests.get(locked_service.url + "/sessions", headers={"Authorization": "Bearer wrong-key"})
    deadline = time.monotonic() + 10
    while '"status": 401' not in locked_service.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # until the refused request's log line is written
    text = locked_service.log_path.read_text()
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    ours = [e for e in entries if e.get("requestId") == "req-log-test"]
    assert ours and all(e["severity"] in {"INFO", "WARNING", "ERROR"} and e["message"] for e in ours)
    assert all(e["logging.googleapis.com/trace"].endswith(trace) for e in ours)  # projects/P/traces/T in the cloud
    assert any(e.get("httpRequest", {}).get("status") == 200 for e in ours)
    assert any(e["message"] == "recording processed" and e["sessionId"] for e in ours)
    phases = {(e["phase"], e["event"]) for e in ours if "phase" in e}  # each phase's start and end, this request's
    assert {(p, ev) for p in ("extract", "grounding", "vision", "browser", "prompt") for ev in ("start", "end")} <= phases
    assert any(e.get("httpRequest", {}).get("status") == 401 for e in entries)
    for secret in ("key-alice", "key-bob", "wrong-key", "secret customer data"):
        assert secret not in text


@pytest.fixture(scope="session")
def hostile_videos(tmp_path_factory: pytest.TempPathFactory, recordings: Path) -> dict[str, Path]:
    """Valid containers that break the limits, and damaged real recordings of each container."""
    folder = tmp_path_factory.mktemp("hostile")
    ff = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi"]
    # A small file whose header claims 16000x16000 (Matroska PixelWidth/PixelHeight patched in place).
    subprocess.run(ff + ["-i", "color=c=gray:s=256x256:r=1", "-frames:v", "2", "-c:v", "libvpx", "-b:v", "50k",
                         str(folder / "small.webm")], check=True, timeout=120)
    data = (folder / "small.webm").read_bytes()
    assert data.count(b"\xb0\x82\x01\x00") == 1 and data.count(b"\xba\x82\x01\x00") == 1
    (folder / "huge.webm").write_bytes(data.replace(b"\xb0\x82\x01\x00", b"\xb0\x82\x3e\x80")
                                       .replace(b"\xba\x82\x01\x00", b"\xba\x82\x3e\x80"))
    # Frames that change size mid-stream, the container declaring the first: 320x240, then 480x360
    # (within the limit) or 4096x2304 (above it).
    for name, size in (("resized", "480x360"), ("smuggled", "4096x2304")):
        parts = []
        for n, part_size in enumerate(("320x240", size)):
            parts.append(folder / f"{name}{n}.ts")
            subprocess.run(ff + ["-i", f"testsrc=s={part_size}:r=5", "-t", "2", "-c:v", "libx264", "-preset",
                                 "ultrafast", "-output_ts_offset", str(2 * n), "-f", "mpegts", str(parts[-1])],
                           check=True, timeout=120)
        (folder / f"{name}.ts").write_bytes(b"".join(p.read_bytes() for p in parts))
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(folder / f"{name}.ts"), "-c", "copy",
                        str(folder / f"{name}.mkv")], check=True, timeout=120)
    subprocess.run(ff + ["-i", "color=c=gray:s=64x64:r=1/600", "-t", "36000", "-c:v", "libx264", "-preset",
                         "ultrafast", str(folder / "ten_hours.mkv")], check=True, timeout=120)
    videos = {"huge": folder / "huge.webm", "ten_hours": folder / "ten_hours.mkv",
              "resized": folder / "resized.mkv", "smuggled": folder / "smuggled.mkv"}
    for name in ("todomvc_long_1280_vp8.webm", "todomvc_edit_1280_h264.mp4", "todomvc_quick_1280_h264.mkv"):
        data = (recordings / name).read_bytes()
        suffix = Path(name).suffix
        (folder / f"truncated{suffix}").write_bytes(data[: len(data) // 3])
        middle = bytearray(data)
        middle[len(data) // 3: len(data) // 2] = bytes(range(256)) * ((len(data) // 2 - len(data) // 3) // 256) \
            + bytes((len(data) // 2 - len(data) // 3) % 256)
        (folder / f"corrupt{suffix}").write_bytes(bytes(middle))
        videos[f"truncated{suffix}"] = folder / f"truncated{suffix}"
        videos[f"corrupt{suffix}"] = folder / f"corrupt{suffix}"
    return videos


def test_limits_refuse_huge_and_endless_streams_before_decoding(clean_service: RunningService, pages: PageServer,
                                                                hostile_videos: dict[str, Path]) -> None:
    for name in ("huge", "ten_hours"):
        body = assert_error(upload(clean_service.url, hostile_videos[name], seedUrl=pages.url + "/"),
                            422, "UNDECODABLE_VIDEO", "file")
        assert "limit" in body["message"]
    assert "16000x16000" in assert_error(upload(clean_service.url, hostile_videos["huge"], seedUrl=pages.url + "/"),
                                         422, "UNDECODABLE_VIDEO", "file")["message"]


def test_the_pixel_limit_holds_for_every_decoded_frame(clean_service: RunningService, pages: PageServer,
                                                      hostile_videos: dict[str, Path]) -> None:
    """The header is only a claim: frames larger than the limit after a small first one are refused, and
    frames that change size within it are read at the first size with a warning."""
    body = assert_error(upload(clean_service.url, hostile_videos["smuggled"], seedUrl=pages.url + "/"),
                        422, "UNDECODABLE_VIDEO", "file")
    assert "4096x2304" in body["message"] and "limit" in body["message"]
    response = upload(clean_service.url, hostile_videos["resized"], seedUrl=pages.url + "/")
    assert response.status_code == 200, response.text
    resized = response.json()
    assert any("320x240 to 480x360" in w for w in resized["warnings"]), resized["warnings"]
    assert all(f["changedRegion"] is None or f["changedRegion"]["x"] + f["changedRegion"]["width"] <= 320
               for f in resized["frames"])
    assert requests.delete(f"{clean_service.url}/sessions/{resized['sessionId']}").status_code == 204


@pytest.mark.parametrize("damage,suffix,expected", [
    ("truncated", ".webm", "ends early"), ("truncated", ".mp4", "ends early"), ("truncated", ".mkv", "ends early"),
    ("corrupt", ".mp4", "corrupt after"),  # MP4's sample tables point into the garbage: decoding stops there
    ("corrupt", ".webm", None), ("corrupt", ".mkv", None),  # Matroska resyncs at the next cluster
])
def test_damaged_recordings_of_each_container(clean_service: RunningService, pages: PageServer,
                                              hostile_videos: dict[str, Path], damage: str, suffix: str,
                                              expected: str | None) -> None:
    """What a damaged recording still holds is used; where the damage cut the video short, a warning says so."""
    response = upload(clean_service.url, hostile_videos[f"{damage}{suffix}"], seedUrl=pages.url + "/")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["frameCount"] >= 1
    if expected is None:  # the frames after the damaged third are decoded too
        session = requests.get(f"{clean_service.url}/sessions/{body['sessionId']}").json()
        assert body["warnings"] == [] and body["frames"][-1]["timestamp"] > 0.6 * session["duration"] * 1000
    else:
        assert any(expected in w for w in body["warnings"]), body["warnings"]
    assert requests.delete(f"{clean_service.url}/sessions/{body['sessionId']}").status_code == 204


def test_huge_request_headers_are_refused_and_the_service_carries_on(clean_service: RunningService) -> None:
    """The HTTP server refuses a header over 8 KiB itself (431) before the app sees the request."""
    response = requests.get(clean_service.url + "/sessions", headers={"X-Padding": "a" * 100_000})
    assert response.status_code == 431
    assert requests.get(clean_service.url + "/health").status_code == 200
