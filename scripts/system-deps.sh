#!/usr/bin/env bash
# System packages the service and its tests need on a Debian machine:
# a Chromium for Playwright (Debian's, unless Playwright's own browser is installed),
# ffmpeg (test videos) and Tesseract's English model (the local analyser's OCR); with --test also the
# Firestore emulator and a Java runtime for it, and tini (the image's init). Installs only what is missing.
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
# The local analyser's OCR model (Tesseract itself comes with the Python package tesserocr),
# looked for as the service looks for it.
have_tesseract_model() {
  [ -x .venv/bin/python ] && .venv/bin/python -c "from function.vision.ocr import tessdata_dir; tessdata_dir()" 2>/dev/null
}
have_tesseract_model || need+=(tesseract-ocr-eng)

# The Firestore emulator, wherever the Google Cloud SDK keeps it (tests/conftest.py looks in the same places).
have_firestore_emulator() {
  [ -n "${SCOPE_FIRESTORE_EMULATOR:-}" ] && [ -e "$SCOPE_FIRESTORE_EMULATOR" ] && return 0
  local roots=("${CLOUDSDK_ROOT_DIR:-}" /usr/lib/google-cloud-sdk /usr/share/google-cloud-sdk /opt/google-cloud-sdk
               "$HOME/google-cloud-sdk")
  if command -v gcloud >/dev/null; then roots+=("$(dirname "$(dirname "$(readlink -f "$(command -v gcloud)")")")"); fi
  for root in "${roots[@]}"; do
    [ -n "$root" ] && [ -e "$root/platform/cloud-firestore-emulator/cloud_firestore_emulator" ] && return 0
  done
  return 1
}
if [ "${1:-}" = "--test" ]; then
  command -v java >/dev/null || need+=(default-jre-headless)
  command -v tini >/dev/null || need+=(tini)  # the image's init: the tests start scripts/serve.sh under it too
  if ! have_firestore_emulator; then
    if command -v apt-cache >/dev/null && apt-cache policy google-cloud-cli-firestore-emulator 2>/dev/null \
        | grep -q "Candidate: [0-9]"; then
      need+=(google-cloud-cli-firestore-emulator)
    elif command -v gcloud >/dev/null && gcloud components install cloud-firestore-emulator --quiet >/dev/null 2>&1; then
      :
    else
      echo "the Firestore emulator is missing and cannot be installed here: add Google's apt repository" \
           "(https://cloud.google.com/sdk/docs/install#deb) and rerun, or install the Cloud SDK and run" \
           "'gcloud components install cloud-firestore-emulator', or set SCOPE_FIRESTORE_EMULATOR" >&2
      exit 1
    fi
  fi
fi

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
