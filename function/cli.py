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
import sys
from pathlib import Path
from typing import TextIO

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
        for handler in logging.getLogger().handlers:
            handler.setLevel(logging.WARNING)
        pipeline_log = logging.getLogger("scope.pipeline")
        pipeline_log.setLevel(logging.DEBUG)  # decoding's progress comes at debug level
        pipeline_log.addHandler(PhaseProgress(sys.stderr))
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
    """The pipeline's phases on a terminal: a line when one starts, ticked off with its time when it
    ends; decoding draws a bar on its line as it goes (phases that start meanwhile go below it)."""

    NAMES = {"extract": "decoding the video", "grounding": "finding the elements under the pointer",
             "vision": "reading the key frames", "browser": "opening the page", "later pages": "opening later pages"}
    BAR = 24

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.stream = stream
        self.bar_open = False  # the cursor is at the end of a progress bar's line

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {}) or {}
        phase, event = fields.get("phase"), fields.get("event")
        if phase is None:
            return
        name = self.NAMES.get(phase, phase)
        if event == "progress":
            done = min(1.0, fields.get("ms", 0) / max(1, fields.get("of", 0)))
            filled = round(done * self.BAR)
            self.stream.write(f"\r  … {name} [{'█' * filled}{'░' * (self.BAR - filled)}] {done:4.0%}")
            self.bar_open = True
        else:
            line = f"  … {name}" if event == "start" else f"  ✓ {name} ({fields.get('ms', 0) / 1000:.1f} s)"
            if self.bar_open:  # end the bar's line; an end of decoding takes its place
                self.stream.write("\r" + " " * (len(name) + self.BAR + 14) + "\r" if phase == "extract" else "\n")
                self.bar_open = False
            self.stream.write(line + "\n")
        self.stream.flush()


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
