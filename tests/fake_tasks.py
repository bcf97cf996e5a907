"""A small stand-in for the Cloud Tasks REST API (v2) on 127.0.0.1: it takes tasks and delivers them.

``POST /v2/{queue}/tasks`` stores the task and answers with its name, as Cloud Tasks does; a
dispatcher thread then makes the task's HTTP request, retrying an answer that is not 2xx (as a
queue's retry config would) up to ``max_attempts``. ``hold`` keeps tasks undelivered until
``release`` (an instance can be stopped meanwhile); ``deliver_again`` repeats a delivered task (Cloud
Tasks delivers at least once). ``refuse`` makes task creation fail with that status.
"""

from __future__ import annotations

import base64
import http.server
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from fake_http import send_json


@dataclass
class Task:
    name: str
    queue: str
    request: dict
    attempts: list[int] = field(default_factory=list)  # the status of each delivery
    delivered: threading.Event = field(default_factory=threading.Event)


class FakeTasks:
    def __init__(self, max_attempts: int = 5, backoff_s: float = 0.3) -> None:
        self.tasks: list[Task] = []
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.refuse: int | None = None
        self._released = threading.Event()
        self._released.set()
        self._pending: queue.Queue[Task | None] = queue.Queue()
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                parent = self.path.removeprefix("/v2/").removesuffix("/tasks")
                if stand_in.refuse is not None or not self.path.endswith("/tasks"):
                    send_json(self, stand_in.refuse or 404, {"error": {"message": "refused"}})
                    return
                task = Task(f"{parent}/tasks/{len(stand_in.tasks) + 1}", parent, body["task"]["httpRequest"])
                stand_in.tasks.append(task)
                stand_in._pending.put(task)
                send_json(self, 200, {"name": task.name, "httpRequest": task.request})

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True)
        self._dispatcher.start()

    QUEUE = "projects/scope-test/locations/europe-west1/queues/recordings"

    def service_env(self, port: int, data_dir: Path) -> dict[str, str]:
        """The settings of a service at 127.0.0.1:``port`` whose accepted recordings go through this queue
        (every instance on the same data and the same signing secret)."""
        return {"SCOPE_ALLOW_PRIVATE_URLS": "1", "SCOPE_TASKS_QUEUE": self.QUEUE,
                "SCOPE_SERVICE_URL": f"http://127.0.0.1:{port}", "SCOPE_SIGNING_SECRET": "one-for-every-instance",
                "CLOUD_TASKS_EMULATOR_HOST": self.host, "SCOPE_DATA_DIR": str(data_dir)}

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def deliver_again(self, task: Task) -> None:
        task.delivered.clear()
        self._pending.put(task)

    def _dispatch(self) -> None:
        while (task := self._pending.get()) is not None:
            self._released.wait()
            request = task.request
            for attempt in range(self.max_attempts):
                if attempt:
                    time.sleep(self.backoff_s * 2 ** (attempt - 1))
                try:
                    answer = requests.request(request["httpMethod"], request["url"], headers=request["headers"],
                                              data=base64.b64decode(request.get("body", "")), timeout=300)
                    task.attempts.append(answer.status_code)
                    if answer.ok:
                        break
                except requests.RequestException:
                    task.attempts.append(0)
            task.delivered.set()

    def close(self) -> None:
        self._pending.put(None)
        self.server.shutdown()
        self.server.server_close()
