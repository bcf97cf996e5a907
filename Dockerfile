# Claude Scope on Cloud Run: Python, the pinned requirements, Chromium baked in, served over h2c.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLAYWRIGHT_BROWSERS_PATH=/opt/ms-playwright \
    OMP_THREAD_LIMIT=1 \
    HOST=0.0.0.0 \
    PORT=8080

WORKDIR /app

# Tesseract for the local analyser (used when no Anthropic key is configured).
# tini as PID 1 reaps Chromium's orphaned children and passes SIGTERM on.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tini \
 && rm -rf /var/lib/apt/lists/*

COPY requirements.txt .
# Playwright's own Chromium and the system libraries it needs, at build time.
RUN pip install --no-cache-dir -r requirements.txt \
 && python -m playwright install --with-deps chromium \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 scope

COPY function/ function/
COPY scripts/serve.sh scripts/serve.sh

USER 10001
EXPOSE 8080
# HTTP/1.1 and HTTP/2 cleartext on $PORT (Cloud Run with --use-http2 takes uploads over 32 MiB).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["scripts/serve.sh"]
