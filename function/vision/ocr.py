"""Reading text off screen frames with Tesseract, and URLs off a browser's address bar.

Used by the local provider (no API key). Tesseract runs in the process (tesserocr), one engine
per OCR thread, each loaded once and kept: starting the command-line program for every crop cost
about 85 ms of CPU before any reading, more than most crops take to read. An engine reads on one
core (the wheel's Tesseract has no OpenMP); the provider spreads crops over the cores itself.
"""

from __future__ import annotations

import glob
import os
import re
import threading
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import tesserocr

MIN_CONFIDENCE = 55  # Tesseract word confidence (0–100) below which a word is a guess
TOOLBAR_SEARCH = 0.2  # a browser's tab strip and toolbar lie within the top fifth of a window capture
TOOLBAR_MIN_PX = 56  # at least a toolbar row (plus tabs, usually) tall
EDGE_LEVEL = 12  # gray levels between two rows that make an edge
EDGE_SPAN = 0.9  # of the width: the line under a browser's toolbar runs across the whole window
_URLISH = re.compile(
    r"^(?:https?://)?(?:localhost|(?:\d{1,3}\.){3}\d{1,3}|[a-z0-9-]+(?:\.[a-z0-9-]+)+)(?::\d{2,5})?(?:[/#?]\S*)?$",
    re.I,
)


@dataclass(frozen=True)
class TextLine:
    """A line of text read off the screen, with its box in frame pixels."""

    text: str
    x: int
    y: int
    width: int
    height: int
    confidence: float
    words: tuple[tuple[str, int, int], ...] = ()  # each word and its horizontal span (x, width)


def read_lines(image: np.ndarray, offset: tuple[int, int] = (0, 0)) -> list[TextLine]:
    """The confident lines of text in ``image`` (grayscale or RGB), boxes shifted by ``offset``."""
    if image.size == 0 or min(image.shape[:2]) < 8:
        return []
    scale = 2 if image.shape[0] < 60 else 1  # Tesseract reads small UI text better enlarged
    if scale > 1:
        image = np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
    mode = tesserocr.PSM.SPARSE_TEXT if image.shape[0] < 40 * scale else tesserocr.PSM.AUTO
    lines: dict[tuple[int, int, int], list[_Word]] = {}
    for word in _words(image, mode):
        if word.text.strip() and word.conf >= MIN_CONFIDENCE:
            lines.setdefault(word.line, []).append(word)
    out = []
    for words in lines.values():
        text = " ".join(w.text for w in words).strip()
        if not re.search(r"[A-Za-z0-9]{2}", text):
            continue
        x0 = min(w.left for w in words) // scale
        y0 = min(w.top for w in words) // scale
        x1 = max(w.left + w.width for w in words) // scale
        y1 = max(w.top + w.height for w in words) // scale
        confidence = sum(w.conf for w in words) / len(words)
        spans = tuple((w.text, w.left // scale + offset[0], w.width // scale) for w in words)
        out.append(TextLine(text, x0 + offset[0], y0 + offset[1], x1 - x0, y1 - y0, round(confidence, 1), spans))
    return sorted(out, key=lambda line: (line.y, line.x))


class OcrUnavailable(RuntimeError):
    """Tesseract's English model is not installed."""


# Where Tesseract's models are installed: Debian's tesseract-ocr-eng, other Linux packages, Homebrew.
_TESSDATA_PLACES = ("/usr/share/tesseract-ocr/*/tessdata", "/usr/share/tessdata", "/usr/local/share/tessdata",
                    "/opt/homebrew/share/tessdata")


def tessdata_dir() -> str:
    """The folder holding ``eng.traineddata``: ``$TESSDATA_PREFIX``, or where packages install it."""
    candidates = [os.environ["TESSDATA_PREFIX"]] if os.environ.get("TESSDATA_PREFIX") else []
    for place in _TESSDATA_PLACES:
        candidates += sorted(glob.glob(place), reverse=True)  # the newest Tesseract's first
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "eng.traineddata")):
            return folder
    raise OcrUnavailable("Tesseract's English model (eng.traineddata) is not installed: install the package "
                         "tesseract-ocr-eng, or set TESSDATA_PREFIX to the folder that holds it")


_engines = threading.local()


def _engine() -> tesserocr.PyTessBaseAPI:
    """This thread's Tesseract engine (an engine serves one thread at a time), made on first use."""
    engine = getattr(_engines, "engine", None)
    if engine is None:
        engine = _engines.engine = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang="eng")
    return engine


class _Word(NamedTuple):
    """A word as Tesseract's TSV gives it: the line it is on (block, paragraph, line), its box, how sure."""

    line: tuple[int, int, int]
    left: int
    top: int
    width: int
    height: int
    conf: float
    text: str


def _words(image: np.ndarray, mode: int) -> list[_Word]:
    """Tesseract's words in ``image`` (gray or RGB, uint8), in reading order."""
    engine = _engine()
    engine.SetPageSegMode(mode)
    image = np.ascontiguousarray(image, dtype=np.uint8)
    height, width = image.shape[:2]
    depth = 1 if image.ndim == 2 else image.shape[2]
    engine.SetImageBytes(image.tobytes(), width, height, depth, depth * width)
    try:
        tsv = engine.GetTSVText(0) or ""
    finally:
        engine.Clear()
    words = []
    for row in tsv.splitlines():
        # level, page, block, paragraph, line, word, left, top, width, height, confidence, text
        cells = row.split("\t")
        if len(cells) == 12:
            block, paragraph, line, left, top, box_width, box_height = (int(c) for c in cells[2:5] + cells[6:10])
            words.append(_Word((block, paragraph, line), left, top, box_width, box_height, float(cells[10]), cells[11]))
    return words


def _repair(token: str) -> str:
    """Undo the usual OCR slips in a URL: '!' or '|' for 'l' at the end of a word, stray punctuation."""
    token = token.strip().strip(",;\"'()[]<>")
    token = re.sub(r"[!|](?=$|[/#?.])", "l", token)
    token = re.sub(r"\.htm(?=$|[#?])", ".html", token) if token.lower().endswith(".htm") else token
    return token


def normalise_url(token: str, default_scheme: str = "http") -> str | None:
    """A full URL from what a browser's address bar shows (no scheme, no bare trailing '/'), or None."""
    token = _repair(token)
    if not _URLISH.match(token):
        return None
    if not re.match(r"^https?://", token, re.I):
        token = f"{default_scheme}://{token}"
    try:
        parts = urlsplit(token)
        parts.port  # noqa: B018 - raises on a mangled port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if re.fullmatch(r"[\dOo.]+", host):  # an IP address read with letter O for zero
        host = host.replace("o", "0")
        octets = host.split(".")
        if len(octets) != 4 or not all(o.isdigit() and int(o) < 256 for o in octets):
            return None  # part of an address (a crop cut through it), never an address to state
    elif host != "localhost" and not re.fullmatch(r".*\.[a-z][a-z-]*[a-z]", host):
        return None  # a host name ends in a top-level domain of letters
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, parts.fragment))


def toolbar_height(gray: np.ndarray) -> int | None:
    """How tall the browser's tab strip and toolbar are at the top of the frame, or None when it shows none.

    A window capture's page starts under a line that runs across the whole window; the first such
    line at least a toolbar's height down is where the browser's own rows end. A tab or kiosk
    capture usually has none this high (an app's own top bar may: its text holds no URL then).
    """
    height = gray.shape[0]
    top = gray[: int(height * TOOLBAR_SEARCH)].astype(np.int16)
    if top.shape[0] < TOOLBAR_MIN_PX + 2:
        return None
    edges = (np.abs(np.diff(top, axis=0)) > EDGE_LEVEL).mean(axis=1)
    rows = [int(row) + 1 for row in np.flatnonzero(edges >= EDGE_SPAN) if row + 1 >= TOOLBAR_MIN_PX]
    if not rows:
        return None
    end = rows[0]
    while end + 1 in rows:  # a drawn line has an edge above and below it: the page starts after both
        end += 1
    return end


def address_bar_url(lines: list[TextLine], toolbar: int, default_scheme: str = "http") -> str | None:
    """The URL shown in a browser's address bar: a URL-like word on a line inside the toolbar rows."""
    for line in lines:
        if line.y + line.height > toolbar:
            continue
        for token in line.text.split():
            url = normalise_url(token, default_scheme)
            if url and ("." in token or ":" in token):
                return url
    return None
