"""Every setting of the service, read from the environment once, at start-up.

Nothing else in the package reads ``os.environ``: the settings travel down as a
``Config`` value, so tests build one directly and modules stay pure.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

# The contract's upload limit (API.md); the text limits are the models' rules.
MAX_VIDEO_BYTES = 104_857_600

# Default vision model: a current vision-capable Claude model from the SDK's list.
DEFAULT_VISION_MODEL = "claude-sonnet-5-5"


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _api_keys(raw: str | None) -> dict[str, str]:
    """``owner:key,owner:key`` → {key: owner}."""
    keys: dict[str, str] = {}
    for pair in _csv(raw):
        owner, sep, key = pair.partition(":")
        if not sep or not owner.strip() or not key.strip():
            raise ConfigError("SCOPE_API_KEYS must be comma-separated owner:key pairs")
        keys[key.strip()] = owner.strip()
    return keys


@dataclass(frozen=True)
class Config:
    port: int = 8080
    storage: str = "local"  # local | gcs
    sessions: str = "local"  # local | firestore
    data_dir: Path = Path(".scope-data")
    bucket: str | None = None
    gcp_project: str | None = None
    storage_emulated: bool = False  # STORAGE_EMULATOR_HOST is set: the GCS client talks to an emulator
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    vision_model: str = DEFAULT_VISION_MODEL
    allow_private_urls: bool = False
    allowed_hosts: frozenset[str] = frozenset()  # exact host:port exceptions to the URL guard
    api_keys: Mapping[str, str] = field(default_factory=dict)  # key → owner
    cors_origins: tuple[str, ...] = ()
    chromium_path: str | None = None
    # Service limits not named by the contract (documented in the README).
    max_inflight: int = 2
    deadline_s: float = 300.0
    page_timeout_s: float = 15.0
    max_video_seconds: float = 15 * 60
    max_video_pixels: int = 3840 * 2160
    max_frames: int = 60
    prompt_tokens: int = 8000
    max_urls: int = 5  # pages the browser lane opens per recording: the seed and what the recording shows
    vision_batch: int = 8  # frames per Claude request
    vision_in_flight: int = 4  # Claude requests at once
    vision_timeout_s: float = 60.0  # per Claude request; the SDK retries 429/5xx/timeouts within it
    vision_price_in: float = 3.0  # USD per million input tokens, for the cost estimate
    vision_price_out: float = 15.0  # USD per million output tokens
    store_retry_s: float = 30.0  # how long transient storage and Firestore errors are retried
    signing_secret: str = ""
    body_idle_s: float = 20.0  # a request body that sends nothing for this long is cut off (408)
    body_min_rate: int = 16 * 1024  # bytes/s a body must average once BODY_GRACE_S have passed
    retention_days: int = 0  # Firestore records carry expireAt this long after creation (0: no TTL)
    tasks_queue: str | None = None  # projects/P/locations/L/queues/Q: accepted recordings go through Cloud Tasks
    service_url: str | None = None  # this service's own URL, which the queue's tasks call back
    tasks_emulator_host: str | None = None  # host:port of a stand-in for the Cloud Tasks API
    tasks_invoker: str | None = None  # service account whose OIDC token the tasks carry (Cloud Run checks invokers)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


def load(env: Mapping[str, str] | None = None) -> Config:
    """Build the Config from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    storage = env.get("SCOPE_STORAGE", "local").strip() or "local"
    sessions = env.get("SCOPE_SESSIONS", "local").strip() or "local"
    if storage not in {"local", "gcs"}:
        raise ConfigError(f"SCOPE_STORAGE must be local or gcs, got {storage!r}")
    if sessions not in {"local", "firestore"}:
        raise ConfigError(f"SCOPE_SESSIONS must be local or firestore, got {sessions!r}")
    bucket = env.get("SCOPE_BUCKET") or None
    if storage == "gcs" and not bucket:
        raise ConfigError("SCOPE_STORAGE=gcs needs SCOPE_BUCKET")
    tasks_queue = env.get("SCOPE_TASKS_QUEUE", "").strip() or None
    service_url = env.get("SCOPE_SERVICE_URL", "").strip().rstrip("/") or None
    if tasks_queue and not re.fullmatch(r"projects/[^/]+/locations/[^/]+/queues/[^/]+", tasks_queue):
        raise ConfigError("SCOPE_TASKS_QUEUE must be projects/PROJECT/locations/REGION/queues/QUEUE")
    if tasks_queue and not (service_url and env.get("SCOPE_SIGNING_SECRET")):
        raise ConfigError("SCOPE_TASKS_QUEUE needs SCOPE_SERVICE_URL (where its tasks call back) and "
                          "SCOPE_SIGNING_SECRET (shared by every instance, to check the callbacks)")
    return Config(
        port=int(_number(env, "PORT", 8080)),
        storage=storage,
        sessions=sessions,
        data_dir=Path(env.get("SCOPE_DATA_DIR", "").strip() or ".scope-data"),
        bucket=bucket,
        gcp_project=env.get("GOOGLE_CLOUD_PROJECT") or None,
        storage_emulated=bool(env.get("STORAGE_EMULATOR_HOST")),
        anthropic_api_key=(env.get("ANTHROPIC_API_KEY") or "").strip() or None,
        anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or None,
        vision_model=env.get("SCOPE_VISION_MODEL", "").strip() or DEFAULT_VISION_MODEL,
        allow_private_urls=_flag(env.get("SCOPE_ALLOW_PRIVATE_URLS"), False),
        allowed_hosts=frozenset(h.lower() for h in _csv(env.get("SCOPE_ALLOWED_HOSTS"))),
        api_keys=_api_keys(env.get("SCOPE_API_KEYS")),
        cors_origins=_csv(env.get("SCOPE_CORS_ORIGINS")),
        chromium_path=env.get("SCOPE_CHROMIUM_PATH") or None,
        max_inflight=max(1, int(_number(env, "SCOPE_MAX_INFLIGHT", 2))),
        deadline_s=_number(env, "SCOPE_DEADLINE_S", 300.0),
        page_timeout_s=_number(env, "SCOPE_PAGE_TIMEOUT_S", 15.0),
        max_video_seconds=_number(env, "SCOPE_MAX_VIDEO_SECONDS", 15 * 60),
        max_video_pixels=int(_number(env, "SCOPE_MAX_VIDEO_PIXELS", 3840 * 2160)),
        max_frames=max(1, int(_number(env, "SCOPE_MAX_FRAMES", 60))),
        prompt_tokens=max(500, int(_number(env, "SCOPE_PROMPT_TOKENS", 8000))),
        max_urls=max(1, int(_number(env, "SCOPE_MAX_URLS", 5))),
        vision_batch=max(1, int(_number(env, "SCOPE_VISION_BATCH", 8))),
        vision_in_flight=max(1, int(_number(env, "SCOPE_VISION_IN_FLIGHT", 4))),
        vision_timeout_s=_number(env, "SCOPE_VISION_TIMEOUT_S", 60.0),
        vision_price_in=_number(env, "SCOPE_VISION_PRICE_IN", 3.0),
        vision_price_out=_number(env, "SCOPE_VISION_PRICE_OUT", 15.0),
        store_retry_s=_number(env, "SCOPE_STORE_RETRY_S", 30.0),
        signing_secret=env.get("SCOPE_SIGNING_SECRET", ""),
        body_idle_s=max(0.5, _number(env, "SCOPE_BODY_IDLE_S", 20.0)),
        body_min_rate=max(0, int(_number(env, "SCOPE_BODY_MIN_RATE", 16 * 1024))),
        retention_days=max(0, int(_number(env, "SCOPE_RETENTION_DAYS", 0))),
        tasks_queue=tasks_queue,
        service_url=service_url,
        tasks_emulator_host=env.get("CLOUD_TASKS_EMULATOR_HOST", "").strip() or None,
        tasks_invoker=env.get("SCOPE_TASKS_INVOKER", "").strip() or None,
    )
