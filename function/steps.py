"""Evidence → the user's actions: what they did, on which element, in time order. Pure: values in, steps out.

Each key frame is a UI change; what caused it is read from what the extractor saw
just before it and from the text on screen:

- a text caret blinking on the changed line, and the line growing, is *typing* (one
  step for a burst on one line; the value is the line's text at the end of it);
- the typed line emptying while content appears elsewhere is the *Enter* key;
- content that shifted as a whole is a *scroll*, up or down;
- the address bar's URL changing is a *navigation* (the click that caused it, when
  the pointer was there);
- a change where the pointer rested is a *click*; one that appeared as the pointer
  arrived is a *hover*; the element is named from the page when the live page
  confirmed it (``PageHit``), else from the text under the pointer;
- a change with no pointer or keyboard activity is a *key* press when it is small and
  nothing else explains it, else *other*.

Text read off the screen is a guess: it is quoted, never taken as a fact, and what
OCR merely lost is not said to have disappeared.
"""

from __future__ import annotations

import difflib
import math
import re
from urllib.parse import urlsplit

from .models import (FrameAnalysis, KeyFrame, PageHit, PointerAt, PointerProbe, Region, Step, StepTarget,
                     TextBox, Word)

TYPING_LINE_PX = 56  # a changed region this short is one line of text
CARET_MEMORY_MS = 8000  # a caret seen this recently still marks the focused field
ROW_SLACK_PX = 14  # two regions whose vertical centres are this close are on one line
POINTER_NEAR_PX = 96  # a change this close to the pointer is the pointer's doing
CLICK_STILL_MS = 100  # a pointer at rest this long before the change clicked; less: the change came on arrival
STILL_PX = 6  # pointer positions this close are one resting place
SMALL_CHANGE = 0.015  # of the screen: a change this small under an arriving pointer is a hover effect
ROW_REACH_PX = 480  # a small change this far along the pointer's line still belongs to it (a row's hover controls)
ON_TEXT_PX = 12  # the pointer this close to a phrase is on it
FLOW_MATCH_MS = 1500  # a model's step this close in time to an inferred one speaks of the same action
SURE = 0.5  # an inferred step this confident keeps its own words
SAME_TEXT = 0.8  # two reads this alike are one text
FOCUS_MS = 4000  # a click this shortly before typing began was the click into the field
APPROACH_MS = 400  # a pointer that moved this shortly before a change it is not seen near caused it
FIELD_ROLES = {"textbox", "searchbox", "combobox", "spinbutton"}  # what a click puts a caret in
GLYPH_STEP_PX = 60  # typed letters between two samples advance the line by at most this much
REVERT_MS = 400  # a hover effect disappears this soon after the pointer leaves
DEPART_MS = 1500  # the pointer's first departure this soon after a change is from where it acted
REST_BEFORE_MS = 1000  # a pointer that came to rest this shortly before a change elsewhere clicked it
SCROLL_MIN_PX = 20
LABEL_REACH_PX = 220  # how far along its line a text may be from the pointer to name what it is on
TAB_STRIP = 0.4  # of the browser's own rows: the tab strip above, the address bar's row below
ADDRESS_BAR = StepTarget(role="textbox", name="Address and search bar")  # the browser's own, as Chrome names it


def _centre_y(region: Region) -> float:
    return region.y + region.height / 2


def _same_line(a: Region, b: Region) -> bool:
    return abs(_centre_y(a) - _centre_y(b)) <= ROW_SLACK_PX + min(a.height, b.height) / 2


def _near(point: PointerAt, region: Region, reach: int) -> bool:
    return (region.x - reach <= point.x <= region.x + region.width + reach
            and region.y - reach <= point.y <= region.y + region.height + reach)


def _distance(point: PointerAt, box: Region) -> float:
    dx = max(box.x - point.x, 0, point.x - (box.x + box.width))
    dy = max(box.y - point.y, 0, point.y - (box.y + box.height))
    return math.hypot(dx, dy)


def _quote(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return "\u201c" + (flat if len(flat) <= limit else flat[: limit - 1] + "…") + "\u201d"


def _full_address(url: str | None) -> str | None:
    """A URL worth stating: http(s) with a full domain name, ``localhost`` or a whole IP address."""
    if not url:
        return None
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return None
    parts = host.split(".")
    ip = len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)
    named = len(parts) >= 2 and parts[-1].isalpha() and len(parts[-1]) >= 2 and all(parts)
    return url if host == "localhost" or ip or named or host.startswith("[") else None


def text_on_line(lines: list[TextBox], line: Region, words_within: bool = False) -> str:
    """The text read on one line of the screen within the horizontal span of ``line`` (with a margin).
    ``words_within``: only the words inside that span, where the reading has word boxes (a typed value
    on a line read across the whole screen, which holds a header's title too)."""
    lo, hi = line.x - 40, line.x + line.width + 40
    found = [t for t in lines if _same_line(t.region, line) and t.region.x < hi and lo < t.region.x + t.region.width]
    texts = []
    for t in sorted(found, key=lambda t: t.region.x):
        inside = [w.text for w in t.words if w.x < hi and lo < w.x + w.width] if t.words and words_within \
            else [t.text]
        if inside:
            texts.append(" ".join(inside))
    return " ".join(texts)


def _phrases(line: TextBox) -> list[tuple[str, int, int]]:
    """The line's words grouped into phrases: a gap wider than the text is tall separates two (links in a bar)."""
    if not line.words:
        return [(line.text, line.region.x, line.region.width)]
    gap = max(8, line.region.height)
    groups: list[list[Word]] = [[line.words[0]]]
    for word in line.words[1:]:
        last = groups[-1][-1]
        if word.x - (last.x + last.width) > gap:
            groups.append([word])
        else:
            groups[-1].append(word)
    return [(" ".join(w.text for w in g), g[0].x, g[-1].x + g[-1].width - g[0].x) for g in groups]


def text_at(lines: list[TextBox], point: PointerAt) -> tuple[str, float] | None:
    """The phrase the pointer is on, or the nearest phrase on its line within reach, and how far it is."""
    def slack(line: TextBox) -> int:  # a list row stands about a line's height above and below its text
        return max(ROW_SLACK_PX, line.region.height)

    row = [t for t in lines if t.region.y - slack(t) <= point.y <= t.region.y + t.region.height + slack(t)]
    best: tuple[float, float, str] | None = None
    for line in row:
        rise = max(line.region.y - point.y, 0, point.y - (line.region.y + line.region.height))
        for text, x, width in _phrases(line):
            if not readable(text):
                continue
            gap = max(x - point.x, 0, point.x - (x + width))
            if gap <= LABEL_REACH_PX and (best is None or (rise, gap) < best[:2]):
                best = (rise, gap, text)
    return (best[2], best[1]) if best else None


def _similar(a: str, b: str) -> bool:
    """The same text read twice (OCR reads a line a little differently from frame to frame)."""
    return a == b or difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio() >= SAME_TEXT


def appeared(before: list[TextBox], after: list[TextBox]) -> list[str]:
    """Text read now that was not read before (quoted as read: OCR may read a line a little differently)."""
    known = {t.text for t in before}
    return [t.text for t in after if t.text not in known]


class _Builder:
    """The steps so far, and what the next frame needs to know of them."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.typing: Step | None = None  # the typing step still open, and the line it is on
        self.typing_line: Region | None = None
        self.clicked: PointerAt | None = None  # where the last click was, while nothing else happened
        self.address: Step | None = None  # the user is in the browser's address bar: going into it, typing

    def add(self, frame_index: int, started: int, ended: int, action: str, description: str, confidence: float,
            source: str, target: StepTarget | None = None, value: str | None = None,
            url: str | None = None) -> Step:
        step = Step(index=len(self.steps) + 1, timestamp=started, end_timestamp=max(started, ended),
                    action=action, target=target, value=value, url=url, description=description,  # type: ignore[arg-type]
                    confidence=confidence, source=source, frame_index=frame_index)
        self.steps.append(step)
        return step

    def close_typing(self) -> None:
        self.typing, self.typing_line = None, None


def _target(hits: dict[int, PageHit], index: int, lines: list[TextBox],
            point: PointerAt | None) -> tuple[StepTarget | None, str, float, bool]:
    """The element acted on, its phrase for a sentence, how sure we are of it, and whether the page named it.

    The live page names the element when its name agrees with the text the recording shows there,
    or when the recording shows none; when they disagree the page is in another state than the
    recording (a menu open in the video, closed live) and the screen's text is kept, less sure.
    """
    found = text_at(lines, point) if point is not None else None
    hit = hits.get(index)
    if hit is not None and hit.name and (found is None or _agree(hit.name, found[0])):
        phrase = f"the {hit.role} {_quote(hit.name)}"
        sure = 0.85 if found is not None else 0.65
        return StepTarget(role=hit.role, name=hit.name, selector=hit.selector), phrase, sure, True
    if found:
        label, gap = found
        phrase = _quote(label) if gap <= ON_TEXT_PX else f"the control next to {_quote(label)}"
        sure = (0.6 if gap <= ON_TEXT_PX else 0.45) - (0.1 if hit is not None else 0.0)
        return StepTarget(role="text", name=label), phrase, sure, False
    return None, "the screen", 0.35, False


def _agree(name: str, seen: str) -> bool:
    """Do the page's name and the text read off the screen speak of the same thing (OCR slips allowed)?"""
    a, b = name.lower(), seen.lower()
    if a in b or b in a:
        return True
    return _shares_word(a, b) or difflib.SequenceMatcher(None, a, b).ratio() >= 0.7


def pointer_probe(frames: list[KeyFrame], index: int) -> PointerProbe | None:
    """A point worth looking up on the live page: where the pointer was when it caused frame
    ``index``'s change (None: no change, or no pointer near it); it needs the frame after
    (``frames[index + 1]``) where there is one."""
    frame = frames[index]
    if index == 0 or frame.changed_region is None:
        return None
    following = frames[index + 1] if index + 1 < len(frames) else None
    point = _pointer_for(frame, frame.changed_region, following)
    return PointerProbe(index, point.x, point.y) if point is not None else None


def _pointer_for(frame: KeyFrame, region: Region, following: KeyFrame | None = None) -> PointerAt | None:
    """Where the pointer was when it caused the change: where it left from after the change, at the
    change's onset, or its last stop near it before."""
    def near(p: PointerAt) -> bool:
        same_line = abs(p.y - _centre_y(region)) <= ROW_SLACK_PX + region.height / 2 + 8
        small = region.width * region.height <= SMALL_CHANGE * frame.width * frame.height
        return _near(p, region, POINTER_NEAR_PX) or (same_line and small and _distance(p, region) <= ROW_REACH_PX)

    # The place the pointer first leaves after the change began is where it acted: a click's arrival
    # is often hidden inside the change it causes, its departure is not.
    later = frame.pointer_path + (following.pointer_path if following is not None else [])
    departures = [p for p in later if p.left and frame.started < p.ms <= frame.started + DEPART_MS
                  and not _passing(later, p)]
    if departures and near(departures[0]):
        return departures[0]
    # Where it rested before the change, then where it was as the change began (a change can
    # itself look like the pointer moving), then its last place near the change.
    resting = [p for p in frame.pointer_path if p.ms < frame.started]
    if resting and near(resting[-1]):
        return resting[-1]
    if frame.pointer is not None and near(frame.pointer):
        return frame.pointer
    before = [p for p in frame.pointer_path if p.ms <= frame.started + 100 and near(p)]
    if before:
        return before[-1]
    # A click whose result shows elsewhere (a dialog, a panel): where the pointer came to rest just before.
    recent = [p for p in frame.pointer_path if frame.started - REST_BEFORE_MS <= p.ms < frame.started]
    for earlier, later in zip(reversed(recent[:-1]), reversed(recent)):
        if abs(earlier.x - later.x) <= STILL_PX and abs(earlier.y - later.y) <= STILL_PX:
            return later
    return None


def _passing(path: list[PointerAt], departure: PointerAt) -> bool:
    """Was the place the pointer left only a point on its way (it arrived there just before)? It arrived
    when it was first seen there: the samples it was seen in since, at the same place, are its rest."""
    arrived: int | None = None
    for p in reversed([p for p in path if not p.left and p.ms < departure.ms]):
        if abs(p.x - departure.x) > STILL_PX or abs(p.y - departure.y) > STILL_PX:
            break
        arrived = p.ms
    return arrived is not None and departure.ms - arrived < CLICK_STILL_MS


def _rested_ms(frame: KeyFrame, point: PointerAt) -> int:
    """How long the pointer had been at ``point`` when the change began (0: the change came as it arrived)."""
    if point.left:
        return 0  # known only from where it left: how long it stayed says nothing of a click
    arrived = point.ms
    for p in reversed([p for p in frame.pointer_path if p.ms <= point.ms]):
        if abs(p.x - point.x) > STILL_PX or abs(p.y - point.y) > STILL_PX:
            break
        arrived = p.ms
    return max(frame.pointer_still_ms if point == frame.pointer else 0, frame.started - arrived)


def _removed(before: list[TextBox], after: list[TextBox], point: PointerAt) -> str | None:
    """The row under the pointer, when the click took it away: it is no longer read, and what stood
    below it moved up by about its height (so OCR merely losing the words is not taken for a removal)."""
    row = next((t for t in before if t.region.y - ROW_SLACK_PX <= point.y <= t.region.y + t.region.height
                + ROW_SLACK_PX), None)
    if row is None or any(_similar(row.text, t.text) for t in after):
        return None
    below = [t for t in before if t.region.y > row.region.y + row.region.height]
    for old in below:
        for new in after:
            if new.text == old.text and 0.5 * row.region.height <= old.region.y - new.region.y:
                return row.text
    return None


def infer(frames: list[KeyFrame], analyses: list[FrameAnalysis], hits: list[PageHit] | None = None) -> list[Step]:
    """The user's steps from the key frames, what vision read on each, and what the live page confirmed."""
    by_frame = {hit.frame_index: hit for hit in hits or []}
    out = _Builder()
    previous_url = analyses[0].url if analyses else None
    for index in range(1, min(len(frames), len(analyses))):
        frame, analysis = frames[index], analyses[index]
        following = frames[index + 1] if index + 1 < len(frames) else None
        region = frame.changed_region
        before = analyses[index - 1].screen_text
        after = analysis.screen_text
        url = _full_address(analysis.url)
        new_url = url if url and url != _full_address(previous_url) else None
        previous_url = analysis.url or previous_url
        if region is None:
            continue
        new_text = appeared(before, after)
        caret_on_line = (frame.caret is not None and frame.started - frame.caret_ms <= CARET_MEMORY_MS
                         and _same_line(frame.caret, region))

        if _in_address_bar(region, analysis.browser_rows) and not new_url:
            out.close_typing()
            if out.address is None:
                out.address = out.add(index, frame.started, frame.timestamp, "click",
                                      "Went into the browser's address bar (a click or Ctrl+L).", 0.45, "screen",
                                      target=ADDRESS_BAR, url=url)
            elif out.address.action == "click":
                out.address = out.add(index, frame.started, frame.timestamp, "type",
                                      "Typed into the browser's address bar.", 0.5, "keyboard+screen",
                                      target=ADDRESS_BAR, url=url)
            else:
                out.address.end_timestamp, out.address.frame_index = frame.timestamp, index
            continue
        if out.address is not None:
            typed_address, out.address = out.address, None
            if new_url:  # Enter in the address bar: the browser went where was typed
                if typed_address.action == "type":
                    typed_address.value = new_url
                    typed_address.description = f"Typed {new_url} into the browser's address bar."
                out.add(index, frame.started, frame.timestamp, "navigate",
                        f"Pressed Enter in the address bar; the browser went to {new_url}.", 0.7, "keyboard+screen",
                        target=ADDRESS_BAR, value=new_url, url=new_url)
                continue

        if abs(frame.scroll_dy) >= SCROLL_MIN_PX:
            out.close_typing()
            direction = "down" if frame.scroll_dy < 0 else "up"
            out.add(index, frame.started, frame.timestamp, "scroll",
                    f"Scrolled {direction} (the content moved {abs(frame.scroll_dy)} px).", 0.75, "screen",
                    value=direction, url=url)
            continue

        continuing = out.typing_line is not None and _same_line(out.typing_line, region)
        into_field = out.clicked is not None and abs(out.clicked.y - _centre_y(region)) <= region.height \
            and region.x - POINTER_NEAR_PX <= out.clicked.x <= region.x + region.width + POINTER_NEAR_PX \
            and out.steps[-1].target is not None and out.steps[-1].target.role in FIELD_ROLES
        if region.height <= TYPING_LINE_PX and (caret_on_line or continuing or into_field
                                                or _looks_typed(frame, region, before, after)):
            line_so_far = _union(out.typing_line, region) if continuing and out.typing_line is not None else region
            typed = text_on_line(after, line_so_far, words_within=True).strip(" |") or None  # OCR reads the caret as "|"
            if out.typing is not None and continuing:
                out.typing_line = line_so_far
                out.typing.end_timestamp = frame.timestamp
                out.typing.value = typed or out.typing.value
                out.typing.frame_index = index
                out.typing.description = f"Typed {_quote(out.typing.value or '')} into the field."
            else:
                placeholder = text_on_line(before, region)
                target = StepTarget(role="textbox", name=placeholder) if placeholder else None
                out.typing = out.add(index, frame.started, frame.timestamp, "type",
                                     f"Typed {_quote(typed or '')} into the field.", 0.7, "keyboard+screen",
                                     target=target, value=typed, url=url)
                out.typing_line = region
            continue

        if out.typing is not None and out.typing_line is not None and _near_line(region, out.typing_line):
            line_after = text_on_line(after, out.typing_line)
            typed = out.typing.value or ""
            if not typed or not _shares_word(line_after, typed):
                result = [t.text for t in after if not _same_line(t.region, out.typing_line)
                          and not any(b.text == t.text and _same_line(b.region, t.region) for b in before)]
                _whole_value(out.typing, result[:1])
                shown = f"; {_quote(result[0])} appeared" if result else "; the field was cleared"
                out.add(index, frame.started, frame.timestamp, "key", f"Pressed Enter{shown}.", 0.7,
                        "keyboard+screen", target=out.typing.target, value="Enter", url=url)
                out.close_typing()
                continue
        if out.typing is not None and not _moved_since(frame, out.typing.end_timestamp):
            _whole_value(out.typing, new_text)
            out.add(index, frame.started, frame.timestamp, "key",
                    f"Pressed Enter (most likely: the change came right after typing, the pointer still)"
                    f"{_outcome(new_text, new_url)}.", 0.5, "keyboard+screen", target=out.typing.target,
                    value="Enter", url=url)
            out.close_typing()
            continue
        out.close_typing()
        if region.height > TYPING_LINE_PX:
            out.clicked = None

        point = _pointer_for(frame, region, following)
        if point is not None:
            target, phrase, confidence, from_page = _target(by_frame, index, before or after, point)
            small = region.width * region.height <= SMALL_CHANGE * frame.width * frame.height
            source = "pointer+page" if from_page else "pointer+screen"
            clicked = (_rested_ms(frame, point) >= CLICK_STILL_MS or new_url or not small or new_text
                       or (_near(point, region, 8) and not _reverted(region, point, following)))
            if clicked:
                gone = _removed(before, after, point)
                outcome = f"; the row {_quote(gone, 60)} was removed" if gone else _outcome(new_text, new_url)
                out.add(index, frame.started, frame.timestamp, "click", f"Clicked {phrase}{outcome}.", confidence,
                        source, target=target, url=new_url or url, value=new_url)
                out.clicked = point
            else:
                out.add(index, frame.started, frame.timestamp, "hover",
                        f"Moved the pointer over {phrase}; a small control appeared {_where_near(point, region)}.",
                        confidence - 0.1, source, target=target, url=url)
            continue

        if new_url:
            out.add(index, frame.started, frame.timestamp, "navigate", f"Went to {new_url}.", 0.7, "screen",
                    value=new_url, url=new_url)
            continue

        approach = [p for p in frame.pointer_path if frame.started - APPROACH_MS <= p.ms <= frame.started]
        if approach:  # the pointer was on its way when the change began: it clicked where it vanished into it
            out.add(index, frame.started, frame.timestamp, "click",
                    f"Clicked in {_where(frame)} (where exactly is not certain){_outcome(new_text, None)}.", 0.3,
                    "pointer+screen", url=url)
            continue

        if region.width * region.height <= 0.25 * frame.width * frame.height:
            out.add(index, frame.started, frame.timestamp, "key",
                    f"Pressed a key; {_where(frame)} changed{_outcome(new_text, None)}.", 0.35, "screen", url=url)
        else:
            out.add(index, frame.started, frame.timestamp, "other",
                    f"The screen changed ({_where(frame)}){_outcome(new_text, None)}; no pointer or typing was seen.",
                    0.3, "screen", url=url)
    return _focus_clicks(out.steps)


def merge_steps(found: list[Step], proposed: list[Step]) -> list[Step]:
    """Join the steps a vision model proposed with the steps inferred here, in time order, numbered anew.

    A proposed step and an inferred one this close in time speak of the same action (the closest pairs
    first, each used once). Where the live page confirmed the inferred step's element, that step keeps
    its element and words; where the inference was unsure, the model's action, element, value and
    sentence replace it; where it was sure, it keeps its own and takes only what it lacked. A proposed
    step nothing here matched becomes a step of its own.
    """
    merged = [step.model_copy() for step in found]

    def gap(step: Step, said: Step) -> int:
        return min(abs(said.timestamp - step.timestamp), abs(said.timestamp - step.end_timestamp))

    pairs = sorted((gap(step, said), n, m) for n, step in enumerate(merged) for m, said in enumerate(proposed))
    taken_steps: set[int] = set()
    taken_said: set[int] = set()
    for distance, n, m in pairs:
        if distance > FLOW_MATCH_MS or n in taken_steps or m in taken_said:
            continue
        taken_steps.add(n)
        taken_said.add(m)
        step, said = merged[n], proposed[m]
        confirmed = "page" in step.source.split("+")
        if step.confidence < SURE and not confirmed:
            step.action, step.description = said.action, said.description
            step.target = said.target or step.target
            step.value = said.value or step.value
            step.confidence = max(step.confidence, min(said.confidence, 0.8))
        else:
            step.target = step.target or said.target
            step.value = step.value or said.value
        step.frame_index = step.frame_index if step.frame_index is not None else said.frame_index
        step.source = f"{step.source}+{said.source}"
    for m, said in enumerate(proposed):
        if m not in taken_said:
            merged.append(said.model_copy(update={"confidence": min(said.confidence, 0.7)}))
    merged.sort(key=lambda step: step.timestamp)
    for number, step in enumerate(merged, 1):
        step.index = number
    return merged


def _focus_clicks(found: list[Step]) -> list[Step]:
    """A click just before typing, on the line typed into (or nowhere certain), put the caret in that field."""
    for click, typed in zip(found, found[1:]):
        if click.action == "click" and typed.action == "type" and typed.timestamp - click.end_timestamp <= FOCUS_MS \
                and (click.target is None or click.target.name == (typed.target.name if typed.target else None)):
            field = f" {_quote(typed.target.name)}" if typed.target else ""
            click.target = typed.target
            click.description = f"Clicked into the field{field}."
            click.confidence = max(click.confidence, 0.5)
    return found


def _whole_value(typing: Step, shown: list[str]) -> None:
    """After Enter the app shows the whole text typed (a value typed into an editor that already held
    words was read only in part): the first new text sharing a word with the value read replaces it."""
    typed = typing.value or ""
    if shown and _shares_word(shown[0], typed):
        typing.value = shown[0]
        typing.description = f"Typed {_quote(shown[0])} into the field."


def _in_address_bar(region: Region, browser_rows: int | None) -> bool:
    """Does the change begin in the row of the browser's address bar (below its tab strip)? Typing there
    may drop a list of suggestions over the page, so the change may reach below the browser's rows."""
    return browser_rows is not None and TAB_STRIP * browser_rows <= region.y < browser_rows


def _union(a: Region, b: Region) -> Region:
    x0, y0 = min(a.x, b.x), min(a.y, b.y)
    x1, y1 = max(a.x + a.width, b.x + b.width), max(a.y + a.height, b.y + b.height)
    return Region(x=x0, y=y0, width=x1 - x0, height=y1 - y0)


def readable(text: str) -> bool:
    """Text that reads as words or numbers, not an icon OCR turned into letters ("vU", "|")."""
    return any(len(w) >= 3 and sum(c.isalpha() for c in w) >= 0.7 * len(w) or w.isdigit() for w in text.split())


def _reverted(region: Region, point: PointerAt, following: KeyFrame | None) -> bool:
    """Did the change under the pointer go away as soon as the pointer left (a hover effect, not a state)?"""
    if following is None or following.changed_region is None:
        return False
    left = [p for p in following.pointer_path if p.ms >= point.ms] or [point]
    undone = following.changed_region
    overlaps = (undone.x < region.x + region.width and region.x < undone.x + undone.width
                and undone.y < region.y + region.height and region.y < undone.y + undone.height)
    return overlaps and abs(following.started - left[0].ms) <= REVERT_MS


def _moved_since(frame: KeyFrame, ms: int) -> bool:
    """Did the pointer travel (more than a twitch) between ``ms`` and this change?"""
    moves = [p for p in frame.pointer_path if ms <= p.ms <= frame.started]
    return len(moves) >= 2 and max(abs(a.x - b.x) + abs(a.y - b.y) for a, b in zip(moves, moves[1:])) > 40


def _looks_typed(frame: KeyFrame, region: Region, before: list[TextBox], after: list[TextBox]) -> bool:
    """A one-line change that is text being typed: the line's text grew, or the "pointer" the extractor
    followed during the change was the new letters marching right along that line."""
    line = Region(x=0, y=region.y, width=frame.width, height=region.height)
    was, now = text_on_line(before, line).lower(), text_on_line(after, line).lower()
    if was and now and now != was and len(now) > len(was) and now.startswith(was[: min(len(was), 4)]):
        return True
    trail = [p for p in frame.pointer_path if p.ms >= frame.started - 200]
    on_line = [p for p in trail if abs(p.y - _centre_y(region)) <= region.height]
    # Letters appear a few pixels to the right of the last ones: the last two "pointer" steps show it.
    return (len(trail) >= 2 and len(on_line) >= 0.6 * len(trail) and len(on_line) >= 2
            and 0 < on_line[-1].x - on_line[-2].x <= GLYPH_STEP_PX)


def _near_line(region: Region, line: Region) -> bool:
    """Does the change take in the typed line (and go beyond it)?"""
    return region.y <= line.y + line.height and line.y <= region.y + region.height


def _shares_word(a: str, b: str) -> bool:
    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}
    return bool(words(a) & words(b))


def _outcome(new_text: list[str], new_url: str | None) -> str:
    if new_url:
        return f"; the address changed to {new_url}"
    if new_text:
        return f"; {_quote(new_text[0], 60)} appeared" + (f" and {len(new_text) - 1} more line(s)"
                                                          if len(new_text) > 1 else "")
    return ""


def _where_near(point: PointerAt, region: Region) -> str:
    if _near(point, region, 8):
        return "under it"
    side = "to its right" if region.x > point.x else "to its left"
    return f"on the same line, {side}"


def _where(frame: KeyFrame) -> str:
    region = frame.changed_region
    return "the whole screen" if region is None else f"{region.place_in(frame.width, frame.height)} of the screen"
