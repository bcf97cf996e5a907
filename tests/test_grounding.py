"""Steps grounded in the live page, end to end: a recording of the project's own test app, made here with
known actions and a drawn pointer, uploaded to the real service, which opens the same app and names
each element the pointer acted on by its role and accessible name."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from conftest import RunningService, upload
from fake_anthropic import FakeAnthropic
from function.aria import place
from recorder import Action, AppServer, record_console_flow


@pytest.fixture(scope="module")
def app() -> Iterator[AppServer]:
    server = AppServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def console_recording(app: AppServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Action]]:
    path = tmp_path_factory.mktemp("recordings") / "console.mkv"
    return path, record_console_flow(app.url, path)


@pytest.fixture(scope="module")
def service(start_service) -> RunningService:
    return start_service(SCOPE_ALLOW_PRIVATE_URLS="1")


def named(steps: list[dict], log: list[Action], recordings: Path) -> dict:
    """The fixtures' own scoring rule, applied to this recording's action log."""
    spec = importlib.util.spec_from_file_location("score_actions", recordings / "score_actions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    module.GT["console.mkv"] = [action.to_json() for action in log]
    return module.score("console.mkv", {"steps": steps})


def test_clicks_are_named_from_the_live_page(service: RunningService, app: AppServer, recordings: Path,
                                             console_recording: tuple[Path, list[Action]]) -> None:
    video, log = console_recording
    response = upload(service.url, video, seedUrl=app.url + "index.html", title="Search finds nothing",
                      notes="Searching for an invoice number should list the order.")
    assert response.status_code == 200, response.text
    body = response.json()
    steps = body["steps"]
    by_name = {(s["target"] or {}).get("name"): s for s in steps}
    components, alerts = by_name.get("Components"), by_name.get("Alerts")
    assert components is not None and alerts is not None, steps
    for step, selector in ((components, "#components"), (alerts, "#alerts")):
        assert step["action"] == "click" and step["source"] == "pointer+page" and step["confidence"] >= 0.6
        assert step["target"]["role"] == "button" and step["target"]["selector"] == selector
        assert step["frameId"] in {f["id"] for f in body["frames"]}
    assert components["timestamp"] < alerts["timestamp"]
    typing = [s for s in steps if s["action"] == "type"]
    enter = [s for s in steps if s["action"] == "key" and s["value"] == "Enter"]
    assert typing and enter and typing[0]["timestamp"] < enter[0]["timestamp"]
    assert 'Clicked the button \u201cComponents\u201d' in body["prompt"]
    result = named(steps, log, recordings)
    assert result["named"] >= 3 and result["kind_only"] >= 5, result["rows"]


def test_claude_reads_the_frames_with_the_live_pages_elements(
        start_service, app: AppServer, console_recording: tuple[Path, list[Action]]) -> None:
    """With a key, Claude is told what the live page has under the pointer, and its steps keep the page's names."""
    claude = FakeAnthropic()
    try:
        service = start_service(SCOPE_ALLOW_PRIVATE_URLS="1", ANTHROPIC_API_KEY="sk-test",
                                ANTHROPIC_BASE_URL=claude.url, SCOPE_VISION_MODEL="claude-test")
        video, _ = console_recording
        response = upload(service.url, video, seedUrl=app.url + "index.html")
        sent = [block["text"] for request in claude.requests for block in request["messages"][0]["content"]
                if block["type"] == "text" and block["text"].startswith("Context of frame ")]
    finally:
        claude.close()
    assert response.status_code == 200, response.text
    contexts = [json.loads(text.split(": ", 1)[1]) for text in sent]
    named_there = {(c["liveElement"]["role"], c["liveElement"]["name"]) for c in contexts if "liveElement" in c}
    assert {("button", "Components"), ("button", "Alerts")} <= named_there
    assert any("pointer" in c and "changedRegion" in c for c in contexts)
    steps = response.json()["steps"]
    components = [s for s in steps if (s["target"] or {}).get("name") == "Components"]
    assert components and components[0]["source"] == "pointer+page+anthropic:claude-test", steps
    assert components[0]["target"]["selector"] == "#components"  # the page's element, not the model's copy of it


def test_a_page_that_cannot_be_placed_leaves_the_steps_named_from_the_screen(
        service: RunningService, app: AppServer, console_recording: tuple[Path, list[Action]]) -> None:
    """Another page than the one recorded: nothing matches the recording, so nothing is named from it."""
    video, _ = console_recording
    response = upload(service.url, video, seedUrl=app.url + "tables.html")
    assert response.status_code == 200, response.text
    assert [s for s in response.json()["steps"] if s["source"] == "pointer+page"] == []


@pytest.mark.parametrize("offset,scale", [((0, 0), 1.0), ((0, 87), 1.0), ((40, 30), 0.5), ((0, 0), 1.5)])
def test_the_page_is_found_inside_the_frame(offset: tuple[int, int], scale: float) -> None:
    """A tab capture, a window capture under a toolbar, a scaled kiosk capture."""
    rng = np.random.default_rng(7)
    page = np.full((360, 640), 245, np.uint8)
    for _ in range(40):  # a page's blocks of text and controls
        x, y = int(rng.integers(0, 600)), int(rng.integers(0, 330))
        cv2.rectangle(page, (x, y), (x + int(rng.integers(10, 80)), y + int(rng.integers(6, 24))),
                      int(rng.integers(0, 200)), -1)
    scaled = cv2.resize(page, (round(640 * scale), round(360 * scale)))
    frame = np.full((max(500, scaled.shape[0] + offset[1]), max(800, scaled.shape[1] + offset[0])), 30, np.uint8)
    frame[offset[1]:offset[1] + scaled.shape[0], offset[0]:offset[0] + scaled.shape[1]] = scaled
    found = place(page, frame)
    assert found is not None and found.scale == scale
    assert abs(found.dx - offset[0]) <= 2 and abs(found.dy - offset[1]) <= 2
    assert found.to_page(offset[0] + round(100 * scale), offset[1] + round(50 * scale)) == pytest.approx((100, 50), abs=3)
    assert place(page, np.full((500, 800), 30, np.uint8)) is None  # not in the frame at all
