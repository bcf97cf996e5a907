"""Reading ``POST /recordings``: a streaming multipart parser, byte sniffing and the field rules.

The body is read in chunks and the video goes straight to a temporary file, so
memory stays flat whatever the upload; the size limit is enforced while
streaming. Field rules are the contract's (API.md); each failure is an
``UploadError`` carrying the contract's status and code.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, TypeVar
from urllib.parse import urlsplit

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from .config import MAX_VIDEO_BYTES
from .models import MAX_URL_CHARS, AgentTarget, RecordingRequest, check_agent_target, check_notes, check_title

CHUNK = 256 * 1024
MAX_TEXT_FIELD_BYTES = 64 * 1024  # far above any text rule; stops a huge "title" from filling memory
MAX_PARTS = 32
MAX_PART_HEADERS_BYTES = 1024 * 1024 + CHUNK  # unparsed bytes the decoder may hold (a chunk in flight)
MAX_BODY_OVERHEAD = 1024 * 1024  # multipart framing and text fields on top of the video
TEXT_FIELDS = ("title", "seedUrl", "notes", "agentTarget", "durationMs")
SNIFF_BYTES = 4096
T = TypeVar("T")


class UploadError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


class BodyStalled(UploadError):
    """The client stopped sending its body, or sends it too slowly to hold a request thread for."""

    def __init__(self, message: str) -> None:
        super().__init__(408, "REQUEST_TIMEOUT", message)


class DiskFull(OSError):
    """The temporary directory cannot take the upload."""


@dataclass
class RawUpload:
    """What the multipart body held, before the field rules."""

    texts: dict[str, str] = field(default_factory=dict)
    video_path: Path | None = None
    video_size: int = 0
    head: bytes = b""  # the first bytes of the video, for sniffing

    def discard(self) -> None:
        if self.video_path is not None:
            self.video_path.unlink(missing_ok=True)
            self.video_path = None


@dataclass
class RecordingFields:
    title: str
    seed_url: str
    notes: str
    agent_target: AgentTarget
    client_duration_ms: int | None
    mime_type: str


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary, or 415 when the body is not multipart/form-data."""
    mimetype, options = parse_options_header(content_type or "")
    if mimetype != "multipart/form-data":
        raise UploadError(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be multipart/form-data")
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise UploadError(415, "UNSUPPORTED_MEDIA_TYPE", "multipart/form-data needs a boundary")
    return boundary.encode("latin-1", "replace")


def too_large() -> UploadError:
    return UploadError(413, "FILE_TOO_LARGE", f"the file exceeds the limit of {MAX_VIDEO_BYTES} bytes", "file")


def read_multipart(stream: BinaryIO, content_type: str | None, content_length: int | None,
                   tmp_dir: str | None = None, max_file_bytes: int = MAX_VIDEO_BYTES) -> RawUpload:
    """Stream the body: text fields into memory (capped), the ``file`` part into a temp file."""
    boundary = boundary_of(content_type)
    max_body = max_file_bytes + MAX_BODY_OVERHEAD
    if content_length is not None and content_length > max_body:
        raise too_large()
    # The decoder buffers only what it has not parsed yet: file data leaves at once, so the cap
    # bites on what should be small (a part's headers), never on the video.
    decoder = MultipartDecoder(boundary, max_form_memory_size=MAX_PART_HEADERS_BYTES, max_parts=MAX_PARTS)
    upload = RawUpload()
    seen: set[str] = set()
    current: str | None = None  # name of the part being read; "" for a part we skip
    text = bytearray()
    video: BinaryIO | None = None
    body_bytes = 0
    finished = False
    try:
        while not finished:
            event = decoder.next_event()
            if isinstance(event, NeedData):
                chunk = stream.read(CHUNK)
                body_bytes += len(chunk)
                if body_bytes > max_body:
                    raise too_large()
                decoder.receive_data(chunk or None)  # None marks the end: a truncated body then fails
                continue
            if isinstance(event, (Field, File)):
                name = event.name
                if name in seen and (name == "file" or name in TEXT_FIELDS):
                    raise UploadError(400, "INVALID_FIELD", f"{name} is given more than once", name)
                seen.add(name)
                if name == "file":
                    if not isinstance(event, File):
                        raise UploadError(400, "INVALID_FIELD", "file must be a file part", "file")
                    fd, path = tempfile.mkstemp(prefix="scope-upload-", suffix=".video", dir=tmp_dir)
                    upload.video_path = Path(path)
                    video = os.fdopen(fd, "wb")
                    current = "file"
                else:
                    current = name if name in TEXT_FIELDS else ""
                    text = bytearray()
            elif isinstance(event, Data):
                if current == "file":
                    upload.video_size += len(event.data)
                    if upload.video_size > max_file_bytes:
                        raise too_large()
                    if len(upload.head) < SNIFF_BYTES:
                        upload.head += event.data[: SNIFF_BYTES - len(upload.head)]
                    video.write(event.data)  # type: ignore[union-attr]
                elif current:
                    text += event.data
                    if len(text) > MAX_TEXT_FIELD_BYTES:
                        raise UploadError(400, "INVALID_FIELD", f"{current} is far too long", current)
                if not event.more_data:
                    if current == "file" and video is not None:
                        video.close()
                        video = None
                    elif current:
                        upload.texts[current] = _decode_text(current, bytes(text))
                    current = None
            elif isinstance(event, Epilogue):
                finished = True
    except UploadError:
        upload.discard()
        raise
    except RequestEntityTooLarge:  # werkzeug: more parts than MAX_PARTS, or part headers too large
        upload.discard()
        raise UploadError(400, "INVALID_FIELD",
                          f"the body has more than {MAX_PARTS} parts or a part's headers are too large") from None
    except ValueError as exc:  # werkzeug: malformed multipart
        upload.discard()
        raise UploadError(400, "INVALID_FIELD", f"the multipart body is malformed ({exc})") from None
    except ClientDisconnected:
        upload.discard()
        raise UploadError(400, "INVALID_FIELD", "the upload ended before the body was complete") from None
    except OSError as exc:
        upload.discard()
        raise DiskFull(exc.errno, "the temporary directory cannot take the upload") from None
    except BaseException:
        upload.discard()  # whatever happened, no temporary file outlives the request
        raise
    finally:
        if video is not None:
            video.close()
    return upload  # the loop ends at the closing boundary: a body that ends before it is malformed


def _decode_text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(400, "INVALID_FIELD", f"{name} must be UTF-8 text", name) from None


# --------------------------------------------------------------------------- sniffing


def _ebml_vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or pos + length > len(data):
        raise ValueError("bad EBML varint")
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    return value, pos + length


def sniff_video(head: bytes) -> str | None:
    """``video/webm``, ``video/x-matroska`` or ``video/mp4`` from the file's first bytes, else None.

    Matroska/WebM: the EBML header's DocType element (0x4282). MP4: an ISO-BMFF ``ftyp`` box.
    """
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "video/mp4"
    if head[:4] != b"\x1a\x45\xdf\xa3":
        return None
    try:
        size, pos = _ebml_vint(head, 4, keep_marker=False)
        end = min(len(head), pos + size)
        while pos < end:
            element_id, pos = _ebml_vint(head, pos, keep_marker=True)
            length, pos = _ebml_vint(head, pos, keep_marker=False)
            if element_id == 0x4282:
                doctype = head[pos : pos + length].rstrip(b"\x00")
                return {b"webm": "video/webm", b"matroska": "video/x-matroska"}.get(doctype)
            pos += length
    except (ValueError, IndexError):
        return None
    return None


# --------------------------------------------------------------------------- field rules

def _rule(name: str, check: Callable[[str], T], value: str) -> T:
    """Apply one of the models' text rules; its complaint becomes the contract's INVALID_FIELD."""
    try:
        return check(value)
    except ValueError as exc:
        raise UploadError(400, "INVALID_FIELD", f"{name} {exc}", name) from None


def check_seed_url(value: str) -> str:
    if len(value) > MAX_URL_CHARS:
        raise UploadError(400, "INVALID_FIELD", f"seedUrl must be at most {MAX_URL_CHARS} characters", "seedUrl")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise UploadError(400, "INVALID_FIELD", "seedUrl is not a valid URL", "seedUrl") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname or re.search(r"\s", value):
        raise UploadError(400, "INVALID_FIELD", "seedUrl must be an absolute http:// or https:// URL with a host",
                          "seedUrl")
    if parts.username is not None or parts.password is not None:
        # Credentials would end up in the prompt, the logs and the browser's history.
        raise UploadError(400, "INVALID_FIELD", "seedUrl must not contain credentials", "seedUrl")
    return value


def validate(upload: RawUpload) -> RecordingFields:
    """Apply the contract's rules in a fixed order: missing fields, broken rules, then the file's type."""
    texts = upload.texts
    if upload.video_path is None:
        raise UploadError(400, "MISSING_FIELD", "file is required", "file")
    if upload.video_size == 0:
        raise UploadError(400, "MISSING_FIELD", "file is empty", "file")
    for name in ("title", "seedUrl"):
        if not texts.get(name, "").strip():
            raise UploadError(400, "MISSING_FIELD", f"{name} is required", name)
    title = _rule("title", check_title, texts["title"])
    seed_url = check_seed_url(texts["seedUrl"].strip())
    notes = _rule("notes", check_notes, texts.get("notes", ""))
    agent_target = _rule("agentTarget", check_agent_target, texts.get("agentTarget", ""))
    duration_ms = None
    raw_duration = texts.get("durationMs", "").strip()
    if raw_duration:
        if not raw_duration.isascii() or not raw_duration.isdigit() or len(raw_duration) > 12:
            raise UploadError(400, "INVALID_FIELD", "durationMs must be a non-negative integer", "durationMs")
        duration_ms = int(raw_duration)
    mime_type = sniff_video(upload.head)
    if mime_type is None:
        raise UploadError(415, "UNSUPPORTED_MEDIA_TYPE", "file is not a webm, mp4 or mkv video", "file")
    return RecordingFields(title, seed_url, notes, agent_target, duration_ms, mime_type)


def local_request(video: Path, title: str, seed_url: str, notes: str, agent_target: str,
                  owner_id: str) -> RecordingRequest:
    """A recording on this machine's disk, under the upload's field rules (``UploadError`` when one is
    broken, ``OSError`` when the file cannot be read): what the CLI and the MCP server process."""
    with open(video, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    raw = RawUpload(texts={"title": title, "seedUrl": seed_url, "notes": notes, "agentTarget": agent_target},
                    video_path=video, video_size=os.path.getsize(video), head=head)
    fields = validate(raw)
    return RecordingRequest(video_path=video, file_size=raw.video_size, mime_type=fields.mime_type,
                            title=fields.title, seed_url=fields.seed_url, notes=fields.notes,
                            agent_target=fields.agent_target, client_duration_ms=None, owner_id=owner_id)
