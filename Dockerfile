# Claude Scope on Cloud Run: Python, the pinned requirements, Playwright's Chromium baked in.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLAYWRIGHT_BROWSERS_PATH=/opt/ms-playwright \
    OMP_THREAD_LIMIT=1 \
    PORT=8080

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt \
 && python -m playwright install --with-deps chromium \
 && useradd --create-home --uid 10001 scope

COPY function/ function/

USER scope
EXPOSE 8080
CMD ["sh", "-c", "exec functions-framework --source function/main.py --target scope --host 0.0.0.0 --port ${PORT}"]
