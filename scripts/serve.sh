#!/usr/bin/env bash
# Serve the service as the container does: Hypercorn, HTTP/1.1 and HTTP/2 cleartext (h2c) on $PORT.
# Runs from the repo on a developer machine too, with the venv active (or .venv present).
# On SIGTERM Hypercorn stops accepting and lets requests in flight finish for 8 s: Cloud Run
# sends SIGKILL 10 s after SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
python=python3
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then python=.venv/bin/python; fi
exec "$python" -m hypercorn --bind "${HOST:-0.0.0.0}:${PORT:-8080}" --workers 1 --keep-alive 650 \
  --graceful-timeout 8 --access-logfile - function.asgi:app
