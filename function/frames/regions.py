"""Locate and judge: where two grayscale frames differ in structure, not just in codec noise.

1. *Locate*: pixels that differ by more than codec noise (``DIFF_LEVEL``) are grouped
   into regions on a coarse grid.
2. *Judge*: each region is compared with SSIM against the same region of the reference,
   as it is and slightly blurred; a region whose structure is unchanged in either
   (``REGION_SSIM``) is noise — a quality jump at a codec key frame, a colour drift, ringing.

SSIM here is OpenCV's Gaussian-window SSIM (Wang et al., σ = 1.5): the same score as
scikit-image's to ±0.003 at a third of the time, which the decode-bound lane needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DIFF_LEVEL = 20  # gray levels (of 255): below this a difference is codec noise or dithering
GROUP_PX = 4  # analysis px: differences this close belong to one region (the letters of a word)
REGION_SSIM = 0.92  # a region this similar in structure to the reference is noise, not a change
STRONG_DIFF = 64  # gray levels: a pixel that swings this far changed (ink became paper), whatever the blur says
STRONG_PIXELS = 4  # analysis px that must swing that far for a small change to count

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


@dataclass(frozen=True)
class Box:
    """A region in analysis pixels."""

    x: int
    y: int
    w: int
    h: int

    def grown(self, by: int) -> "Box":
        return Box(self.x - by, self.y - by, self.w + 2 * by, self.h + 2 * by)

    def overlaps(self, other: "Box") -> bool:
        return (self.x < other.x + other.w and other.x < self.x + self.w
                and self.y < other.y + other.h and other.y < self.y + self.h)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two grayscale images (Gaussian window σ=1.5, as Wang et al.)."""
    # The arithmetic of ((2 μa μb + C1)(2 cov + C2)) / ((μa² + μb² + C1)(σa² + σb² + C2)), written into
    # eight arrays instead of two dozen: a whole frame's arrays are megabytes, and each new one is
    # mapped anew page by page (three times the arithmetic's own time). Same operations, same result.
    a = a.astype(np.float32)
    b = b.astype(np.float32)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    scratch = np.multiply(a, a)
    var_a = blur(scratch)
    var_b = blur(np.multiply(b, b, out=scratch))
    cov = blur(np.multiply(a, b, out=scratch))
    mu_aa, mu_bb, mu_ab = np.multiply(mu_a, mu_a, out=a), np.multiply(mu_b, mu_b, out=b), \
        np.multiply(mu_a, mu_b, out=scratch)
    var_a -= mu_aa
    var_b -= mu_bb
    cov -= mu_ab
    numerator = mu_ab
    numerator *= 2
    numerator += _C1
    cov *= 2
    cov += _C2
    numerator *= cov
    denominator = mu_aa
    denominator += mu_bb
    denominator += _C1
    var_a += var_b
    var_a += _C2
    denominator *= var_a
    numerator /= denominator
    return numerator


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(ssim_map(a, b).mean())


def changed_boxes(reference: np.ndarray, current: np.ndarray) -> list[Box]:
    """Regions where ``current`` differs from ``reference`` in structure, not just in noise."""
    diff = cv2.absdiff(reference, current)
    _, mask = cv2.threshold(diff, DIFF_LEVEL, 1, cv2.THRESH_BINARY)
    if cv2.countNonZero(mask) == 0:
        return []
    # A changed pixel with no changed neighbour is sensor or codec noise: a stroke, a line, a
    # glyph always changes pixels in touch with each other.
    neighbours = cv2.boxFilter(mask, -1, (3, 3), normalize=False)
    mask = cv2.bitwise_and(mask, (neighbours >= 2).view(np.uint8))
    if cv2.countNonZero(mask) == 0:
        return []
    # Group on a 1/GROUP_PX grid (a cell is on if any pixel in it changed): neighbouring cells
    # join into one region, and labelling the small grid is cheap.
    cells = cv2.dilate(mask, np.ones((GROUP_PX, GROUP_PX), np.uint8))[::GROUP_PX, ::GROUP_PX]
    count, _, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(cells), connectivity=8)
    height, width = current.shape
    boxes = []
    for cx, cy, cw, ch, _ in stats[1:count]:
        x0, y0 = max(0, cx * GROUP_PX - GROUP_PX), max(0, cy * GROUP_PX - GROUP_PX)
        x1, y1 = min(width, (cx + cw) * GROUP_PX + GROUP_PX), min(height, (cy + ch) * GROUP_PX + GROUP_PX)
        bx, by, bw, bh = cv2.boundingRect(mask[y0:y1, x0:x1])  # the exact extent inside the cells
        if bw <= 2 and bh <= 2:
            continue  # a speck at any scale (see SPECK_PX): not worth judging
        box = Box(x0 + bx, y0 + by, bw, bh)
        # Judge the region with SSIM on a crop with room for the SSIM window.
        sx0, sy0 = max(0, box.x - 6), max(0, box.y - 6)
        sx1, sy1 = min(width, box.x + box.w + 6), min(height, box.y + box.h + 6)
        before, after = reference[sy0:sy1, sx0:sx1], current[sy0:sy1, sx0:sx1]
        # A glyph that changed in small text (a price 10 → 17) is too small to move SSIM, but it changed
        # hard: a few pixels swing further than codec noise ever moves them (asked first: it is cheap).
        # Otherwise a structural change survives a slight blur; codec artefacts (blocks, ringing,
        # the quality pulse after a key frame at low bitrates) are fine detail and do not.
        if int(np.count_nonzero(cv2.absdiff(before, after) >= STRONG_DIFF)) >= STRONG_PIXELS \
                or (ssim(before, after) < REGION_SSIM and ssim(cv2.GaussianBlur(before, (5, 5), 1.2),
                                                               cv2.GaussianBlur(after, (5, 5), 1.2)) < REGION_SSIM):
            boxes.append(box)
    return boxes


def union(boxes: list[Box]) -> Box:
    x0 = min(b.x for b in boxes)
    y0 = min(b.y for b in boxes)
    x1 = max(b.x + b.w for b in boxes)
    y1 = max(b.y + b.h for b in boxes)
    return Box(x0, y0, x1 - x0, y1 - y0)


SHIFT_RESPONSE = 0.15  # phase-correlation peak below which two crops are not one picture moved
MIN_SHIFT_PX = 3  # analysis px: a smaller shift is jitter


def vertical_shift(reference: np.ndarray, current: np.ndarray, box: Box) -> int:
    """How far the content inside ``box`` moved up or down between the two frames (analysis px, 0 if not a move).

    Scrolled content is the same picture displaced: phase correlation finds the displacement,
    and a weak peak, a sideways move or a tiny one means the content changed, not moved.
    """
    if box.h < 24 or box.w < 24:
        return 0
    before = reference[box.y:box.y + box.h, box.x:box.x + box.w].astype(np.float32)
    after = current[box.y:box.y + box.h, box.x:box.x + box.w].astype(np.float32)
    window = cv2.createHanningWindow((box.w, box.h), cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(before, after, window)
    shift = round(dy)
    if response < SHIFT_RESPONSE or abs(dx) >= 2 or abs(shift) < MIN_SHIFT_PX or abs(shift) > box.h // 2:
        return 0
    # A scroll moves everything in the region: the shifted frames must agree where they overlap,
    # much better than unshifted. Content that grew (a row added, a footer pushed down) does not.
    if shift > 0:
        moved_before, moved_after = before[: box.h - shift], after[shift:]
    else:
        moved_before, moved_after = before[-shift:], after[: box.h + shift]
    aligned = float(np.mean(np.abs(moved_before - moved_after)))
    unaligned = float(np.mean(np.abs(before - after)))
    return shift if aligned < 4.0 and aligned * 3 < unaligned else 0
