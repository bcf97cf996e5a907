"""Wiring: configuration → stores, analyser, browser → the pipeline and the HTTP service."""

from __future__ import annotations

import functools
import logging

from . import logs, pipeline
from .aria import BrowserSettings, Inspector
from .config import Config
from .http import Service
from .sessions import open_sessions
from .storage import open_store
from .vision import Analyser, ClaudeAnalyser, ClaudeSettings, LocalAnalyser

log = logging.getLogger("scope")


def make_analyser(config: Config) -> Analyser:
    if config.anthropic_api_key:
        return ClaudeAnalyser(ClaudeSettings(
            api_key=config.anthropic_api_key, model=config.vision_model, base_url=config.anthropic_base_url,
            batch_size=config.vision_batch, max_in_flight=config.vision_in_flight,
            timeout_s=config.vision_timeout_s))
    return LocalAnalyser()


def make_deps(config: Config) -> pipeline.Deps:
    browser = Inspector(
        BrowserSettings(
            executable_path=config.chromium_path,
            page_timeout_s=config.page_timeout_s,
            allow_private=config.allow_private_urls,
            allowed_hosts=config.allowed_hosts,
        )
    )
    return pipeline.Deps(config, open_store(config), open_sessions(config), make_analyser(config), browser)


def build_service(config: Config) -> Service:
    deps = make_deps(config)
    announce(config, deps)
    return Service(config, deps.store, deps.sessions, functools.partial(pipeline.run, deps=deps))


def announce(config: Config, deps: pipeline.Deps) -> None:
    log.info("storage=%s sessions=%s data=%s", config.storage, config.sessions,
             config.data_dir if config.storage == "local" else config.bucket)
    log.info("vision: %s", deps.analyser.provider)
    if config.allow_private_urls:
        log.warning("SCOPE_ALLOW_PRIVATE_URLS=1: the browser may open loopback and private addresses")
    if not config.auth_enabled:
        log.warning("SCOPE_API_KEYS is not set: the API is open to anyone who can reach it")


def setup_logging() -> None:
    logs.setup()
