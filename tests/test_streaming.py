"""The video lane streams: key frames leave the decoder while it still decodes, vision reads a batch
as soon as it is complete, and the pipeline's vision span begins inside its decoding span. Each
test checks an order of events, never a duration."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PageServer
from fake_anthropic import FakeAnthropic
from function import pipeline
from function.aria import BrowserSettings, Inspector
from function.config import Config
from function.frames import extract
from function.models import KeyFrame, RecordingRequest
from function.vision import ClaudeProvider, ClaudeSettings, LocalProvider, Vision
from test_vision import key_frames

RECORDING = "todomvc_basic_1280_vp9.webm"


def test_key_frames_leave_the_decoder_in_order_while_it_decodes(recordings: Path) -> None:
    handed: list[KeyFrame] = []
    checks_after_first: list[int] = []

    def cancelled() -> bool:  # asked once a second of video: decoding goes on
        if handed:
            checks_after_first.append(len(handed))
        return False

    frames, _, _ = extract(recordings / RECORDING, cancelled=cancelled, on_frame=handed.append)
    assert [f.index for f in handed] == list(range(len(frames))) and len(frames) >= 5
    assert all(f.png for f in handed)
    assert checks_after_first, "no second of video was decoded after the first key frame was handed on"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    yield server
    server.close()


def test_a_batch_is_read_as_soon_as_it_is_complete(fake: FakeAnthropic) -> None:
    """Two frames make a batch: it is sent before the third frame exists; the last, partial batch at the end."""
    vision = Vision(ClaudeProvider(ClaudeSettings(api_key="k", model="m", base_url=fake.url, batch_size=2,
                                                  max_retries=0)))
    frames = key_frames(5, size=(320, 200))
    stream = vision.open()
    stream.add(frames[0])
    stream.add(frames[1])
    deadline = time.monotonic() + 30
    while not fake.requests:
        assert time.monotonic() < deadline, "the complete batch was not sent while the stream was open"
        time.sleep(0.02)
    for frame in frames[2:]:
        stream.add(frame)
    result = stream.finish()
    assert len(fake.requests) == 3  # 2 + 2 + 1
    assert [a.description for a in result.analyses] == [f"Frame {f.index}: the todo list with {f.index} items"
                                                        for f in frames]


def test_the_pipeline_reads_frames_while_it_still_decodes(recordings: Path, pages: PageServer) -> None:
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=5))
    try:
        lanes = pipeline.Lanes(Config(allow_private_urls=True), Vision(LocalProvider()), browser)
        video = recordings / RECORDING
        request = RecordingRequest(video, video.stat().st_size, "video/webm", "t", pages.url + "/", "",
                                   "CLAUDE_CODE", None, "alice")
        evidence = pipeline.run(request, lanes)
    finally:
        browser.close()
    extract_span, vision_span = evidence.spans["extract"], evidence.spans["vision"]
    assert vision_span[0] < extract_span[1] <= vision_span[1], evidence.spans
    assert len(evidence.video.vision.analyses) == len(evidence.video.key_frames)
