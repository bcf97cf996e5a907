# Claude Scope on Cloud Run: Python, the pinned requirements, Chromium baked in, served over h2c.
#
# Stages: `runtime` is the image that ships; `test` is that same image plus the test suite and what it
# needs (ffmpeg, the Firestore emulator and Java), and runs the suite. Cloud Build builds and runs
# `test` first, then builds and pushes `runtime` (cloudbuild.yaml).
FROM python:3.11-slim-bookworm AS runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLAYWRIGHT_BROWSERS_PATH=/opt/ms-playwright \
    HOST=0.0.0.0 \
    PORT=8080

WORKDIR /app

# Tesseract's English model for the local analyser (used when no Anthropic key is configured;
# Tesseract itself comes with the Python package tesserocr).
# tini as PID 1 reaps Chromium's orphaned children and passes SIGTERM on.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr-eng tini \
 && rm -rf /var/lib/apt/lists/*

COPY requirements.txt .
# Playwright's own Chromium, only its headless shell (all the service launches), and the system
# libraries it needs, at build time.
RUN pip install --no-cache-dir -r requirements.txt \
 && python -m playwright install --with-deps --only-shell chromium \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 scope

COPY function/ function/
COPY scripts/serve.sh scripts/serve.sh

USER 10001
EXPOSE 8080
# HTTP/1.1 and HTTP/2 cleartext on $PORT (Cloud Run with --use-http2 takes uploads over 32 MiB).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["scripts/serve.sh"]

# ---------------------------------------------------------------------------------------------------
# The suite inside the image that ships: the same Python, packages and Chromium, as the same user.
FROM runtime AS test
USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg ffmpeg default-jre-headless \
 && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
    | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg \
 && echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
    > /etc/apt/sources.list.d/google-cloud-sdk.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends google-cloud-cli-firestore-emulator \
 && rm -rf /var/lib/apt/lists/*
COPY requirements-dev.txt .
RUN pip install --no-cache-dir -r requirements-dev.txt
COPY --chown=10001 . .
USER 10001
# The tests start Playwright's headless shell (the browser the service uses) for their own recordings too.
CMD ["bash", "-c", "SCOPE_CHROMIUM_PATH=$(find \"$PLAYWRIGHT_BROWSERS_PATH\" -type f -name '*headless*shell' | head -n 1) exec python -m pytest -q tests"]

# The image that ships (the last stage: what a plain `docker build .` makes).
FROM runtime
