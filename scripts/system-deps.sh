#!/usr/bin/env bash
# System packages the service and its tests need on a Debian machine:
# a Chromium for Playwright (Debian's, unless Playwright's own browser is installed),
# ffmpeg (test videos) and tesseract (the local analyser's OCR). Installs only what is missing.
set -euo pipefail

need=()
have_playwright_browser() {
  [ -x .venv/bin/python ] && .venv/bin/python - <<'PY' 2>/dev/null
import os, sys
from playwright.sync_api import sync_playwright
with sync_playwright() as p:
    sys.exit(0 if os.path.exists(p.chromium.executable_path) else 1)
PY
}
if [ -z "${SCOPE_CHROMIUM_PATH:-}" ] && ! command -v chromium >/dev/null && ! have_playwright_browser; then
  need+=(chromium)
fi
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v tesseract >/dev/null || need+=(tesseract-ocr tesseract-ocr-eng)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
