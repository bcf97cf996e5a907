#!/usr/bin/env python3
"""Freeze the evidence the prompt golden tests render: a fixture recording through the real
extractor and the local analyser, a page snapshot by the real browser, stored as JSON.

    .venv/bin/python scripts/make_golden_evidence.py   (then: UPDATE_GOLDEN=1 make test)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from conftest import RECORDINGS, PageServer  # noqa: E402
from function import frames  # noqa: E402
from function.aria import BrowserSettings, Inspector  # noqa: E402
from function.auth import frame_path  # noqa: E402
from function.models import FlowStep, Inspection, RecordingEvidence, VideoEvidence  # noqa: E402
from function.prompts import Evidence  # noqa: E402
from function.records import build_frames  # noqa: E402
from function.vision import LocalProvider, Vision  # noqa: E402


def evidence_for(video: Path, inspection: dict, session_id: str = "sess_GOLDEN01") -> dict:
    """Evidence JSON for a recording: real key frames, the local analyser, a given inspection."""
    key_frames, info, _ = frames.extract(video)
    vision = Vision(LocalProvider()).analyze(key_frames)
    no_pages = Inspection(urls_inspected=[], duration_ms=0, browser="", snapshots=[])
    session_frames = build_frames(session_id, RecordingEvidence(VideoEvidence(key_frames, info, vision, [], 0, 0),
                                                                no_pages, 0.0))
    for n, frame in enumerate(session_frames):  # stable ids and times for a stable file
        frame.id = f"frm_GOLD{n:04d}"
        frame.thumbnail_url = frame_path(session_id, frame.id)
        frame.created_at = "2026-11-29T00:00:00.000Z"
    evidence = Evidence(
        session_id=session_id, title="Todo list: toggling a todo does not update the counter",
        seed_url="http://127.0.0.1:8765/", notes="After ticking a todo the 'items left' counter should go down. "
        "It stays the same until I reload.", frames=session_frames, inspection=None,
        flow=[FlowStep(timestamp=f.timestamp, action=f"user action before frame {n}", screen="todo list")
              for n, f in enumerate(key_frames)],
        observed_problem="The counter keeps its old value after a todo is toggled.")
    body = evidence.to_json()
    body["inspection"] = inspection
    return body


def snapshot_pages(paths: list[str]) -> dict:
    """The real browser's inspection of the test pages, with the port and timings made stable."""
    pages = PageServer()
    browser = Inspector(BrowserSettings(allow_private=True))
    try:
        inspection = browser.inspect([pages.url + p for p in paths])
    finally:
        browser.close()
        pages.close()
    body = json.loads(json.dumps(inspection.to_json()).replace(pages.url, "http://127.0.0.1:8765"))
    body["durationMs"] = 0
    for snap in body["snapshots"]:
        snap["loadTimeMs"] = 0
    return body


def main() -> None:
    body = evidence_for(RECORDINGS / "todomvc_quick_1280_h264.mkv", snapshot_pages(["/broken", "/"]))
    (REPO / "tests" / "golden" / "evidence.json").write_text(json.dumps(body, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
