"""``python -m function.mcp``: the MCP server on stdin/stdout (logs go to stderr)."""

from __future__ import annotations

import logging
import sys

from .server import build_server
from .sources import open_source


def main() -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    source = open_source()
    try:
        build_server(source).run()  # stdio, until the client closes it
    finally:
        source.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
