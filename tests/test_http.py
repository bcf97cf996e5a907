"""The HTTP layer in-process: faults that cannot be provoked from outside (a bug → 500)."""

from __future__ import annotations

import io
from pathlib import Path

import flask
import pytest

from function.config import Config
from function.http import create_app
from function.records import Records
from function.sessions import LocalSessionStore
from function.storage import LocalStore


def client_for(tmp_path: Path, process) -> flask.testing.FlaskClient:
    config = Config(data_dir=tmp_path, allow_private_urls=True)
    records = Records(LocalStore(tmp_path / "objects"), LocalSessionStore(tmp_path / "records"))
    return create_app(config, records, process).test_client()


def test_a_bug_is_a_500_without_a_stack_trace(tmp_path: Path, small_video: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken_pipeline(_request):
        raise RuntimeError("secret internal detail")

    client = client_for(tmp_path, broken_pipeline)
    with open(small_video, "rb") as fh:
        response = client.post("/api/recordings", data={"file": (fh, "v.webm"), "title": "t",
                                                         "seedUrl": "http://127.0.0.1/"},
                               content_type="multipart/form-data")
    assert response.status_code == 500
    body = response.get_json()
    assert body["code"] == "INTERNAL" and body["statusCode"] == 500 and body["message"] == "internal error"
    assert "secret internal detail" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)
    assert "secret internal detail" in caplog.text  # the log keeps what the answer hides
    assert list((tmp_path / "objects").glob("**/*")) == []


def test_json_body_limit(tmp_path: Path) -> None:
    client = client_for(tmp_path, lambda r: None)
    response = client.post("/sessions", data=b"{" + b" " * (2 * 1024 * 1024) + b"}", content_type="application/json")
    assert response.status_code == 413 and response.get_json()["code"] == "FILE_TOO_LARGE"
    assert client.post("/sessions", json={"title": "  "}).get_json()["code"] == "MISSING_FIELD"
    assert client.post("/sessions", json=["a"]).get_json()["code"] == "INVALID_FIELD"
    created = client.post("/sessions", json={"title": "ok", "agentTarget": "CURSOR", "urlCount": 3})
    assert created.status_code == 201 and created.get_json()["agentTarget"] == "CURSOR"
    assert client.post("/sessions", json={"title": "x", "frameCount": -1}).get_json()["field"] == "frameCount"
    sid = created.get_json()["id"]
    assert client.patch(f"/sessions/{sid}", json={"ownerId": "mallory"}).get_json()["code"] == "INVALID_FIELD"
    assert client.get("/sessions?limit=0").get_json()["field"] == "limit"
    assert client.get("/sessions?limit=1&pageToken=garbage").get_json()["field"] == "pageToken"


def test_paging_header(tmp_path: Path) -> None:
    client = client_for(tmp_path, lambda r: None)
    for n in range(3):
        client.post("/sessions", json={"title": f"s{n}"})
    first = client.get("/sessions?limit=2")
    assert len(first.get_json()) == 2 and first.headers["X-Next-Page-Token"]
    rest = client.get(f"/sessions?limit=2&pageToken={first.headers['X-Next-Page-Token']}")
    assert len(rest.get_json()) == 1 and "X-Next-Page-Token" not in rest.headers
    assert len(client.get("/sessions").get_json()) == 3


def test_patch_obeys_the_uploads_text_rules(tmp_path: Path) -> None:
    """One declaration of the rules: a PATCHed title is normalised and checked like an uploaded one."""
    client = client_for(tmp_path, lambda r: None)
    sid = client.post("/sessions", json={"title": "ok"}).get_json()["id"]
    decomposed = "Cafe\u0301 order"  # e + combining acute: NFC makes it one character
    patched = client.patch(f"/sessions/{sid}", json={"title": f"  {decomposed}  "})
    assert patched.status_code == 200 and patched.get_json()["title"] == "Caf\u00e9 order"
    for bad in ("line\nbreak", "nul\x00byte", "c1\x85control", "x" * 501, "   ", 5, None):
        answer = client.patch(f"/sessions/{sid}", json={"title": bad})
        assert answer.status_code == 400 and answer.get_json()["field"] == "title", bad
    assert client.patch(f"/sessions/{sid}", json={"notes": "two\nlines"}).status_code == 200
    assert client.patch(f"/sessions/{sid}", json={"frame_count": 3}).get_json()["code"] == "INVALID_FIELD"  # camelCase only
    assert client.patch(f"/sessions/{sid}", json={"frameCount": True}).get_json()["field"] == "frameCount"
    assert client.patch(f"/sessions/{sid}", json={"urlCount": 2**63}).get_json()["field"] == "urlCount"
    assert client.post("/sessions", json={"title": "a\u2028b\nc"}).get_json()["code"] == "INVALID_FIELD"


@pytest.mark.parametrize("path", ["/sessions//x", "/api/sessions//x", "/sessions//frames/x", "/api//sessions"])
def test_empty_path_segments_are_no_route(tmp_path: Path, path: str) -> None:
    """Not a redirect to a guessed path, not a 500: the contract's 404 in JSON."""
    # PATH_INFO as a server hands it over (the test client would read "//sessions" as a host)
    response = client_for(tmp_path, lambda request: None).get("/", environ_overrides={"PATH_INFO": path})
    assert response.status_code == 404 and response.json["code"] == "NOT_FOUND"


def test_a_body_sent_with_a_get_is_never_read(tmp_path: Path) -> None:
    """Nothing waits on it (a client may declare one and never send it): the answer comes without a read,
    and the connection is closed since the unread bytes would otherwise start the next request."""
    class Untouchable(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("the body of a GET was read")

        readline = read1 = read

    response = client_for(tmp_path, lambda request: None).get(
        "/health", input_stream=Untouchable(b"0123456789"), headers={"Content-Length": "10"})
    assert response.status_code == 200 and response.json["status"] == "ok"
    assert response.headers["Connection"] == "close"
