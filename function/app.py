"""Wiring: configuration → stores, vision, browser → the pipeline, the records and the Flask app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from flask import Flask

from . import logs, pipeline
from .aria import BrowserSettings, Inspector
from .config import Config
from .http import create_app
from .jobs import Jobs
from .tasks import JobSigner, JobTicket, TaskQueue
from .models import RecordingRequest, Session
from .records import Pricing, Records
from .sessions import open_sessions
from .storage import open_store
from .vision import ClaudeProvider, ClaudeSettings, LocalProvider, Vision

log = logging.getLogger("scope")


def make_vision(config: Config) -> Vision:
    """Claude with an API key (the local analyser stands in for a failed batch), else the local analyser."""
    local = LocalProvider()
    if config.anthropic_api_key:
        return Vision(ClaudeProvider(ClaudeSettings(
            api_key=config.anthropic_api_key, model=config.vision_model, base_url=config.anthropic_base_url,
            batch_size=config.vision_batch, max_in_flight=config.vision_in_flight,
            timeout_s=config.vision_timeout_s)), fallback=local)
    return Vision(local)


def make_lanes(config: Config) -> pipeline.Lanes:
    browser = Inspector(BrowserSettings(executable_path=config.chromium_path, page_timeout_s=config.page_timeout_s,
                                        allow_private=config.allow_private_urls, allowed_hosts=config.allowed_hosts))
    return pipeline.Lanes(config, make_vision(config), browser)


def make_records(config: Config) -> Records:
    return Records(open_store(config), open_sessions(config), config.prompt_tokens,
                   Pricing(config.vision_price_in, config.vision_price_out))


@dataclass
class Service:
    """The service's parts: the lanes, the records, and processing as the two in sequence."""

    config: Config
    lanes: pipeline.Lanes
    records: Records
    jobs: Jobs = field(init=False)  # the workers for recordings accepted with ``Prefer: respond-async``

    def __post_init__(self) -> None:
        config = self.config
        queue = None
        if config.tasks_queue and config.service_url:
            queue = TaskQueue(config.tasks_queue, config.service_url, JobSigner(config.signing_secret),
                              config.deadline_s + 60, config.tasks_emulator_host, config.tasks_invoker)
        self.jobs = Jobs(self.records, self.process_accepted, config.max_inflight, config.deadline_s, queue)

    def process(self, request: RecordingRequest) -> Session:
        """Run the pipeline on one recording and store its session."""
        return self.records.save_recording(request, pipeline.run(request, self.lanes))

    def process_accepted(self, request: RecordingRequest, accepted: Session, progress: pipeline.Progress) -> Session:
        """Run the pipeline on a recording accepted earlier, into the session claimed for it."""
        evidence = pipeline.run(request, self.lanes, progress)
        progress("writing prompt")
        return self.records.save_recording(request, evidence, accepted)

    def accept(self, request: RecordingRequest, done: Callable[[], None]) -> Session:
        """Take a recording to process in the background: a seed URL the service may not open is
        refused now (``UrlNotAllowed``), before anything is stored."""
        pipeline.check_seed_url(request.seed_url, self.lanes)
        return self.jobs.submit(request, done)

    def run_job(self, ticket: JobTicket) -> Session | None:
        """A task's callback: process the accepted session it names, from its stored video."""
        return self.jobs.run_stored(ticket)


def build(config: Config) -> Service:
    service = Service(config, make_lanes(config), make_records(config))
    announce(service)
    return service


def build_app(config: Config) -> Flask:
    service = build(config)
    return create_app(config, service.records, service.process, service.accept, service.run_job)


def announce(service: Service) -> None:
    config = service.config
    log.info("storage=%s sessions=%s data=%s", config.storage, config.sessions,
             config.data_dir if config.storage == "local" else config.bucket)
    log.info("vision: %s", service.lanes.analyser.provider)
    if config.allow_private_urls:
        log.warning("SCOPE_ALLOW_PRIVATE_URLS=1: the browser may open loopback and private addresses")
    if not config.auth_enabled:
        log.warning("SCOPE_API_KEYS is not set: the API is open to anyone who can reach it")


def setup_logging() -> None:
    logs.setup()
