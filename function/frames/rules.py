"""Rules that explain a difference away: it is the pointer, a blinking caret, a codec speck — not the UI.

Each rule sees the motion between consecutive samples (``observe``: it returns what
it does not explain, for the next rule) and is asked about each difference against
the last kept frame (``explains``). The extractor runs them in order and keeps what
none explains; a new rule (a spinner, a video element) is one more class here,
in the spirit of PySceneDetect's pluggable detectors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from .regions import Box

POINTER_BOX = (36, 44)  # screen px: a region that fits here may be the pointer (arrow, hand, I-beam)
CARET_MAX = (8, 72)  # screen px: a vertical line this thin (with codec blur) and short is a text caret
SPECK_PX = 4  # screen px: a difference this small in both directions is a codec speck
CARET_STAYS_SAMPLES = 12  # samples (1.2 s): a thin line that has not blinked by then is no caret
CARET_MEMORY = 16  # thin lines remembered at once
TRAIL_MARGIN = 6  # screen px around each tracked pointer position
POINTER_REACH = 400  # screen px the pointer can travel between two samples (4000 px/s)
POINTER_COVER = 0.5  # of the pointer's last place: a region holding this much of it is the pointer leaving


class ChangeRule(Protocol):
    def observe(self, motion: list[Box]) -> list[Box]:
        """Feed one sample's motion (against the previous sample); return what this rule does not explain."""
        ...

    def explains(self, box: Box) -> bool:
        """Is this difference against the last kept frame explained by this rule (not a UI change)?"""
        ...

    def rebase(self) -> None:
        """A frame was kept: state tied to the previous kept frame starts again."""
        ...

    @property
    def revised(self) -> bool:
        """Did the latest sample change this rule's mind about a difference it explained before?
        (The extractor then judges the changes against the kept frame again.)"""
        ...


RuleFactory = Callable[[float], ChangeRule]  # built once the analysis scale (analysis px per screen px) is known


@dataclass(frozen=True)
class Sizes:
    """Sizes in analysis pixels for the thresholds given in screen pixels."""

    scale: float

    def native(self, box: Box) -> tuple[float, float]:
        return box.w / self.scale, box.h / self.scale

    def pointer_sized(self, box: Box, factor: float = 1.0) -> bool:
        w, h = self.native(box)
        return w <= POINTER_BOX[0] * factor and h <= POINTER_BOX[1] * factor

    def distance(self, a: Box, b: Box) -> float:
        """Screen px between the centres of two regions."""
        dx = (a.x + a.w / 2) - (b.x + b.w / 2)
        dy = (a.y + a.h / 2) - (b.y + b.h / 2)
        return math.hypot(dx, dy) / self.scale


def _covers(region: Box, place: Box) -> bool:
    """Does ``region`` hold at least POINTER_COVER of ``place``?"""
    w = min(region.x + region.w, place.x + place.w) - max(region.x, place.x)
    h = min(region.y + region.h, place.y + place.h) - max(region.y, place.y)
    return w > 0 and h > 0 and w * h >= POINTER_COVER * place.w * place.h


@dataclass
class PointerRule:
    """Where the mouse pointer has been since the last kept frame.

    A moving pointer leaves two pointer-sized differences between consecutive samples:
    where it was (a place already known as the pointer's, or where a small thing moved
    in the previous sample) and where it is now (the nearest new small region). A small
    region appearing away from the pointer is a UI change, such as a delete button shown
    on hover at the far end of a row.
    """

    sizes: Sizes
    trail: list[Box] = field(default_factory=list)  # pointer positions since the last kept frame
    last: list[Box] = field(default_factory=list)  # the pointer's regions in the latest sample that moved
    moving: list[Box] = field(default_factory=list)  # small regions that moved in the previous sample
    position: Box | None = None  # where the pointer is now, as best known
    left_from: Box | None = None  # where it moved away from in the latest sample, if that was seen
    moved: bool = False  # did it move in the latest sample?
    revised: bool = False  # it never takes back what it explained

    def _margin(self) -> int:
        return max(1, round(TRAIL_MARGIN * self.sizes.scale))

    def observe(self, motion: list[Box]) -> list[Box]:
        """Feed one sample's motion regions (carets and specks already taken out); return what is not the pointer."""
        # A slow move merges the old and new positions into one region up to twice the pointer's size.
        small = [b for b in motion if self.sizes.pointer_sized(b, 2.0)]
        # The pointer is one object: it departs from (at most) one place. Look where it was last
        # seen first, then anywhere on its trail, then where a small thing moved a sample ago.
        # A departure covers where the pointer was (its pixels went back to the UI's): a glyph typed
        # next to the last one only touches it, and is no pointer leaving.
        departures: list[Box] = []
        for known in (self.last, self.trail, self.moving):
            departures = [b for b in small if any(_covers(b, k) for k in known)]
            if departures:
                break
        self.moving = small
        if len(departures) > 2:  # many small changes at once (a re-render, a codec key frame)
            anchor = self.last[-1] if self.last else departures[0]
            departures = sorted(departures, key=lambda b: self.sizes.distance(b, anchor))[:2]
        arrivals = [b for b in small if b not in departures and self.sizes.pointer_sized(b)]
        pointer = list(departures)
        # One pointer-sized departure means the pointer went somewhere new: the nearest small
        # arrival. Two departures, or one merged region, already hold both ends of the move.
        if arrivals and len(departures) == 1 and self.sizes.pointer_sized(departures[0]):
            nearest = min(arrivals, key=lambda b: self.sizes.distance(b, departures[0]))
            if self.sizes.distance(nearest, departures[0]) <= POINTER_REACH:
                pointer.append(nearest)
        elif len(motion) == 2 == len(arrivals) and self.sizes.distance(*arrivals) <= POINTER_REACH:
            pointer = arrivals  # nothing else moved: a lone pair is the pointer, found (again)
        self.moved = bool(pointer)
        self.left_from = None
        if pointer:
            self.trail.extend(pointer)
            self.last = pointer
            newest = self._newest(pointer)
            # Two separate pointer-sized places: it left the other one (seen even when its arrival there
            # was hidden inside a change, as a click's is).
            others = [b for b in pointer if b is not newest and self.sizes.pointer_sized(b)]
            self.left_from = others[0] if len(pointer) == 2 and others else None
            self.position = newest
        return [b for b in motion if b not in pointer]

    def _newest(self, pointer: list[Box]) -> Box:
        """Of the pointer's regions in one sample, the one it moved to: away from where it was."""
        if len(pointer) == 1 or self.position is None:
            return pointer[-1]
        previous = self.position
        return max(pointer, key=lambda b: self.sizes.distance(b, previous))

    def explains(self, box: Box) -> bool:
        """Is this difference against the kept frame only the pointer's?"""
        if not self.sizes.pointer_sized(box, 2.0):
            return False  # bigger than the pointer, even one that moved a little: the UI changed
        margin = self._margin()
        return any(box.overlaps(t.grown(margin)) for t in self.trail + self.last)

    def rebase(self) -> None:
        """A frame was kept: the trail restarts at the pointer's current place."""
        self.trail = []  # a pointer resting where it was kept is in both frames: no difference is its doing


@dataclass
class _ThinLine:
    box: Box
    blinks: int = 0  # times it came or went again after it first appeared
    quiet: int = 0  # samples since it last came or went


@dataclass
class CaretRule:
    """A tall thin line that comes and goes is a text caret blinking.

    One that appears and then stays for ``CARET_STAYS_SAMPLES`` without blinking is a UI change
    after all (a divider, a progress mark, a focus border): from then on it is not explained.
    """

    sizes: Sizes
    lines: list[_ThinLine] = field(default_factory=list)
    revised: bool = False

    def thin(self, box: Box) -> bool:
        w, h = self.sizes.native(box)
        return w <= CARET_MAX[0] and 3 * w <= h <= CARET_MAX[1]

    def _line_at(self, box: Box) -> _ThinLine | None:
        grown = box.grown(2)
        return next((line for line in self.lines if line.box.overlaps(grown)), None)

    def _stayed(self, line: _ThinLine) -> bool:
        return line.blinks == 0 and line.quiet >= CARET_STAYS_SAMPLES

    def explains(self, box: Box) -> bool:
        if not self.thin(box):
            return False
        line = self._line_at(box)
        return line is None or not self._stayed(line)

    def observe(self, motion: list[Box]) -> list[Box]:
        self.revised = False
        for line in self.lines:
            line.quiet += 1
        for box in motion:
            if self.thin(box):
                line = self._line_at(box)
                if line is None:
                    self.lines = (self.lines + [_ThinLine(box)])[-CARET_MEMORY:]
                else:
                    line.blinks, line.quiet = line.blinks + 1, 0
        self.revised = any(line.blinks == 0 and line.quiet == CARET_STAYS_SAMPLES for line in self.lines)
        return [b for b in motion if not self.thin(b)]

    def rebase(self) -> None:
        """A kept frame holds the lines that stayed: they are part of the screen now."""
        self.lines = [line for line in self.lines if not self._stayed(line)]


@dataclass
class SpeckRule:
    """A difference a few pixels across is a codec speck, too small to be any UI element."""

    sizes: Sizes
    revised: bool = False

    def explains(self, box: Box) -> bool:
        w, h = self.sizes.native(box)
        return w <= SPECK_PX and h <= SPECK_PX

    def observe(self, motion: list[Box]) -> list[Box]:
        return [b for b in motion if not self.explains(b)]

    def rebase(self) -> None:
        pass


DEFAULT_RULES: Sequence[RuleFactory] = (
    lambda scale: CaretRule(Sizes(scale)),
    lambda scale: SpeckRule(Sizes(scale)),
    lambda scale: PointerRule(Sizes(scale)),
)
