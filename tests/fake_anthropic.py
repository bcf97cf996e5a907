"""A small fake of the Anthropic Messages API on 127.0.0.1, for the real SDK to talk to.

It records every request and answers with a ``report_frames`` tool call built
from the frame captions it was sent (a step per frame, on the live element the
frame's context names, if any), or with whatever a test scripts: an HTTP error, a
malformed tool call, a slow reply.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import time
from collections import deque
from typing import Any, Callable

from fake_http import send_json

Behaviour = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def tool_answer(request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A well-formed report for every frame caption in the request."""
    frames = []
    steps = []
    contexts = {int(m.group(1)): json.loads(m.group(2)) for block in request["messages"][0]["content"]
                if block["type"] == "text" and (m := re.match(r"Context of frame (\d+): (.*)$", block["text"], re.S))}
    for block in request["messages"][0]["content"]:
        match = re.match(r"Frame (\d+) at (\d+) ms", block.get("text", "")) if block["type"] == "text" else None
        if match:
            index, ms = int(match.group(1)), int(match.group(2))
            frames.append({
                "index": index,
                "description": f"Frame {index}: the todo list with {index} items",
                "visibleText": f"todos {index} items left",
                "uiState": "list shown",
                "anomalies": ["Error: could not save"] if index == 2 else [],
                "url": "http://127.0.0.1:8765/#/active" if index >= 2 else None,
                "elements": [
                    {"role": "textbox", "name": "What needs to be done?"},
                    {"role": "checkbox", "name": "Toggle all", "state": "checked" if index >= 1 else "unchecked"},
                ] + [{"role": "listitem", "name": f"Item {i}"} for i in range(index)],
            })
            element = contexts.get(index, {}).get("liveElement")
            steps.append({"timestamp": ms, "action": "click", "frame": index, "confidence": 0.7,
                          "description": f"step at frame {index}"}
                         | ({"target": {"role": element["role"], "name": element["name"]}} if element else {}))
    answer = {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": request.get("model"),
        "content": [{"type": "tool_use", "id": "toolu_fake", "name": "report_frames",
                     "input": {"frames": frames, "steps": steps, "observedProblem": "Saving a todo fails.",
                               "urlsSeen": ["http://127.0.0.1:8765/#/active"]}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 1000 * len(frames), "output_tokens": 100 * len(frames)},
    }
    return 200, answer


def error(status: int) -> Behaviour:
    def answer(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return status, {"type": "error", "error": {"type": "api_error", "message": f"fake {status}"}}
    return answer


def malformed(_: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return 200, {"id": "msg_bad", "type": "message", "role": "assistant", "model": "m",
                 "content": [{"type": "text", "text": "Here are my thoughts in prose instead."}],
                 "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 5}}


class FakeAnthropic:
    def __init__(self, latency_s: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: deque[Behaviour] = deque()
        self.default: Behaviour = tool_answer
        self.latency_s = latency_s
        self.timings: list[tuple[float, float, float]] = []  # per request (perf_counter): began, read, answered
        self._lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                began = time.perf_counter()
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                read = time.perf_counter()
                with fake._lock:
                    fake.requests.append(request)
                    fake.headers.append(dict(self.headers))
                    behaviour = fake.script.popleft() if fake.script else fake.default
                if fake.latency_s:
                    time.sleep(fake.latency_s)
                status, body = behaviour(request)
                send_json(self, status, body)
                with fake._lock:
                    fake.timings.append((began, read, time.perf_counter()))

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def images(self, request: dict[str, Any]) -> list[bytes]:
        return [base64.b64decode(b["source"]["data"]) for b in request["messages"][0]["content"] if b["type"] == "image"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
