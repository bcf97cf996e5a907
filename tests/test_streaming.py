"""The video lane streams: key frames leave the decoder while it still decodes, vision reads a batch
as soon as it is complete, the pipeline's vision span begins inside its decoding span, and a page
the recording visits is opened as soon as its URL is read. Each test checks an order of events,
never a duration."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from conftest import PageServer, phase_events
from fake_anthropic import FakeAnthropic
from function import pipeline
from function.aria import BrowserSettings, Inspector
from function.config import Config
from function.frames import extract
from function.models import FrameAnalysis, KeyFrame, RecordingEvidence, RecordingRequest
from function.vision import (Batch, Batcher, ClaudeProvider, ClaudeSettings, FrameSink, LocalProvider, Reading,
                             StreamEvents, Vision)
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


def run_pipeline(video: Path, seed_url: str, vision: Vision) -> RecordingEvidence:
    """The whole pipeline on ``video`` with its own browser, as the service runs it."""
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=5))
    try:
        lanes = pipeline.Lanes(Config(allow_private_urls=True), vision, browser)
        request = RecordingRequest(video, video.stat().st_size, "video/webm", "t", seed_url, "", "CLAUDE_CODE",
                                   None, "alice")
        return pipeline.run(request, lanes)
    finally:
        browser.close()


def test_the_pipeline_reads_frames_while_it_still_decodes(recordings: Path, pages: PageServer) -> None:
    evidence = run_pipeline(recordings / RECORDING, pages.url + "/", Vision(LocalProvider()))
    extract_span, vision_span = evidence.spans["extract"], evidence.spans["vision"]
    assert vision_span[0] < extract_span[1] <= vision_span[1], evidence.spans
    assert len(evidence.video.vision.analyses) == len(evidence.video.key_frames)


class Heard:
    """A sink that keeps what a batcher tells early."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.done: list[int] = []
        self.lock = threading.Lock()

    def url_seen(self, url: str) -> None:
        with self.lock:
            self.urls.append(url)

    def frame_done(self, frame: KeyFrame) -> None:
        with self.lock:
            self.done.append(frame.index)


def test_the_local_analyser_tells_each_address_bar_url_before_its_batch_is_read(recordings: Path) -> None:
    truth = json.loads((recordings / "todomvc_browser_1280_vp9.json").read_text())
    frames = extract(recordings / "todomvc_browser_1280_vp9.webm")[0]
    heard = Heard()
    batcher = LocalProvider().batcher(heard)
    for frame in frames:
        assert batcher.add(frame) == []  # one batch, at the end
    deadline = time.monotonic() + 60
    while len(set(heard.done)) < len(frames):  # each frame told once its crops are read
        assert time.monotonic() < deadline, f"{len(set(heard.done))} of {len(frames)} frames told"
        time.sleep(0.05)
    assert sorted(set(heard.done)) == [f.index for f in frames]
    assert set(heard.urls) == set(truth["urls_visited"])  # all of them, and no batch read yet


def test_the_stream_tells_each_url_once_and_how_many_frames_are_read(fake: FakeAnthropic) -> None:
    vision = Vision(ClaudeProvider(ClaudeSettings(api_key="k", model="m", base_url=fake.url, batch_size=2,
                                                  max_retries=0)))

    class Listener(StreamEvents):
        def __init__(self) -> None:
            self.urls: list[str] = []
            self.counts: list[tuple[int, int]] = []
            self.starts = 0

        def started(self) -> None:
            self.starts += 1

        def url_seen(self, url: str) -> None:
            self.urls.append(url)

        def frames_read(self, done: int, handed: int) -> None:
            self.counts.append((done, handed))

    listener = Listener()
    stream = vision.open(events=listener)
    for frame in key_frames(5, size=(320, 200)):
        stream.add(frame)
    result = stream.finish()
    assert listener.starts == 1
    assert listener.urls == result.urls_seen and len(result.urls_seen) == 1  # every batch reads the same URL
    assert listener.counts[-1] == (5, 5)
    dones = [done for done, _ in listener.counts]
    assert dones == sorted(dones) and {2, 4} <= set(dones)  # told per batch read, never backwards


class SeesAnotherPage:
    """A provider whose batcher reads a later page's URL off the second frame, as an address-bar reader does."""

    name, label, max_in_flight, uses_hints = "sees:test", "the test provider", 1, False

    def __init__(self, url: str) -> None:
        self.url = url

    def batcher(self, sink: FrameSink) -> Batcher:
        url = self.url

        class TellsEarly:
            def __init__(self) -> None:
                self.frames: list[KeyFrame] = []

            def add(self, frame: KeyFrame) -> list[Batch]:
                self.frames.append(frame)
                if len(self.frames) == 2:
                    sink.url_seen(url)
                return []

            def rest(self) -> list[Batch]:
                return [Batch(self.frames)]

        return TellsEarly()

    def read(self, batch: Batch) -> Reading:
        return Reading([FrameAnalysis(description=f"frame {f.index}", provider=self.name,
                                      url=self.url if n else None) for n, f in enumerate(batch.frames)],
                       urls_seen=[self.url])


def test_a_later_page_is_opened_as_soon_as_its_url_is_read(recordings: Path, pages: PageServer) -> None:
    later = pages.url + "/form.html"
    evidence = run_pipeline(recordings / RECORDING, pages.url + "/", Vision(SeesAnotherPage(later)))
    assert evidence.inspection.urls_inspected == [pages.url + "/", later]
    assert all(s.success for s in evidence.inspection.snapshots)
    # opened while the video was still decoding, long before its one batch was read
    assert evidence.spans["later pages"][0] < evidence.spans["extract"][1] <= evidence.spans["vision"][1]


def test_a_phase_that_fails_logs_its_end_as_failed(pages: PageServer, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A video that sniffs as webm but does not decode: the decoding phase still logs its end, marked
    as a failure, so the service's logs show where the request stopped."""
    from function.frames import VideoError

    video = tmp_path / "broken.webm"
    video.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 4096)
    caplog.set_level(logging.INFO, logger="scope")
    with pytest.raises(VideoError):
        run_pipeline(video, pages.url + "/", Vision(LocalProvider()))
    ends = [e for e in phase_events(caplog, "end") if e["phase"] == "extract"]
    assert len(ends) == 1 and ends[0]["failed"] is True


def test_a_phase_ended_on_two_threads_at_once_logs_one_end(caplog: pytest.LogCaptureFixture) -> None:
    """Vision's phase begins on the stream's thread and is ended by the lane, or by its failure path:
    ``logs.Span`` logs one end, whoever comes first."""
    from function import logs

    caplog.set_level(logging.INFO, logger="scope")
    span = logs.Span.start(logging.getLogger("scope.test-span"), "vision")
    gate = threading.Barrier(4)

    def end(failed: bool) -> None:
        gate.wait()
        span.end(failed=failed)

    threads = [threading.Thread(target=end, args=(i % 2 == 1,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e["event"] for e in phase_events(caplog)] == ["start", "end"] and span.ended >= span.began


def test_a_failed_request_stops_its_browser_lane_before_it_answers(pages: PageServer, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """The video does not decode while the seed page is still loading: the browser lane is stopped, and
    its phase has logged its end (as a failure) by the time the request fails, instead of running on."""
    from function.frames import VideoError

    video = tmp_path / "broken.webm"
    video.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 4096)
    caplog.set_level(logging.INFO, logger="scope")
    with pytest.raises(VideoError):
        run_pipeline(video, pages.url + f"/slow?d=30.{time.monotonic_ns() % 1000:03d}", Vision(LocalProvider()))
    browser = [e for e in phase_events(caplog) if e["phase"] == "browser"]
    assert [e["event"] for e in browser] == ["start", "end"] and browser[1]["failed"] is True


def test_a_request_past_its_deadline_sends_no_more_batches_to_claude(recordings: Path, pages: PageServer) -> None:
    """One frame a batch, one batch at a time, a second each: the deadline passes while vision reads.
    The request fails with its timeout, and the batches not yet sent are dropped, not sent to a
    request that is gone (each would cost a call to Claude)."""
    fake = FakeAnthropic(latency_s=1.0)
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=5))
    vision = Vision(ClaudeProvider(ClaudeSettings(api_key="k", model="m", base_url=fake.url, batch_size=1,
                                                  max_in_flight=1, max_retries=0)))
    video = recordings / RECORDING
    try:
        lanes = pipeline.Lanes(Config(allow_private_urls=True, deadline_s=6), vision, browser)
        request = RecordingRequest(video, video.stat().st_size, "video/webm", "t", pages.url + "/", "",
                                   "CLAUDE_CODE", None, "alice")
        with pytest.raises(pipeline.PipelineTimeout):
            pipeline.run(request, lanes)
        sent = len(fake.requests)
        time.sleep(4.0)  # without the stop, a batch a second would still go out
        assert len(fake.requests) <= sent + 1, (sent, len(fake.requests))  # at most the one under way as it stopped
    finally:
        browser.close()
        fake.close()


class SeesAnotherPageThenBreaks(SeesAnotherPage):
    def read(self, batch: Batch) -> Reading:
        raise RuntimeError("the provider broke")  # not a ProviderFailed: no fallback takes over


def test_phases_under_way_when_the_request_fails_log_their_end_as_failed(
        recordings: Path, pages: PageServer, caplog: pytest.LogCaptureFixture) -> None:
    """Vision has begun and a later page is open when vision's reading fails: each phase that began
    logs its end before the request fails, those two marked as failures, the decoding not."""
    caplog.set_level(logging.INFO, logger="scope")
    with pytest.raises(RuntimeError, match="the provider broke"):
        run_pipeline(recordings / RECORDING, pages.url + "/", Vision(SeesAnotherPageThenBreaks(pages.url + "/form.html")))
    ours = phase_events(caplog)
    ends = {e["phase"]: e.get("failed", False) for e in ours if e["event"] == "end"}
    assert {e["phase"] for e in ours if e["event"] == "start"} == set(ends)  # every phase that began has its end
    assert "browser" in ends  # the browser lane too, read in time or stopped
    assert ends["vision"] is True and ends["later pages"] is True
    assert ends["extract"] is False
