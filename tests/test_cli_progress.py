"""The command line's progress board, fed log records as the pipeline writes them: what the
terminal ends up showing, replayed through the same cursor moves a terminal makes."""

from __future__ import annotations

import io
import logging

from function import logs
from function.cli import PhaseProgress


def screen(written: str) -> list[str]:
    """The lines a terminal shows after ``written``: ``ESC [F`` goes to the line above, ``ESC [J``
    clears from there down (the only controls the board uses)."""
    lines, row = [""], 0
    i = 0
    while i < len(written):
        if written.startswith("\x1b[F", i):
            row = max(0, row - 1)
            i += 3
        elif written.startswith("\x1b[J", i):
            del lines[row + 1:]
            lines[row] = ""
            i += 3
        elif written[i] == "\n":
            row += 1
            if row == len(lines):
                lines.append("")
            i += 1
        else:
            lines[row] += written[i]
            i += 1
    return [line for line in lines if line]


def board(columns: int = 100) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    logger = logging.getLogger(f"scope.test-board-{columns}")
    logger.handlers[:] = [PhaseProgress(out, columns=lambda: columns)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, out


def test_running_phases_stay_at_the_bottom_with_their_bars_and_ended_ones_go_above() -> None:
    log, out = board()
    logs.phase(log, "extract", "start")
    logs.phase(log, "browser", "start")
    logs.progress(log, "extract", 31_000, 62_000, "ms")
    logs.phase(log, "vision", "start")
    logs.progress(log, "vision", 3, 4, "frames")
    log.warning("the video ends early")
    logs.phase(log, "extract", "end", 8_400)
    assert screen(out.getvalue()) == [
        "  ! the video ends early",
        "  ✓ decoding the video (8.4 s)",
        "  … opening the page",
        "  … reading the key frames [██████████████████░░░░░░]  75% 3/4 frames",
    ]
    logs.phase(log, "browser", "end", 900)
    logs.phase(log, "vision", "end", 9_100)
    logs.phase(log, "prompt", "start")
    logs.progress(log, "prompt", 7, 7, "objects")
    logs.phase(log, "prompt", "end", 40)
    assert screen(out.getvalue())[2:] == ["  ✓ opening the page (0.9 s)", "  ✓ reading the key frames (9.1 s)",
                                          "  ✓ writing the prompt (0.0 s)"]


def test_a_phase_that_fails_is_crossed_off_and_leaves_the_running_lines() -> None:
    log, out = board()
    logs.phase(log, "extract", "start")
    logs.phase(log, "prompt", "start")
    logs.progress(log, "prompt", 2, 7, "objects")
    logs.phase(log, "prompt", "end", 1_200, failed=True)
    assert screen(out.getvalue()) == ["  ✗ writing the prompt (failed after 1.2 s)", "  … decoding the video"]


def test_progress_of_a_phase_not_running_and_info_lines_draw_nothing() -> None:
    log, out = board()
    logs.progress(log, "vision", 1, 2, "frames")  # before its start, or after its end
    log.info("recording processed")
    assert out.getvalue() == ""


def test_a_running_line_never_wraps_on_a_narrow_terminal() -> None:
    """A wrapped line takes two rows, and the board would redraw one row too low from then on."""
    log, out = board(columns=40)
    logs.phase(log, "grounding", "start")
    logs.phase(log, "vision", "start")
    logs.progress(log, "vision", 2, 9, "frames")
    shown = screen(out.getvalue())
    whole = ["  … finding the elements under the pointer", "  … reading the key frames [" + "█" * 5 + "░" * 19 + "]  22% 2/9 frames"]
    assert shown == [line[:39] for line in whole]  # one column short of the terminal's width
