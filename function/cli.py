"""The pipeline without a server: ``python -m function.cli VIDEO --title T --url URL``.

Prints the prompt (or the whole ProcessingResponse with ``--json``). Uses the
same configuration as the service, so results land in the same store. It is a
local tool: the browser may open loopback and private addresses (your own
``localhost`` app) unless ``--no-private-urls`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Callable, TextIO

from . import config as config_module
from . import pipeline
from .app import build, setup_logging
from .auth import ANONYMOUS, frame_path
from .frames import VideoError
from .models import AGENT_TARGETS, DEFAULT_AGENT_TARGET, ProcessingResponse, Session
from .records import Records, frame_key
from .upload import UploadError, local_request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m function.cli", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    parser.add_argument("video", type=Path, help="the screen recording (webm, mp4 or mkv)")
    parser.add_argument("--title", required=True, help="what the recording shows, one line (the session's title)")
    parser.add_argument("--url", required=True, help="where the recorded flow starts (seedUrl), e.g. "
                                                     "http://localhost:3000/")
    parser.add_argument("--notes", default="", help="a few words of context: what you expected, what happened")
    parser.add_argument("--target", default=DEFAULT_AGENT_TARGET, choices=AGENT_TARGETS,
                        help=f"the agent the prompt is written for (default {DEFAULT_AGENT_TARGET})")
    parser.add_argument("--json", action="store_true", help="print the whole ProcessingResponse instead of the prompt")
    parser.add_argument("--no-private-urls", action="store_true",
                        help="refuse loopback and private addresses, as the deployed service does")
    args = parser.parse_args(argv)
    setup_logging()
    if sys.stderr.isatty():  # on a terminal: each phase as it starts and ends, and only warnings besides
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(PhaseProgress(sys.stderr))
        logging.getLogger("scope").setLevel(logging.DEBUG)  # the phases' progress comes at debug level
    config = dataclasses.replace(config_module.load(), allow_private_urls=not args.no_private_urls)
    if config.allow_private_urls:
        print("note: loopback and private URLs are allowed (a local tool); --no-private-urls refuses them",
              file=sys.stderr)
    try:
        request = local_request(args.video, args.title, args.url, args.notes, args.target, ANONYMOUS)
    except (OSError, UploadError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    service = build(config)
    try:
        session = service.process(request)
    except (pipeline.UrlNotAllowed, VideoError, pipeline.PipelineTimeout) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        service.lanes.browser.close()
    if args.json:
        response = ProcessingResponse.of(session, frame_path)
        print(json.dumps(response.to_json(), indent=2, ensure_ascii=False))
    else:
        print(local_prompt(session, config, service.records))
    return 0


class PhaseProgress(logging.Handler):
    """The pipeline's phases on a terminal: while a phase runs it has a line at the bottom, with a bar
    once it tells how far it is; when it ends, a ticked line with its time (crossed, if it failed)
    goes above the running ones, as does any warning (the only other log lines shown)."""

    NAMES = {"extract": "decoding the video", "grounding": "finding the elements under the pointer",
             "vision": "reading the key frames", "browser": "opening the page", "later pages": "opening later pages",
             "prompt": "writing the prompt"}
    BAR = 24

    def __init__(self, stream: TextIO, columns: Callable[[], int] | None = None) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream
        self.columns = columns or self._terminal_columns  # a running line that wrapped would break the redraw
        self.running: dict[str, str] = {}  # phase → its line while it runs, in the order they started
        self.drawn = 0  # lines of running phases at the bottom of the terminal

    def _terminal_columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80  # 0: a terminal that has no size
        except (OSError, ValueError, AttributeError):
            return 80

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {}) or {}
        phase, event = fields.get("phase"), fields.get("event")
        if (phase is None and record.levelno < logging.WARNING) or (event == "progress" and phase not in self.running):
            return
        name = self.NAMES.get(phase, phase)
        out = "\x1b[F" * self.drawn + "\x1b[J"  # back to the first running line; clear below
        if phase is None:
            out += f"  ! {record.getMessage()}\n"
        elif event == "end":
            self.running.pop(phase, None)
            mark, after = ("✗", "failed after ") if fields.get("failed") else ("✓", "")
            out += f"  {mark} {name} ({after}{fields.get('ms', 0) / 1000:.1f} s)\n"
        elif event == "start":
            self.running[phase] = f"  … {name}"
        else:
            self.running[phase] = f"  … {name} " + self.bar(fields.get("done", 0), fields.get("of", 0),
                                                            fields.get("unit", ""))
        width = max(10, self.columns() - 1)
        out += "".join(line[:width] + "\n" for line in self.running.values())
        self.drawn = len(self.running)
        self.stream.write(out)
        self.stream.flush()

    def bar(self, done: int, of: int, unit: str) -> str:
        """``[████░░░░]  50%``, with the count when it is of things (frames, pages) rather than time."""
        share = min(1.0, done / of) if of > 0 else 0.0
        filled = round(share * self.BAR)
        count = f" {done}/{of} {unit}" if unit != "ms" else ""
        return f"[{'█' * filled}{'░' * (self.BAR - filled)}] {share:4.0%}{count}"


EXAMPLES = """examples:
  python -m function.cli recording.webm --title "Checkout button does nothing" --url http://localhost:3000/cart
  python -m function.cli bug.mp4 --title "Sort breaks" --url https://staging.example.com/ --target CODEX --json
  make demo      # makes a recording of the project's own demo app and runs it through here
"""


def local_prompt(session: Session, config: config_module.Config, records: Records) -> str:
    """The prompt for an agent on this machine: frame images by their absolute paths, which it can open."""
    if config.storage != "local":
        return session.prompt
    root = (config.data_dir / "objects").resolve()
    frames = [f.model_copy(update={"thumbnail_url": str(root / frame_key(session.id, f.id))}) for f in session.frames]
    return records.render(session.model_copy(update={"frames": frames}))


if __name__ == "__main__":
    raise SystemExit(main())
