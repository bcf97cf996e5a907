"""The shapes that cross a boundary: the lanes' results, the session record, the API's JSON.

Everything that leaves a process (the HTTP answer, the session record, Claude's tool
input) is a pydantic model with camelCase aliases, so one declaration gives the
serialisation, the validation and the JSON schema. Values that never leave the
process (a key frame's PNG, video facts) are plain dataclasses.

The text rules of the contract (title, notes) live here too, so an upload and a
PATCH obey the same ones.
"""

from __future__ import annotations

import math
import re
import secrets
import string
import typing
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, field_validator, model_serializer
from pydantic.alias_generators import to_camel

# --------------------------------------------------------------------------- registries and rules

AgentTarget = Literal["CLAUDE_CODE", "CODEX", "CURSOR", "RAW"]
AGENT_TARGETS: tuple[str, ...] = typing.get_args(AgentTarget)
DEFAULT_AGENT_TARGET: AgentTarget = "CLAUDE_CODE"
SessionStatus = Literal["processing", "complete", "error"]
SESSION_STATUSES: tuple[str, ...] = typing.get_args(SessionStatus)
# Where a recording accepted for later processing (``Prefer: respond-async``) is, and how far along.
ProcessingPhase = Literal["queued", "decoding", "reading frames", "inspecting pages", "writing prompt"]
PHASE_PERCENT: dict[str, int] = {"queued": 0, "decoding": 10, "reading frames": 45, "inspecting pages": 75,
                                 "writing prompt": 90}

MAX_TITLE_CHARS = 500
MAX_NOTES_CHARS = 2000
MAX_URL_CHARS = 2048
MAX_PROMPT_CHARS = 1_000_000
MAX_COUNT = 2**53 - 1  # the largest integer every JSON reader (and Firestore) keeps exactly

_ID_ALPHABET = string.ascii_uppercase + string.digits
# C0 and C1 controls, and the bidirectional overrides and isolates that make text read other than it is stored.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAK = re.compile("[\r\n\t\u2028\u2029\x85]")


def new_id(prefix: str) -> str:
    """``sess_``/``frm_`` + 8 characters of [A-Z0-9], from a CSPRNG."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def now_rfc3339(after_s: float = 0.0) -> str:
    """Now (or ``after_s`` seconds from now), UTC, in milliseconds: the form every stored time takes."""
    moment = datetime.now(timezone.utc) + timedelta(seconds=after_s)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clean_text(value: str, *, multiline: bool) -> str:
    """The contract's text rule: NFC, trimmed, no control characters (no line breaks unless ``multiline``)."""
    value = unicodedata.normalize("NFC", value).strip()
    if multiline:
        value = value.replace("\u2028", "\n").replace("\u2029", "\n\n")  # Unicode's line breaks, as text has them
    if _CONTROL.search(value) or (not multiline and _LINE_BREAK.search(value)):
        raise ValueError("contains control characters")
    return value


def check_agent_target(value: str) -> AgentTarget:
    """The one validator of agent targets: empty means the default."""
    value = value.strip() or DEFAULT_AGENT_TARGET
    if value not in AGENT_TARGETS:
        raise ValueError(f"must be one of {', '.join(AGENT_TARGETS)}")
    return typing.cast(AgentTarget, value)


def trim_lines(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut ``text`` at a line boundary so it fits ``max_chars``; say whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    cut = text.rfind("\n", 0, max_chars)
    return text[: cut if cut > 0 else max_chars], True


def check_title(value: str) -> str:
    value = clean_text(value, multiline=False)
    if not 1 <= len(value) <= MAX_TITLE_CHARS:
        raise ValueError(f"must be 1–{MAX_TITLE_CHARS} characters")
    return value


def check_notes(value: str) -> str:
    value = clean_text(value, multiline=True)
    if len(value) > MAX_NOTES_CHARS:
        raise ValueError(f"must be at most {MAX_NOTES_CHARS} characters")
    return value


Title = Annotated[str, Field(strict=True), AfterValidator(check_title)]
Notes = Annotated[str, Field(strict=True), AfterValidator(check_notes)]
Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python; either name is accepted on the way in."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_json(self, **options: Any) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, **options)


# --------------------------------------------------------------------------- video lane (in process)


@dataclass(frozen=True)
class PointerAt:
    """The mouse pointer's hotspot at a moment, in video pixels."""

    ms: int
    x: int
    y: int
    left: bool = False  # this is where the pointer moved away from (it had been resting there)


@dataclass
class KeyFrame:
    """One frame kept by the extractor: the screen after a meaningful change, and what led to it."""

    index: int
    timestamp: int  # ms from the start of the video
    change_score: float  # 1 − SSIM against the previously kept frame; 1 for the first
    changed_region: "Region | None"
    width: int
    height: int
    png: bytes = field(default=b"", repr=False)  # full-resolution lossless image
    started: int = 0  # ms when the change first showed (the user's action came just before)
    pointer: PointerAt | None = None  # where the pointer was when the change began
    pointer_still_ms: int = 0  # how long the pointer had been still by then (0: it was moving)
    pointer_path: list[PointerAt] = field(default_factory=list)  # where it went since the previous key frame
    caret: "Region | None" = None  # the last text caret seen blinking before the change, if any
    caret_ms: int = 0  # when that caret was last seen
    scroll_dy: int = 0  # vertical shift of the changed content, video px (negative: the content moved up)


@dataclass
class VideoInfo:
    """What the container and the decoder say about a video."""

    width: int
    height: int
    container_duration_ms: int  # 0 when the container does not say (browser-recorded webm)
    last_frame_ms: int  # timestamp of the last decoded frame
    frames_read: int  # decoded, or skipped as no sample needed them


# --------------------------------------------------------------------------- JSON shapes


class Region(Model):
    """A rectangle in video pixels."""

    model_config = ConfigDict(frozen=True)

    x: int
    y: int
    width: int
    height: int

    def place_in(self, width: int, height: int) -> str:
        """Where the region sits on a screen of that size, as a person says it: "the top left"."""
        cx = (self.x + self.width / 2) / max(width, 1)
        cy = (self.y + self.height / 2) / max(height, 1)
        vertical = "top" if cy < 1 / 3 else "middle" if cy < 2 / 3 else "bottom"
        horizontal = "left" if cx < 1 / 3 else "centre" if cx < 2 / 3 else "right"
        return f"the {vertical} {horizontal}"


class AriaNode(Model):
    """A UI element seen in a frame (by vision) with its state against the previous frame."""

    role: str
    name: str
    children: list[AriaNode] | None = None
    diff_status: Literal["added", "changed", "removed"] | None = None
    state: str | None = None  # e.g. "checked", "value=foo"; what makes a node "changed"

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class DiffSummary(Model):
    added: int = 0
    changed: int = 0
    removed: int = 0


class Word(Model):
    text: str
    x: int
    width: int


class TextBox(Model):
    """A line of text read off the screen and where it stands, in video pixels, with its words' spans."""

    text: str
    region: Region
    words: list[Word] = Field(default_factory=list)


class FrameAnalysis(Model):
    """What vision read from one key frame; ``elements`` and ``url`` become the frame's ``ariaTree`` and ``url``.

    ``screen_text`` (every line on screen after this frame, with its place) stays in the process:
    the step inference reads it to name what the pointer was on.
    """

    description: str
    visible_text: str = ""
    anomalies: list[str] = Field(default_factory=list)
    provider: str = ""
    ui_state: str = ""
    elements: list[AriaNode] = Field(default_factory=list, exclude=True)
    url: str | None = Field(default=None, exclude=True)
    screen_text: list[TextBox] = Field(default_factory=list, exclude=True)
    browser_rows: int | None = Field(default=None, exclude=True)  # px of the browser's own rows at the top, if shown


class FlowStep(Model):
    """One user action as vision described it."""

    timestamp: int
    action: str
    screen: str = ""


StepAction = Literal["click", "double_click", "hover", "type", "key", "scroll", "navigate", "drag", "select", "other"]


class StepTarget(Model):
    """The element acted on: role and accessible name (from the live page where it matched, else as read)."""

    role: str
    name: str
    selector: str | None = None

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class Step(Model):
    """One user action, in time order."""

    index: int
    timestamp: int  # ms from the start of the video when the action began
    end_timestamp: int  # when it ended (typing, scrolling); equals timestamp for an instant action
    action: StepAction
    target: StepTarget | None = None
    value: str | None = None  # typed text, key, scroll direction or URL navigated to
    url: str | None = None  # the page URL at that moment
    frame_id: str | None = None  # the key frame that shows the result
    description: str
    confidence: float
    source: str  # where the inference came from: pointer+screen, keyboard+screen, screen, …
    frame_index: int | None = Field(default=None, exclude=True)  # the key frame, before frames have ids


class PointerHint(Model):
    """Where the pointer was as a change began (video px) and how long it had rested there."""

    x: int
    y: int
    still_ms: int = Field(description="how long the pointer had been still when the change began; 0: it was moving")


class FrameHint(Model):
    """What is measured about a key frame besides its pixels, for a vision model to read the frame with.

    ``live_element`` comes from a page the service does not control: it is data, never instructions.
    """

    change_began_ms: int
    changed_region: Region | None = None
    pointer: PointerHint | None = None
    pointer_path: list[list[int]] = Field(default_factory=list, description="[ms, x, y] since the previous frame")
    text_caret: Region | None = None
    scrolled_px: int = Field(default=0, description="vertical shift of the content; negative: it moved up")
    live_element: StepTarget | None = Field(
        default=None, description="the element the live page (opened at the seed URL) has under the pointer")

    @classmethod
    def of(cls, frame: KeyFrame, hit: PageHit | None, path_points: int = 8) -> FrameHint:
        path = frame.pointer_path
        step = max(1, math.ceil(len(path) / path_points))
        kept = path[::step] + ([path[-1]] if path and (len(path) - 1) % step else [])
        return cls(
            change_began_ms=frame.started or frame.timestamp, changed_region=frame.changed_region,
            pointer=PointerHint(x=frame.pointer.x, y=frame.pointer.y, still_ms=frame.pointer_still_ms)
            if frame.pointer else None,
            pointer_path=[[p.ms, p.x, p.y] for p in kept], text_caret=frame.caret, scrolled_px=frame.scroll_dy,
            live_element=StepTarget(role=hit.role, name=hit.name) if hit else None,
        )


@dataclass
class VisionResult:
    """The vision lane's answer for all key frames."""

    analyses: list[FrameAnalysis]  # one per key frame, same order
    steps: list[Step] = field(default_factory=list)  # the user's actions as the model saw them
    observed_problem: str = ""
    urls_seen: list[str] = field(default_factory=list)
    provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    warnings: list[str] = field(default_factory=list)


class Counts(Model):
    buttons: int = 0
    inputs: int = 0
    links: int = 0
    headings: int = 0
    images: int = 0
    total: int = 0


class Snapshot(Model):
    """The Playwright lane's view of one URL."""

    url: str
    success: bool
    error: str | None = None
    counts: Counts = Field(default_factory=Counts)
    aria_tree: str = ""
    aria_tree_truncated: bool = False
    final_url: str | None = None
    http_status: int | None = None
    title: str = ""
    console_errors: list[str] = Field(default_factory=list)
    failed_requests: list[str] = Field(default_factory=list)
    load_time_ms: int = 0
    screenshot: bytes = Field(default=b"", exclude=True, repr=False)  # full page, PNG; stored as an object


class Inspection(Model):
    urls_inspected: list[str]
    duration_ms: int
    browser: str
    snapshots: list[Snapshot]


class Frame(Model):
    """A key frame as the API serves it."""

    id: str
    session_id: str
    timestamp: int
    url: str | None
    thumbnail_url: str
    diff_summary: DiffSummary
    aria_tree: list[AriaNode]
    created_at: str
    change_score: float
    changed_region: Region | None
    analysis: FrameAnalysis
    pointer: PointerHint | None = None  # where the pointer was as the change began (video px)


class LaneTimings(Model):
    video_ms: int = 0
    vision_ms: int = 0
    browser_ms: int = 0
    grounding_ms: int = 0  # the pages opened again to name the elements under the pointer
    prompt_ms: int = 0
    store_ms: int = 0
    video_span: list[int] = Field(default_factory=list)  # [start, end] ms after processing began
    browser_span: list[int] = Field(default_factory=list)  # the seed page's inspection, likewise


class Session(Model):
    """A session record: the contract's Session plus what regenerating a prompt needs."""

    id: str
    owner_id: str
    title: str
    seed_url: str = ""
    notes: str = ""
    status: SessionStatus = "processing"
    duration: int = 0  # whole seconds of video
    frame_count: int = 0
    urls: list[str] = Field(default_factory=list)
    url_count: int = 0
    agent_target: AgentTarget = DEFAULT_AGENT_TARGET
    processing_time: int = 0
    prompt: str = ""
    created_at: str = ""
    updated_at: str = ""
    file_size: int = 0
    mime_type: str = ""
    frames: list[Frame] = Field(default_factory=list)
    inspection: Inspection | None = None
    steps: list[Step] = Field(default_factory=list)
    flow: list[FlowStep] = Field(default_factory=list)
    observed_problem: str = ""
    warnings: list[str] = Field(default_factory=list)
    timings: LaneTimings = Field(default_factory=LaneTimings)
    vision_provider: str = ""
    vision_input_tokens: int = 0
    vision_output_tokens: int = 0
    vision_requests: int = 0
    vision_cost_usd: float = 0.0
    last_error: str | None = None
    objects: list[str] = Field(default_factory=list)  # storage keys of this session
    phase: ProcessingPhase | None = None  # set while the pipeline works on an accepted recording
    deadline_at: str | None = None  # an accepted recording still processing after this is marked error

    @property
    def processing_status(self) -> str:
        """The phase while the pipeline works on it, else the status."""
        return self.phase if self.status == "processing" and self.phase else self.status

    @property
    def progress(self) -> int:
        """How far processing is, in per cent (100 once complete)."""
        return 100 if self.status == "complete" else PHASE_PERCENT.get(self.phase or "", 0)

    RECORD_ONLY: typing.ClassVar[set[str]] = {"owner_id", "objects", "phase", "deadline_at"}  # kept, never served


# --------------------------------------------------------------------------- API answers and bodies


Thumbnail = Callable[[str, str], str]  # (session id, frame id) → the frame image's URL as served


def _served_frames(session: Session, thumbnail: Thumbnail) -> list[Frame]:
    return [f.model_copy(update={"thumbnail_url": thumbnail(session.id, f.id)}) for f in session.frames]


class SessionView(Session):
    """The Session as the API serves it: the record without its private fields, frames with served URLs."""

    inspection_json: Inspection | None = None  # the name the public web app reads

    @classmethod
    def of(cls, session: Session, thumbnail: Thumbnail) -> SessionView:
        return cls.model_validate({**dict(session), "frames": _served_frames(session, thumbnail),
                                   "inspection_json": session.inspection})

    def to_json(self, detail: bool = True, **options: Any) -> dict[str, Any]:
        """The whole Session; a list item (``detail=False``) leaves the inspection out."""
        hidden = Session.RECORD_ONLY | (set() if detail else {"inspection", "inspection_json"})
        return super().to_json(exclude=hidden, **options) | {"processingStatus": self.processing_status,
                                                               "progress": self.progress}


class ProcessingResponse(Model):
    """The answer to ``POST /recordings``."""

    session_id: str
    status: SessionStatus
    title: str
    seed_url: str
    agent_target: AgentTarget
    file_size: int
    mime_type: str
    prompt: str
    prompt_status: Literal["complete"] = "complete"  # as the public backend answers (clients read it)
    frames: list[Frame]
    frame_count: int
    urls_inspected: list[str]
    processing_ms: int
    inspection: Inspection | None
    warnings: list[str]
    steps: list[Step]
    timings: LaneTimings

    @classmethod
    def of(cls, session: Session, thumbnail: Thumbnail) -> ProcessingResponse:
        return cls(
            session_id=session.id, status=session.status, title=session.title, seed_url=session.seed_url,
            agent_target=session.agent_target, file_size=session.file_size, mime_type=session.mime_type,
            prompt=session.prompt, frames=_served_frames(session, thumbnail), frame_count=len(session.frames),
            urls_inspected=list(session.urls), processing_ms=session.processing_time, inspection=session.inspection,
            warnings=list(session.warnings), steps=list(session.steps), timings=session.timings,
        )


class SessionStatusView(Model):
    session_id: str
    session_status: SessionStatus
    processing_status: str
    progress: int = Field(description="per cent of the processing done")
    processing_time: int
    last_error: str | None

    @classmethod
    def of(cls, session: Session) -> SessionStatusView:
        return cls(session_id=session.id, session_status=session.status, processing_status=session.processing_status,
                   progress=session.progress, processing_time=session.processing_time, last_error=session.last_error)


class Accepted(Model):
    """The answer to a recording accepted for processing later (``Prefer: respond-async``)."""

    session_id: str
    status: SessionStatus
    processing_status: str
    progress: int
    status_url: str


class GeneratedPrompt(Model):
    session_id: str
    prompt_status: Literal["complete"] = "complete"
    prompt: str


class Stats(Model):
    total_sessions: int
    completed_sessions: int
    total_duration: int
    avg_processing_time: int


class Caller(Model):
    id: str
    name: str
    email: str = ""


class Body(Model):
    """A JSON request body: camelCase names only, every field checked, ``null`` refused."""

    model_config = ConfigDict(validate_by_name=False, validate_by_alias=True)

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value


_TITLE = f"a string of 1–{MAX_TITLE_CHARS} characters without control characters or line breaks"
_COUNT = "a non-negative integer"
_PROMPT = f"a string of at most {MAX_PROMPT_CHARS} characters"


class SessionPatch(Body):
    """``PATCH /sessions/{id}``: the fields a client may change, each with its rule; nothing else."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = Field(default=None, description=_TITLE)
    notes: Notes | None = Field(default=None, description=f"a string of at most {MAX_NOTES_CHARS} characters "
                                                           "without control characters")
    status: SessionStatus | None = Field(default=None, description=f"one of {', '.join(SESSION_STATUSES)}")
    prompt: Annotated[str, Field(strict=True, max_length=MAX_PROMPT_CHARS)] | None = Field(
        default=None, description=_PROMPT)
    agent_target: AgentTarget | None = Field(default=None, description=f"one of {', '.join(AGENT_TARGETS)}")
    duration: Count | None = Field(default=None, description=_COUNT)
    urls: Annotated[list[Annotated[str, Field(strict=True, max_length=MAX_URL_CHARS)]],
                    Field(max_length=1000)] | None = Field(default=None, description="an array of at most 1000 URLs")
    frame_count: Count | None = Field(default=None, description=_COUNT)
    url_count: Count | None = Field(default=None, description=_COUNT)
    processing_time: Count | None = Field(default=None, description=_COUNT)


class SessionCreate(Body):
    """``POST /sessions``: a session made by a client with its own pipeline; other fields are ignored."""

    title: Title = Field(description=_TITLE)
    agent_target: AgentTarget = Field(default=DEFAULT_AGENT_TARGET, description=f"one of {', '.join(AGENT_TARGETS)}")
    prompt: Annotated[str, Field(strict=True, max_length=MAX_PROMPT_CHARS)] = Field(default="", description=_PROMPT)
    frame_count: Count = Field(default=0, description=_COUNT)
    url_count: Count = Field(default=0, description=_COUNT)


# --------------------------------------------------------------------------- the live page at a point


@dataclass(frozen=True)
class PageHit:
    """The element the live page has where a key frame shows the pointer: role, accessible name, selector."""

    frame_index: int
    x: int  # video px
    y: int
    role: str
    name: str
    selector: str | None = None


@dataclass(frozen=True)
class PointerProbe:
    """A point of a key frame to look up on the live page (video px)."""

    frame_index: int
    x: int
    y: int


# --------------------------------------------------------------------------- one recording's way through


@dataclass
class RecordingRequest:
    """A validated upload: the video is on local disk, the fields obey the contract."""

    video_path: Path
    file_size: int
    mime_type: str
    title: str
    seed_url: str
    notes: str
    agent_target: AgentTarget
    client_duration_ms: int | None
    owner_id: str


@dataclass
class VideoEvidence:
    key_frames: list[KeyFrame]
    info: VideoInfo
    vision: VisionResult
    warnings: list[str]
    video_ms: int
    vision_ms: int


@dataclass
class RecordingEvidence:
    """Everything both lanes learned about one recording."""

    video: VideoEvidence
    inspection: Inspection
    started: float  # time.monotonic() when processing began
    steps: list[Step] = field(default_factory=list)  # the user's actions, key frames by index
    hits: list[PageHit] = field(default_factory=list)  # what the live page has under the pointer
    grounding_warnings: list[str] = field(default_factory=list)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)  # lane → (start, end) ms after ``started``

    @property
    def warnings(self) -> list[str]:
        pages = [f"page {s.url} could not be inspected: {s.error}" for s in self.inspection.snapshots if not s.success]
        return self.video.warnings + pages + self.grounding_warnings


