"""``python -m function.frames VIDEO``: the kept frames of a video as JSON, without the rest of the service."""

from __future__ import annotations

import dataclasses
import json
import sys

from pydantic.alias_generators import to_camel

from .decode import VideoError
from .detect import extract


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m function.frames VIDEO", file=sys.stderr)
        return 2
    try:
        frames, info, warnings = extract(args[0], encode_images=False)
    except VideoError as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1
    kept = [{"index": f.index, "timestamp": f.timestamp, "changeScore": f.change_score,
             "changedRegion": f.changed_region.to_json() if f.changed_region else None} for f in frames]
    video = {to_camel(k): v for k, v in dataclasses.asdict(info).items()}
    print(json.dumps({"video": video, "warnings": warnings, "frames": kept}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
