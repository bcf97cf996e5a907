"""Recordings accepted now and processed in the background (``Prefer: respond-async``).

The answer (202) goes out once the recording's record is claimed (``queued``) and its video
stored; a small pool of workers here then runs the pipeline on it, recording each phase in the
record, and finishes the session or marks it ``error`` with ``lastError``. A worker holds the
caller's in-flight slot until it is done, so accepted work counts against the same limit as
synchronous work. A job lost with its process (an instance stopped) is marked ``error`` once its
deadline has passed (``Records``), never left ``processing``.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from .frames import VideoError
from .models import ProcessingPhase, RecordingRequest, Session
from .pipeline import PipelineTimeout, Progress, UrlNotAllowed
from .records import Records, SessionNotFound

log = logging.getLogger("scope.jobs")

GRACE_S = 120.0  # past the pipeline's own deadline, before an accepted recording counts as lost

Process = Callable[[RecordingRequest, Session, Progress], Session]  # the pipeline into an accepted session


class Jobs:
    """A pool of workers for accepted recordings."""

    def __init__(self, records: Records, process: Process, workers: int, deadline_s: float) -> None:
        self.records = records
        self.process = process
        self.deadline_s = deadline_s
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")

    def submit(self, request: RecordingRequest, done: Callable[[], None]) -> Session:
        """Claim the session and start processing it; ``done`` runs when the job ends, whatever the end."""
        session = self.records.accept(request, self.deadline_s + GRACE_S)
        try:
            self.pool.submit(contextvars.copy_context().run, self._run, request, session, done)
        except RuntimeError:  # the pool is shutting down: nothing will process it
            self.records.fail(session, "the service was stopping; upload the recording again")
            raise
        return session

    def _run(self, request: RecordingRequest, session: Session, done: Callable[[], None]) -> None:
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
        except Exception:  # noqa: BLE001 - the record says it failed; the log keeps why
            log.exception("processing %s failed", session.id)
            self._fail(session, "internal error while processing the recording")
        finally:
            done()

    def _fail(self, session: Session, message: str) -> None:
        try:
            self.records.fail(session, message)
        except Exception:  # noqa: BLE001 - the deadline marks it error when the stores are back
            log.exception("could not mark %s as failed", session.id)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
