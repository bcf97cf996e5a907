"""A session's life: built from the pipeline's evidence, stored, edited, re-rendered, deleted.

The storage layout lives here and nowhere else (``sessions/{id}/video.webm``,
``frames/{frameId}.png``, ``snapshots/{n}.yaml``, ``screenshots/{n}.png``,
``prompt.md``). Writes go objects first, then the record that points to them, so
a reader never finds a record whose objects are missing; a failure after the
first write removes what was written. Deletion goes the other way round.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import logs, prompts
from .auth import frame_path
from .models import (
    AriaNode,
    DiffSummary,
    FlowStep,
    Frame,
    Inspection,
    PHASE_PERCENT,
    LaneTimings,
    PointerHint,
    ProcessingPhase,
    RecordingEvidence,
    RecordingRequest,
    Session,
    SessionCreate,
    SessionPatch,
    Stats,
    new_id,
    now_rfc3339,
    trim_lines,
)
from .sessions import SessionStore, SessionsUnavailable
from .storage import BlobStore

log = logging.getLogger("scope.records")

ID_ATTEMPTS = 5  # new ids drawn before giving up (36^8 ids: a second draw is already rare)
RECORD_ARIA_CHARS = 30_000  # per snapshot in the session record (a Firestore document holds 1 MiB)
EXTENSIONS = {"video/webm": "webm", "video/mp4": "mp4", "video/x-matroska": "mkv"}


class SessionNotFound(LookupError):
    """No such session for this caller (another owner's session is not found either)."""


# --------------------------------------------------------------------------- storage layout


def session_prefix(session_id: str) -> str:
    return f"sessions/{session_id}/"


def frame_key(session_id: str, frame_id: str) -> str:
    return f"{session_prefix(session_id)}frames/{frame_id}.png"


def prompt_key(session_id: str) -> str:
    return f"{session_prefix(session_id)}prompt.md"


def video_key(session_id: str, mime_type: str) -> str:
    return f"{session_prefix(session_id)}video.{EXTENSIONS[mime_type]}"


# --------------------------------------------------------------------------- evidence → session


def diff_elements(previous: list[AriaNode], current: list[AriaNode]) -> tuple[list[AriaNode], DiffSummary]:
    """Mark ``current`` against ``previous`` by (role, name): added, changed (new state), removed."""
    before = {(n.role, n.name): n for n in previous}
    now_keys = {(n.role, n.name) for n in current}
    marked: list[AriaNode] = []
    summary = DiffSummary()
    for node in current:
        old = before.get((node.role, node.name))
        status = None
        if old is None:
            status, summary.added = "added", summary.added + 1
        elif (old.state or "") != (node.state or ""):
            status, summary.changed = "changed", summary.changed + 1
        marked.append(node.model_copy(update={"diff_status": status}))
    for key, node in before.items():
        if key not in now_keys:
            summary.removed += 1
            marked.append(AriaNode(role=node.role, name=node.name, diff_status="removed", state=node.state))
    return marked, summary


def build_frames(session_id: str, evidence: RecordingEvidence) -> list[Frame]:
    """API frames from key frames and their analyses, with element diffs against the previous frame."""
    created = now_rfc3339()
    out: list[Frame] = []
    previous_elements: list[AriaNode] = []
    previous_url = None
    for key, analysis in zip(evidence.video.key_frames, evidence.video.vision.analyses):
        frame_id = new_id("frm_")
        aria_tree, summary = diff_elements(previous_elements, analysis.elements)
        previous_elements = analysis.elements
        url = analysis.url or previous_url
        previous_url = url
        out.append(Frame(
            id=frame_id, session_id=session_id, timestamp=key.timestamp, url=url,
            thumbnail_url=frame_path(session_id, frame_id), diff_summary=summary, aria_tree=aria_tree,
            created_at=created, change_score=key.change_score, changed_region=key.changed_region,
            analysis=analysis, pointer=PointerHint(x=key.pointer.x, y=key.pointer.y, still_ms=key.pointer_still_ms)
            if key.pointer is not None else None,
        ))
    return out


@dataclass(frozen=True)
class Pricing:
    """USD per million tokens, for the vision cost estimate."""

    input: float = 3.0
    output: float = 15.0


def build_session(session_id: str, request: RecordingRequest, evidence: RecordingEvidence, pricing: Pricing) -> Session:
    video, inspection = evidence.video, evidence.inspection
    duration_ms = video.info.container_duration_ms or request.client_duration_ms or video.info.last_frame_ms
    frames = build_frames(session_id, evidence)
    steps = [step.model_copy(update={"frame_id": frames[step.frame_index].id if step.frame_index is not None
                                     and step.frame_index < len(frames) else None}) for step in evidence.steps]
    now = now_rfc3339()
    return Session(
        id=session_id, owner_id=request.owner_id, title=request.title, seed_url=request.seed_url,
        notes=request.notes, status="complete", duration=round(duration_ms / 1000), frame_count=len(frames),
        urls=list(inspection.urls_inspected), url_count=len(inspection.urls_inspected),
        agent_target=request.agent_target, created_at=now, updated_at=now, file_size=request.file_size,
        mime_type=request.mime_type, frames=frames, inspection=inspection, steps=steps,
        flow=[FlowStep(timestamp=s.timestamp, action=s.description) for s in video.vision.steps],
        observed_problem=video.vision.observed_problem, warnings=evidence.warnings,
        vision_provider=video.vision.provider, vision_input_tokens=video.vision.input_tokens,
        vision_output_tokens=video.vision.output_tokens, vision_requests=video.vision.requests,
        vision_cost_usd=round((video.vision.input_tokens * pricing.input
                               + video.vision.output_tokens * pricing.output) / 1e6, 6),
    )


def trim_for_record(inspection: Inspection) -> None:
    """The record keeps each ARIA snapshot up to RECORD_ARIA_CHARS; the whole one is an object in storage."""
    for snap in inspection.snapshots:
        snap.aria_tree, cut = trim_lines(snap.aria_tree, RECORD_ARIA_CHARS)
        snap.aria_tree_truncated = snap.aria_tree_truncated or cut


# --------------------------------------------------------------------------- the records


class Records:
    """Sessions as the callers see them, kept in a blob store and a session store."""

    def __init__(self, store: BlobStore, sessions: SessionStore, prompt_tokens: int = prompts.DEFAULT_TOKEN_BUDGET,
                 pricing: Pricing = Pricing()) -> None:
        self.store = store
        self.sessions = sessions
        self.prompt_tokens = prompt_tokens
        self.pricing = pricing

    def check(self) -> None:
        """Raise when either store cannot take work."""
        self.store.check()
        self.sessions.check()

    def render(self, session: Session) -> str:
        return prompts.render(session.agent_target, prompts.Evidence.of(session), self.prompt_tokens)

    # ------------------------------------------------------------------ a processed recording

    def accept(self, request: RecordingRequest, deadline_s: float) -> Session:
        """Claim a session for a recording that is processed later: its ``queued`` record and its video
        object, so that whoever processes it finds both. Nothing is left when either write fails."""
        now = now_rfc3339()
        session = self._claim(lambda session_id: Session(
            id=session_id, owner_id=request.owner_id, title=request.title, seed_url=request.seed_url,
            notes=request.notes, agent_target=request.agent_target, created_at=now, updated_at=now,
            file_size=request.file_size, mime_type=request.mime_type, phase="queued",
            deadline_at=now_rfc3339(deadline_s)))
        try:
            session.objects = [video_key(session.id, request.mime_type)]
            self.store.put_file(session.objects[0], request.video_path, request.mime_type)
            self.sessions.put(session)
        except BaseException:
            self._remove_objects(session.id)
            self._forget(session)
            raise
        return session

    def advance(self, session: Session, phase: ProcessingPhase) -> bool:
        """Record how far processing of an accepted recording is; False when it is no longer processing
        (deleted meanwhile, or given up on past its deadline)."""
        current = self.sessions.get(session.owner_id, session.id)
        if current is None or current.status != "processing":
            return False
        if PHASE_PERCENT.get(current.phase or "", 0) < PHASE_PERCENT[phase]:  # phases only go forward
            current.phase, current.updated_at = phase, now_rfc3339()
            self.sessions.put(current)
        return True

    def fail(self, session: Session, message: str) -> None:
        """An accepted recording that could not be processed: its objects go, its record says why."""
        self._remove_objects(session.id)
        current = self.sessions.get(session.owner_id, session.id)
        if current is None:
            return
        current.status, current.phase, current.last_error, current.objects = "error", None, message, []
        current.updated_at = now_rfc3339()
        self.sessions.put(current)

    def save_recording(self, request: RecordingRequest, evidence: RecordingEvidence,
                       accepted: Session | None = None) -> Session:
        """Build the session from ``evidence``, render its prompt, claim its id with a ``processing``
        record (or use the one ``accept`` claimed), store its objects, then the finished record."""
        with logs.phase_span(log, "prompt"):
            session = self._write_recording(request, evidence, accepted)
        log.info("recording processed", extra={"fields": {
            "sessionId": session.id, "processingMs": session.processing_time, "lanes": session.timings.to_json(),
            "frames": len(session.frames)}})
        return session

    def _write_recording(self, request: RecordingRequest, evidence: RecordingEvidence,
                         accepted: Session | None) -> Session:
        """``save_recording``'s work; whatever it stored is removed again if it fails."""
        rendering: list[float] = []

        def make(session_id: str) -> Session:
            built = build_session(session_id, request, evidence, self.pricing)
            began = time.monotonic()
            built.prompt = self.render(built)
            built.status = "processing"  # until its objects are stored
            rendering.append(time.monotonic() - began)
            return built

        if accepted is None:
            session = self._claim(make)
        else:
            session = make(accepted.id)
            session.created_at = accepted.created_at
        store_started = time.monotonic()
        try:
            session.objects = self._save_objects(session, request, evidence, video_stored=accepted is not None)
            if accepted is not None:
                current = self.sessions.get(accepted.owner_id, accepted.id)
                if current is None or current.status != "processing":  # deleted, or given up on: nothing comes back
                    self._remove_objects(session.id)
                    raise SessionNotFound(session.id)
                session.title, session.notes = current.title, current.notes  # renamed meanwhile
            trim_for_record(evidence.inspection)
            finished = time.monotonic()
            grounding = evidence.spans.get("grounding", (0, 0))
            session.timings = LaneTimings(
                video_ms=evidence.video.video_ms, vision_ms=evidence.video.vision_ms,
                browser_ms=evidence.inspection.duration_ms, grounding_ms=grounding[1] - grounding[0],
                video_span=list(evidence.spans.get("video", ())), browser_span=list(evidence.spans.get("browser", ())),
                prompt_ms=int(rendering[-1] * 1000),
                store_ms=int((finished - store_started) * 1000),
            )
            session.processing_time = int((finished - evidence.started) * 1000)
            session.status = "complete"
            self.sessions.put(session)
        except SessionNotFound:
            raise
        except BaseException:
            if accepted is None:
                self._remove_objects(session.id)
                self._forget(session)
            else:
                self._remove_results(session.id)  # the accepted video stays: a retry starts from it
            raise
        return session

    def _save_objects(self, session: Session, request: RecordingRequest, evidence: RecordingEvidence,
                      video_stored: bool = False) -> list[str]:
        """Write every object of the session (video, frame images, snapshots, prompt); return their keys."""
        prefix = session_prefix(session.id)
        video = video_key(session.id, request.mime_type)
        objects: list[tuple[str, bytes | Path, str]] = [] if video_stored else [(video, request.video_path,
                                                                                  request.mime_type)]
        for frame, key_frame in zip(session.frames, evidence.video.key_frames):
            objects.append((frame_key(session.id, frame.id), key_frame.png, "image/png"))
        for n, snap in enumerate(evidence.inspection.snapshots):
            objects.append((f"{prefix}snapshots/{n}.yaml", snap.aria_tree.encode(), "application/yaml"))
            if snap.screenshot:
                objects.append((f"{prefix}screenshots/{n}.png", snap.screenshot, "image/png"))
        objects.append((prompt_key(session.id), session.prompt.encode(), "text/markdown"))
        for done, (key, data, content_type) in enumerate(objects, 1):
            if isinstance(data, Path):
                self.store.put_file(key, data, content_type)
            else:
                self.store.put_bytes(key, data, content_type)
            logs.progress(log, "prompt", done, len(objects), "objects")
        return ([video] if video_stored else []) + [key for key, _, _ in objects]

    def _claim(self, make: Callable[[str], Session]) -> Session:
        """A session under a new id, its record created only if the id was free (a taken id draws another)."""
        for _ in range(ID_ATTEMPTS):
            session = make(new_id("sess_"))
            if self.sessions.create(session):
                return session
            log.warning("session id %s was taken; drawing another", session.id)
        raise SessionsUnavailable(f"no free session id in {ID_ATTEMPTS} draws")

    def _forget(self, session: Session) -> None:
        try:
            self.sessions.delete(session.owner_id, session.id)
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            log.exception("could not remove the record of %s", session.id)

    def _remove_results(self, session_id: str) -> None:
        """Everything processing wrote for a session, but not its video."""
        prefix = session_prefix(session_id)
        try:
            for part in ("frames/", "snapshots/", "screenshots/"):
                self.store.delete_prefix(prefix + part)
            self.store.delete_prefix(prompt_key(session_id))
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            log.exception("could not remove the results of %s", session_id)

    def fetch_video(self, session: Session, path: Path) -> None:
        """The accepted recording's video, copied to ``path`` (``ObjectNotFound`` when it is gone)."""
        self.store.get_file(video_key(session.id, session.mime_type), path)

    def discard(self, session: Session) -> None:
        """Undo ``accept``: nothing of the session is left."""
        self._remove_objects(session.id)
        self._forget(session)

    def _remove_objects(self, session_id: str) -> None:
        try:
            self.store.delete_prefix(session_prefix(session_id))
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            log.exception("could not remove the objects of %s", session_id)

    # ------------------------------------------------------------------ reading

    def get(self, owner: str, session_id: str) -> Session:
        session = self.sessions.get(owner, session_id)
        if session is None:
            raise SessionNotFound(session_id)
        return self._past_deadline(session)

    def list(self, owner: str, limit: int | None, page_token: str | None) -> tuple[list[Session], str | None]:
        items, token = self.sessions.list(owner, limit, page_token)
        return [self._past_deadline(s) for s in items], token

    def _past_deadline(self, session: Session) -> Session:
        """An accepted recording still processing past its deadline was lost (its instance stopped):
        it is marked ``error`` when next read, never left hanging."""
        if session.status == "processing" and session.deadline_at and session.deadline_at < now_rfc3339():
            session.status, session.phase = "error", None
            session.last_error = "processing did not finish by its deadline; upload the recording again"
            session.updated_at = now_rfc3339()
            self._remove_objects(session.id)
            session.objects = []
            self.sessions.put(session)
        return session

    def stats(self, owner: str) -> Stats:
        return self.sessions.stats(owner)

    def frame_image(self, session_id: str, frame_id: str) -> bytes:
        """A frame's PNG (``ObjectNotFound`` when there is none); the caller has checked the right to see it."""
        return self.store.get_bytes(frame_key(session_id, frame_id))

    # ------------------------------------------------------------------ changing

    def create(self, owner: str, body: SessionCreate) -> Session:
        """A session made by hand, ``processing`` until its client says otherwise."""
        now = now_rfc3339()
        return self._claim(lambda session_id: Session(id=session_id, owner_id=owner, created_at=now, updated_at=now,
                                                      **body.model_dump(exclude_unset=False)))

    def patch(self, session: Session, patch: SessionPatch) -> Session:
        """Apply the fields ``patch`` sets; a new ``agentTarget`` without a ``prompt`` re-renders the prompt."""
        changes = {name: getattr(patch, name) for name in patch.model_fields_set}
        retarget = "agent_target" in changes and changes["agent_target"] != session.agent_target \
            and "prompt" not in changes
        for name, value in changes.items():
            setattr(session, name, value)
        if retarget:
            session.prompt = self.render(session)
        self._save(session, prompt_changed=retarget or "prompt" in changes)
        return session

    def regenerate_prompt(self, owner: str, session_id: str) -> Session:
        session = self.get(owner, session_id)
        session.prompt = self.render(session)
        self._save(session, prompt_changed=True)
        return session

    def _save(self, session: Session, prompt_changed: bool) -> None:
        session.updated_at = now_rfc3339()
        if prompt_changed and session.status == "complete":
            self.store.put_bytes(prompt_key(session.id), session.prompt.encode(), "text/markdown")
        self.sessions.put(session)

    def delete(self, owner: str, session_id: str) -> None:
        self.get(owner, session_id)
        self.store.delete_prefix(session_prefix(session_id))  # objects first: a retry still finds the record
        self.sessions.delete(owner, session_id)
