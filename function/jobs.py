"""Recordings accepted now and processed in the background (``Prefer: respond-async``).

The answer (202) goes out once the recording's record is claimed (``queued``) and its video
stored. Then either:

- locally, a small pool of workers here runs the pipeline on it; a worker holds the caller's
  in-flight slot until it is done, so accepted work counts against the same limit as synchronous
  work; or
- with a task queue (``tasks.TaskQueue``, Cloud Tasks on Cloud Run), a task is created that calls
  back into the service, and ``run_stored`` processes the session inside that callback, from the
  stored video, on whichever instance the callback reaches.

Either way each phase is recorded in the session, and the session ends ``complete`` or ``error``
with ``lastError``. A job lost with its process is marked ``error`` once its deadline has passed
(``Records``), never left ``processing``.
"""

from __future__ import annotations

import contextvars
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from .frames import VideoError
from .models import ProcessingPhase, RecordingRequest, Session
from .pipeline import PipelineTimeout, Progress, UrlNotAllowed
from .records import Records, SessionNotFound
from .sessions import SessionsUnavailable
from .storage import ObjectNotFound, StorageUnavailable
from .tasks import JobTicket, QueueUnavailable, TaskQueue

log = logging.getLogger("scope.jobs")

GRACE_S = 120.0  # past the pipeline's own deadline, before a recording processed here counts as lost
QUEUE_GRACE_S = 1200.0  # the same through the queue, which retries a busy or failed callback for 15 minutes

Process = Callable[[RecordingRequest, Session, Progress], Session]  # the pipeline into an accepted session
TRANSIENT = (StorageUnavailable, SessionsUnavailable)  # through the queue: answered 503, so the task is retried


class Jobs:
    """Runs accepted recordings: on a local pool of workers, or through a task queue."""

    def __init__(self, records: Records, process: Process, workers: int, deadline_s: float,
                 queue: TaskQueue | None = None) -> None:
        self.records = records
        self.process = process
        self.queue = queue
        self.lost_after_s = deadline_s + (QUEUE_GRACE_S if queue is not None else GRACE_S)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")

    def submit(self, request: RecordingRequest, done: Callable[[], None]) -> Session:
        """Claim the session and have it processed; ``done`` runs once this instance no longer needs the
        upload's file and slot (at once through a queue, else when the job ends)."""
        session = self.records.accept(request, self.lost_after_s)
        if self.queue is not None:
            try:
                self.queue.enqueue(JobTicket(session.id, session.owner_id, request.client_duration_ms))
            except QueueUnavailable:
                self.records.discard(session)
                raise
            done()
            return session
        try:
            self.pool.submit(contextvars.copy_context().run, self._run_then, request, session, done)
        except RuntimeError:  # the pool is shutting down: nothing will process it
            self.records.discard(session)
            raise
        return session

    def run_stored(self, ticket: JobTicket) -> Session | None:
        """Process an accepted session from its stored video (a task's callback); the session as it ends,
        None when it was deleted. A session no longer ``processing`` is left as it is: the task was
        delivered twice, or retried after it had finished. Store outages raise (the task is retried)."""
        try:
            session = self.records.get(ticket.owner_id, ticket.session_id)
        except SessionNotFound:
            return None
        if session.status != "processing":
            return session
        with tempfile.TemporaryDirectory(prefix="scope-job-") as folder:
            video = Path(folder) / "video"
            try:
                self.records.fetch_video(session, video)
            except ObjectNotFound:
                self._fail(session, "the recording's stored video is gone; upload it again")
                return self._current(session)
            self._run(RecordingRequest(
                video_path=video, file_size=session.file_size, mime_type=session.mime_type, title=session.title,
                seed_url=session.seed_url, notes=session.notes, agent_target=session.agent_target,
                client_duration_ms=ticket.client_duration_ms, owner_id=session.owner_id), session, retry_transient=True)
        return self._current(session)

    def _current(self, session: Session) -> Session | None:
        try:
            return self.records.get(session.owner_id, session.id)
        except SessionNotFound:
            return None

    def _run_then(self, request: RecordingRequest, session: Session, done: Callable[[], None]) -> None:
        try:
            self._run(request, session)
        finally:
            done()

    def _run(self, request: RecordingRequest, session: Session, retry_transient: bool = False) -> None:
        lock = threading.Lock()

        def progress(phase: ProcessingPhase) -> None:
            with lock:  # the lanes report from their own threads
                try:
                    self.records.advance(session, phase)
                except Exception:  # noqa: BLE001 - a progress note that cannot be written stops nothing
                    log.warning("could not record phase %s of %s", phase, session.id)

        try:
            self.process(request, session, progress)
        except SessionNotFound:
            log.info("session %s was deleted while it was processed", session.id)
        except VideoError as exc:
            self._fail(session, f"the video cannot be processed: {exc}")
        except (UrlNotAllowed, PipelineTimeout) as exc:
            self._fail(session, str(exc))
        except TRANSIENT as exc:
            if retry_transient:
                raise
            self._fail(session, f"storage was unavailable while the recording was processed ({exc})")
        except Exception:  # noqa: BLE001 - the record says it failed; the log keeps why
            log.exception("processing %s failed", session.id)
            self._fail(session, "internal error while processing the recording")

    def _fail(self, session: Session, message: str) -> None:
        try:
            self.records.fail(session, message)
        except Exception:  # noqa: BLE001 - the deadline marks it error when the stores are back
            log.exception("could not mark %s as failed", session.id)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
