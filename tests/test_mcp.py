"""The MCP server through the protocol: started as a subprocess, spoken to over stdio with the SDK's own
client, against the local store and against the real service."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import cv2
import numpy as np
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from conftest import REPO, PageServer, RunningService, upload

TOOLS = {"list_sessions", "get_session", "get_prompt", "get_frame", "get_page_snapshot", "process_recording"}


def run_client(env: dict[str, str], calls: list[tuple[str, dict[str, Any]]]) -> tuple[list[Any], list[Any]]:
    """Start ``python -m function.mcp`` with ``env``, list its tools and make ``calls`` in order."""
    async def talk() -> tuple[list[Any], list[Any]]:
        params = StdioServerParameters(command=sys.executable, args=["-m", "function.mcp"], cwd=str(REPO),
                                       env=env)
        async with stdio_client(params) as streams:
            async with ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                tools = (await session.list_tools()).tools
                results = [await session.call_tool(name, args) for name, args in calls]
        return tools, results

    return anyio.run(talk)


def text_of(result: Any) -> Any:
    """A tool's answer as data: its structured content, or the JSON of its text."""
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content.get("result", result.structured_content)
    return json.loads(result.content[0].text)


def error_of(result: Any) -> str:
    assert result.is_error
    return result.content[0].text


def png_of(result: Any) -> np.ndarray:
    assert not result.is_error, result.content
    (content,) = result.content
    assert content.type == "image" and content.mime_type == "image/png"
    image = cv2.imdecode(np.frombuffer(base64.b64decode(content.data), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOPE_", "ANTHROPIC_"))}
    env.update({"SCOPE_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)})
    return env


def test_the_tools_against_the_local_store(tmp_path: Path, small_video: Path, pages: PageServer) -> None:
    not_a_video = tmp_path / "notes.txt"
    not_a_video.write_text("hello")
    env = base_env(tmp_path)
    tools, (processed, refused_text, refused_dir) = run_client(env, [
        ("process_recording", {"video_path": str(small_video), "seed_url": pages.url + "/", "title": "Todo not saved",
                               "notes": "Enter does nothing"}),
        ("process_recording", {"video_path": str(not_a_video), "seed_url": pages.url + "/", "title": "x"}),
        ("process_recording", {"video_path": str(tmp_path), "seed_url": pages.url + "/", "title": "x"}),
    ])
    assert {t.name for t in tools} == TOOLS
    assert all(t.description and t.input_schema["type"] == "object" for t in tools)
    created = text_of(processed)
    session_id = created["sessionId"]
    assert created["status"] == "complete" and created["frameCount"] == 3 and isinstance(created["steps"], list)
    assert "not a webm, mp4 or mkv video" in error_of(refused_text)
    assert "not a regular file" in error_of(refused_dir)

    first_frame = json.loads((tmp_path / "data" / "records" / "sessions" / f"{session_id}.json").read_text())
    frame_id = first_frame["frames"][2]["id"]
    _, results = run_client(env, [
        ("list_sessions", {}),
        ("get_session", {"session_id": session_id}),
        ("get_prompt", {"session_id": session_id, "agent_target": "CODEX"}),
        ("get_frame", {"session_id": session_id, "frame_id": frame_id}),
        ("get_frame", {"session_id": session_id, "frame_id": frame_id, "crop_to_change": True}),
        ("get_page_snapshot", {"session_id": session_id}),
        ("get_session", {"session_id": "sess_NOPE0000"}),
        ("get_frame", {"session_id": session_id}),
        ("get_prompt", {"session_id": session_id, "agent_target": "GEMINI"}),
    ])
    listed, session, prompt, frame, cropped, snapshot, missing, no_frame, bad_target = results
    assert [s["id"] for s in text_of(listed)] == [session_id]
    detail = text_of(session)
    assert detail["title"] == "Todo not saved" and detail["notes"] == "Enter does nothing"
    assert detail["urlsInspected"] == [pages.url + "/"] and len(detail["frames"]) == 3
    assert "## Acceptance criteria" in prompt.content[0].text and "Todo not saved" in prompt.content[0].text
    assert png_of(frame).shape == (360, 640, 3)
    height, width = png_of(cropped).shape[:2]
    assert height < 360 and width <= 640  # cut to the changed region and its margin
    page = text_of(snapshot)
    assert page["success"] and page["title"] == "Todo app" and 'button "Add"' in page["ariaTree"]
    assert "session sess_NOPE0000 not found" in error_of(missing) and "Traceback" not in error_of(missing)
    assert "frame_id or step" in error_of(no_frame)
    assert bad_target.is_error


@pytest.fixture(scope="module")
def keyed_service(start_service, pages: PageServer) -> RunningService:
    return start_service(SCOPE_API_KEYS="alice:key-alice,bob:key-bob",
                         SCOPE_ALLOWED_HOSTS=f"127.0.0.1:{pages.port}")


def test_the_same_tools_against_the_service(tmp_path: Path, keyed_service: RunningService, small_video: Path,
                                            pages: PageServer) -> None:
    bobs = upload(keyed_service.url, small_video, seedUrl=pages.url + "/", headers={"Authorization": "Bearer key-bob"})
    assert bobs.status_code == 200, bobs.text
    env = base_env(tmp_path) | {"SCOPE_API_URL": keyed_service.url, "SCOPE_API_KEY": "key-alice"}
    _, (processed,) = run_client(env, [
        ("process_recording", {"video_path": str(small_video), "seed_url": pages.url + "/", "title": "Alice's run"})])
    session_id = text_of(processed)["sessionId"]
    steps = text_of(processed)["steps"]
    assert steps and steps[0]["frameId"], steps  # the small video's first change is a step with its frame
    _, results = run_client(env, [
        ("list_sessions", {}),
        ("get_frame", {"session_id": session_id, "step": 1}),
        ("get_page_snapshot", {"session_id": session_id, "url": pages.url + "/"}),
        ("get_session", {"session_id": bobs.json()["sessionId"]}),
        ("get_prompt", {"session_id": session_id, "agent_target": "CURSOR"}),
        ("get_session", {"session_id": session_id}),
    ])
    listed, frame_or_session, snapshot, bobs_session, prompt, session = results
    assert [s["id"] for s in text_of(listed)] == [session_id]  # never another owner's sessions
    assert png_of(frame_or_session).shape[1] == 640  # the frame that shows step 1, through the service
    assert text_of(snapshot)["httpStatus"] == 200
    assert "not found" in error_of(bobs_session) and "(HTTP 404)" in error_of(bobs_session)
    assert prompt.content[0].text.startswith("Fix the problem") and "Alice's run" in prompt.content[0].text
    assert text_of(session)["title"] == "Alice's run" and text_of(session)["steps"] == steps
    _, (unauthorised,) = run_client(env | {"SCOPE_API_KEY": "wrong"}, [("list_sessions", {})])
    assert "(HTTP 401)" in error_of(unauthorised)
