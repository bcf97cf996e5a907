"""Accepted recordings through a task queue (Cloud Tasks on Cloud Run), against a local stand-in of its API.

The service creates a task per accepted recording; the stand-in delivers it back to the service,
whose callback processes the session from its stored video. Processing so survives the instance
that accepted the recording, which is what Cloud Run needs (it may stop an instance once no request
is open on it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests

from conftest import PageServer, RunningService, free_port, upload
from fake_tasks import FakeTasks

QUEUE = FakeTasks.QUEUE
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def tasks() -> Iterator[FakeTasks]:
    stand_in = FakeTasks()
    yield stand_in
    stand_in.release()
    stand_in.close()


def status_of(service: RunningService, session_id: str) -> dict:
    return requests.get(f"{service.url}/sessions/{session_id}/status", timeout=30).json()


def test_a_recording_accepted_by_one_instance_is_processed_by_the_next(
        start_service: Callable[..., RunningService], tasks: FakeTasks, small_video: Path, pages: PageServer,
        tmp_path: Path) -> None:
    tasks.hold()  # the task waits in the queue while the instance that accepted it is stopped
    port = free_port()  # the service's URL the tasks call back: the next instance starts there
    env = tasks.service_env(port, tmp_path / "data")
    first = start_service(port=port, **env)
    response = upload(first.url, small_video, headers=ASYNC, seedUrl=pages.url + "/")
    assert response.status_code == 202, response.text
    sid = response.json()["sessionId"]
    [task] = tasks.tasks
    assert task.queue == QUEUE and task.request["httpMethod"] == "POST"
    assert task.request["url"] == f"http://127.0.0.1:{port}/jobs/{sid}" and task.request["headers"]["X-Scope-Job"]
    assert status_of(first, sid)["processingStatus"] == "queued"
    assert not first.temp_files()  # the upload's file went at once: the task works from the stored video
    first.stop()

    second = start_service(port=port, **env)
    tasks.release()
    assert task.delivered.wait(120)
    assert task.attempts[-1] == 200
    done = status_of(second, sid)
    assert done["sessionStatus"] == "complete" and done["progress"] == 100, done
    session = requests.get(f"{second.url}/sessions/{sid}", timeout=30).json()
    assert session["frameCount"] >= 2 and session["steps"] and session["prompt"]

    tasks.deliver_again(task)  # Cloud Tasks delivers at least once: a second delivery redoes nothing
    assert task.delivered.wait(60)
    assert task.attempts[-1] == 200
    assert requests.get(f"{second.url}/sessions/{sid}", timeout=30).json()["updatedAt"] == session["updatedAt"]
    assert requests.delete(f"{second.url}/sessions/{sid}", timeout=30).status_code == 204


def test_a_callback_needs_its_signed_ticket(start_service: Callable[..., RunningService], tasks: FakeTasks,
                                            small_video: Path, pages: PageServer, tmp_path: Path) -> None:
    tasks.hold()
    port = free_port()
    service = start_service(port=port, **tasks.service_env(port, tmp_path / "data"))
    accepted = [upload(service.url, small_video, headers=ASYNC, seedUrl=pages.url + "/").json()["sessionId"]
                for _ in range(2)]
    first, second = tasks.tasks
    ticket = first.request["headers"]["X-Scope-Job"]
    for headers, target in (({}, accepted[0]), ({"X-Scope-Job": ticket[:-2] + "xx"}, accepted[0]),
                            ({"X-Scope-Job": ticket}, accepted[1])):  # the first one's ticket for the second
        answer = requests.post(f"{service.url}/jobs/{target}", headers=headers, timeout=30)
        assert answer.status_code == 401 and answer.json()["code"] == "UNAUTHORIZED"
    assert [status_of(service, sid)["processingStatus"] for sid in accepted] == ["queued", "queued"]
    for sid in accepted:
        assert requests.delete(f"{service.url}/sessions/{sid}", timeout=30).status_code == 204
    tasks.release()
    assert first.delivered.wait(60) and second.delivered.wait(60)
    assert first.attempts[-1] == second.attempts[-1] == 200  # deleted meanwhile: the task ends, nothing comes back
    assert service.records() == [] and service.stored_sessions() == []


def test_without_a_queue_there_is_no_callback(start_service: Callable[..., RunningService]) -> None:
    plain = start_service(SCOPE_ALLOW_PRIVATE_URLS="1")
    answer = requests.post(f"{plain.url}/jobs/sess_AAAAAAAA", headers={"X-Scope-Job": "x"}, timeout=30)
    assert answer.status_code == 404 and answer.json()["code"] == "NOT_FOUND"


def test_a_queue_that_refuses_the_task_leaves_nothing(start_service: Callable[..., RunningService], tasks: FakeTasks,
                                                      small_video: Path, pages: PageServer, tmp_path: Path) -> None:
    tasks.refuse = 403  # e.g. the service account may not enqueue
    port = free_port()
    service = start_service(port=port, **tasks.service_env(port, tmp_path / "data"))
    answer = upload(service.url, small_video, headers=ASYNC, seedUrl=pages.url + "/")
    assert answer.status_code == 503 and answer.json()["code"] == "UNAVAILABLE"
    assert service.records() == [] and service.stored_sessions() == [] and not service.temp_files()
    synchronous = upload(service.url, small_video, seedUrl=pages.url + "/")  # the default path needs no queue
    assert synchronous.status_code == 200, synchronous.text


def test_a_queue_needs_where_to_call_back_and_one_secret_for_every_instance() -> None:
    from function.config import ConfigError, load

    full = {"SCOPE_TASKS_QUEUE": QUEUE, "SCOPE_SERVICE_URL": "https://scope.example.run.app/",
            "SCOPE_SIGNING_SECRET": "s"}
    config = load(full)
    assert config.tasks_queue == QUEUE and config.service_url == "https://scope.example.run.app"
    for missing in ("SCOPE_SERVICE_URL", "SCOPE_SIGNING_SECRET"):
        with pytest.raises(ConfigError, match=missing):
            load({k: v for k, v in full.items() if k != missing})
    with pytest.raises(ConfigError, match="projects/PROJECT"):
        load(full | {"SCOPE_TASKS_QUEUE": "recordings"})


def test_a_task_carries_an_oidc_token_only_where_cloud_run_checks_invokers(tasks: FakeTasks) -> None:
    from function.tasks import JobSigner, JobTicket, TaskQueue

    tasks.hold()
    tasks.max_attempts = 1
    signer = JobSigner("s")
    nobody = "http://127.0.0.1:9"  # the discard port: the deliveries go nowhere
    for invoker in (None, "scope@p.iam.gserviceaccount.com"):
        TaskQueue(QUEUE, nobody, signer, 360, tasks.host, invoker).enqueue(JobTicket("sess_A", "o"))
    plain, signed = (t.request for t in tasks.tasks)
    assert "oidcToken" not in plain
    assert signed["oidcToken"] == {"serviceAccountEmail": "scope@p.iam.gserviceaccount.com", "audience": nobody}
    assert signer.ticket(plain["headers"]["X-Scope-Job"], "sess_A") == JobTicket("sess_A", "o")
    assert JobSigner("another secret").ticket(plain["headers"]["X-Scope-Job"], "sess_A") is None
