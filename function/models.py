"""Domain objects shared by the lanes, the pipeline and the stores.

Plain dataclasses; ``to_json``/``from_json`` turn them into the contract's
camelCase JSON and back, so the stores keep exactly what the API serves.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

AGENT_TARGETS = ("CLAUDE_CODE", "CODEX", "CURSOR", "RAW")
SESSION_STATUSES = ("processing", "complete", "error")
_ID_ALPHABET = string.ascii_uppercase + string.digits


def new_id(prefix: str) -> str:
    """``sess_``/``frm_`` + 8 characters of [A-Z0-9], from a CSPRNG."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- video lane


@dataclass(frozen=True)
class Region:
    """A rectangle in video pixels."""

    x: int
    y: int
    width: int
    height: int


@dataclass
class KeyFrame:
    """One frame kept by the extractor: the screen after a meaningful change."""

    index: int
    timestamp: int  # ms from the start of the video
    change_score: float  # 1 − SSIM against the previously kept frame; 1 for the first
    changed_region: Region | None
    width: int
    height: int
    png: bytes = field(default=b"", repr=False)  # full-resolution lossless image


@dataclass
class VideoInfo:
    """What the container and the decoder say about a video."""

    width: int
    height: int
    container_duration_ms: int  # 0 when the container does not say (browser-recorded webm)
    last_frame_ms: int  # timestamp of the last decoded frame
    frames_decoded: int


@dataclass
class AriaNode:
    """A UI element seen in a frame (by vision) with its state against the previous frame."""

    role: str
    name: str
    children: list["AriaNode"] | None = None
    diff_status: str | None = None  # added | changed | removed
    state: str | None = None  # e.g. "checked", "value=foo"; what makes a node "changed"

    OMIT_NONE: typing.ClassVar[bool] = True


@dataclass
class DiffSummary:
    added: int = 0
    changed: int = 0
    removed: int = 0


@dataclass
class FrameAnalysis:
    """What the vision step read from one key frame."""

    description: str
    visible_text: str
    anomalies: list[str]
    provider: str
    ui_state: str = ""
    elements: list[AriaNode] = field(default_factory=list)
    url: str | None = None


@dataclass
class FlowStep:
    """One user action reconstructed from the recording."""

    timestamp: int
    action: str
    screen: str = ""


@dataclass
class VisionResult:
    analyses: list[FrameAnalysis]  # one per key frame, same order
    flow: list[FlowStep] = field(default_factory=list)
    observed_problem: str = ""
    urls_seen: list[str] = field(default_factory=list)
    provider: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- browser lane


@dataclass
class Counts:
    buttons: int = 0
    inputs: int = 0
    links: int = 0
    headings: int = 0
    images: int = 0
    total: int = 0


@dataclass
class Snapshot:
    """The Playwright lane's view of one URL."""

    url: str
    success: bool
    error: str | None = None
    counts: Counts = field(default_factory=Counts)
    aria_tree: str = ""
    aria_tree_truncated: bool = False
    final_url: str | None = None
    http_status: int | None = None
    title: str = ""
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    load_time_ms: int = 0
    screenshot: bytes = field(default=b"", repr=False)  # full page, PNG; stored with the session


@dataclass
class Inspection:
    urls_inspected: list[str]
    duration_ms: int
    browser: str
    snapshots: list[Snapshot]


# --------------------------------------------------------------------------- API objects


@dataclass
class Frame:
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
    analysis: dict[str, Any]


@dataclass
class LaneTimings:
    video_ms: int = 0
    vision_ms: int = 0
    browser_ms: int = 0
    prompt_ms: int = 0
    store_ms: int = 0


@dataclass
class Session:
    """A session record: the contract's Session plus what regenerating a prompt needs."""

    id: str
    owner_id: str
    title: str
    seed_url: str = ""
    notes: str = ""
    status: str = "processing"
    duration: int = 0  # whole seconds of video
    frame_count: int = 0
    urls: list[str] = field(default_factory=list)
    url_count: int = 0
    agent_target: str = "CLAUDE_CODE"
    processing_time: int = 0
    prompt: str = ""
    created_at: str = ""
    updated_at: str = ""
    file_size: int = 0
    mime_type: str = ""
    frames: list[Frame] = field(default_factory=list)
    inspection: Inspection | None = None
    flow: list[FlowStep] = field(default_factory=list)
    observed_problem: str = ""
    warnings: list[str] = field(default_factory=list)
    timings: LaneTimings = field(default_factory=LaneTimings)
    vision_provider: str = ""
    vision_input_tokens: int = 0
    vision_output_tokens: int = 0
    vision_requests: int = 0
    vision_cost_usd: float = 0.0
    last_error: str | None = None
    objects: list[str] = field(default_factory=list)  # storage keys of this session


# --------------------------------------------------------------------------- JSON


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def to_json(value: Any) -> Any:
    """A dataclass tree → JSON-ready dicts with camelCase keys."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        omit_none = getattr(value, "OMIT_NONE", False)
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if isinstance(item, bytes) or (omit_none and item is None):
                continue
            out[_camel(f.name)] = to_json(item)
        return out
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(cls: Any, data: Any) -> Any:
    """The inverse of ``to_json`` for a declared type (dataclasses, lists, optionals)."""
    if data is None:
        return None
    origin = typing.get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(cls) if a is not type(None)]
        return from_json(inner[0], data)
    if origin is list:
        (item_type,) = typing.get_args(cls)
        return [from_json(item_type, v) for v in data]
    if origin is dict or cls is Any:
        return data
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for f in dataclasses.fields(cls):
            key = _camel(f.name)
            if key in data and f.init:
                kwargs[f.name] = from_json(hints[f.name], data[key])
        return cls(**kwargs)
    return data
