"""Accepted recordings handed to Cloud Tasks, so that processing survives the instance that took them.

Cloud Run may stop an instance once no request is open on it, and a worker thread there stops with
it. With ``SCOPE_TASKS_QUEUE`` set, an accepted recording (its record and video already stored)
becomes a task on that queue. The task calls back into the service — ``POST /jobs/{sessionId}`` with
a signed ``X-Scope-Job`` header — and the pipeline runs inside that request, which keeps its
instance alive; the queue retries a callback that failed (a full instance answers 429, a store
that hiccuped 503) within its deadline.

This talks to the Cloud Tasks REST API (v2) with the service's own credentials;
``CLOUD_TASKS_EMULATOR_HOST`` points it at a stand-in (tests), without credentials.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass

import requests
from itsdangerous import BadSignature, URLSafeTimedSerializer

log = logging.getLogger("scope.tasks")

API = "https://cloudtasks.googleapis.com"
JOB_HEADER = "X-Scope-Job"
JOB_TOKEN_TTL_S = 2 * 24 * 3600  # a task may be retried for a while; its token outlives that
ATTEMPTS = 3  # creating a task: on a connection error, 429 or 5xx, tried again after a pause
CREATE_TIMEOUT_S = 15.0


class QueueUnavailable(RuntimeError):
    """The task could not be created: the recording cannot be taken now."""


@dataclass(frozen=True)
class JobTicket:
    """What a callback carries, signed: whose session, which one, and what the upload told of it."""

    session_id: str
    owner_id: str
    client_duration_ms: int | None = None


class JobSigner:
    """Signs and checks the tickets of callbacks (the same secret on every instance: ``SCOPE_SIGNING_SECRET``)."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="scope.job")

    def sign(self, ticket: JobTicket) -> str:
        return self._serializer.dumps([ticket.session_id, ticket.owner_id, ticket.client_duration_ms])

    def ticket(self, token: str, session_id: str) -> JobTicket | None:
        """The ticket in ``token`` when it is ours, not expired, and made for this very session."""
        try:
            signed_id, owner_id, duration = self._serializer.loads(token, max_age=JOB_TOKEN_TTL_S)
        except (BadSignature, ValueError, TypeError):  # also SignatureExpired; a payload of another shape
            return None
        if signed_id != session_id or not isinstance(owner_id, str):
            return None
        return JobTicket(session_id, owner_id, duration if isinstance(duration, int) else None)


class TaskQueue:
    """One Cloud Tasks queue whose tasks call back into this service."""

    def __init__(self, queue: str, service_url: str, signer: JobSigner, dispatch_deadline_s: float,
                 emulator_host: str | None = None, invoker: str | None = None) -> None:
        self.queue = queue  # projects/P/locations/L/queues/Q
        self.invoker = invoker  # the tasks carry this account's OIDC token (for Cloud Run's invoker check)
        self.service_url = service_url.rstrip("/")
        self.signer = signer
        self.dispatch_deadline_s = int(min(1800, max(15, dispatch_deadline_s)))  # Cloud Tasks' bounds for HTTP
        self.endpoint = f"http://{emulator_host}" if emulator_host else API
        self._session: requests.Session | None = None if not emulator_host else requests.Session()

    def _http(self) -> requests.Session:
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
            self._session = AuthorizedSession(credentials)
        return self._session

    def enqueue(self, ticket: JobTicket) -> str:
        """Create the task that processes ``ticket``'s session; its name, or ``QueueUnavailable``."""
        body = json.dumps({"sessionId": ticket.session_id}).encode()
        task = {"task": {
            "httpRequest": {
                "httpMethod": "POST",
                "url": f"{self.service_url}/jobs/{ticket.session_id}",
                "headers": {"Content-Type": "application/json", JOB_HEADER: self.signer.sign(ticket)},
                "body": base64.b64encode(body).decode(),
            },
            "dispatchDeadline": f"{self.dispatch_deadline_s}s",
        }}
        if self.invoker:
            task["task"]["httpRequest"]["oidcToken"] = {"serviceAccountEmail": self.invoker,
                                                        "audience": self.service_url}
        problem = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(0.5 * 2 ** attempt)
            try:
                answer = self._http().post(f"{self.endpoint}/v2/{self.queue}/tasks", json=task,
                                           timeout=CREATE_TIMEOUT_S)
            except requests.RequestException as exc:
                problem = type(exc).__name__
                continue
            if answer.ok:
                name = str(answer.json().get("name", ""))
                log.info("task created for %s", ticket.session_id, extra={"fields": {"task": name}})
                return name
            problem = f"HTTP {answer.status_code}"
            if answer.status_code != 429 and answer.status_code < 500:
                break  # a refusal that will not change on its own (permissions, a queue that does not exist)
        log.error("could not create a task for %s: %s", ticket.session_id, problem)
        raise QueueUnavailable(f"the task queue is unavailable ({problem})")
