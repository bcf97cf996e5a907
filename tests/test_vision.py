"""The vision step: the real anthropic SDK against a fake Messages API, the local analyser, element diffs."""

from __future__ import annotations

from typing import Iterator

import cv2
import numpy as np
import pytest

from fake_anthropic import FakeAnthropic, error, malformed
from function.models import AriaNode, KeyFrame, Region
from function.vision import (
    LOCAL_PROVIDER,
    MAX_IMAGE_EDGE,
    REPORT_TOOL,
    ClaudeAnalyser,
    ClaudeSettings,
    LocalAnalyser,
    diff_elements,
)


def key_frames(count: int, size: tuple[int, int] = (1920, 1080)) -> list[KeyFrame]:
    width, height = size
    image = np.full((height, width, 3), 200, np.uint8)
    cv2.putText(image, "Hello", (50, 200), cv2.FONT_HERSHEY_SIMPLEX, 3, (0, 0, 0), 5)
    png = cv2.imencode(".png", image)[1].tobytes()
    return [KeyFrame(i, i * 1500, 1.0 if i == 0 else 0.1, None if i == 0 else Region(10, 20, 300, 40),
                     width, height, png) for i in range(count)]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic()
    yield server
    server.close()


def analyser(fake: FakeAnthropic, **kw) -> ClaudeAnalyser:
    return ClaudeAnalyser(ClaudeSettings(api_key="sk-test", model="claude-test", base_url=fake.url, **kw))


def test_frames_are_batched_downscaled_and_read_through_the_tool(fake: FakeAnthropic) -> None:
    result = analyser(fake, batch_size=4, max_retries=0).analyze(key_frames(10))
    assert len(fake.requests) == 3  # 10 frames in batches of 4
    assert sorted(len(fake.images(r)) for r in fake.requests) == [2, 4, 4]
    for request in fake.requests:
        assert request["model"] == "claude-test"
        assert request["tools"][0]["name"] == REPORT_TOOL["name"]
        assert request["tool_choice"] == {"type": "tool", "name": "report_frames"}
        assert "never instructions" in request["system"]
        for png in fake.images(request):
            image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
            assert max(image.shape[:2]) <= MAX_IMAGE_EDGE
    assert fake.headers[0].get("Authorization") == "Bearer sk-test" or fake.headers[0].get("X-Api-Key") == "sk-test"
    assert [a.description for a in result.analyses] == [f"Frame {i}: the todo list with {i} items" for i in range(10)]
    assert result.analyses[2].anomalies == ["Error: could not save"]
    assert result.analyses[0].provider == "anthropic:claude-test"
    assert [s.timestamp for s in result.flow] == [i * 1500 for i in range(10)]
    assert result.observed_problem == "Saving a todo fails."
    assert result.input_tokens == 10_000 and result.output_tokens == 1000
    assert result.warnings == []


def test_server_errors_are_retried_by_the_sdk(fake: FakeAnthropic) -> None:
    fake.script.extend([error(500), error(429)])
    result = analyser(fake, batch_size=8, max_retries=2).analyze(key_frames(2))
    assert len(fake.requests) == 3
    assert result.analyses[1].provider == "anthropic:claude-test" and result.warnings == []


def test_claude_down_falls_back_to_the_local_analyser_with_a_warning(fake: FakeAnthropic) -> None:
    fake.default = error(500)
    result = analyser(fake, max_retries=1).analyze(key_frames(3))
    assert len(fake.requests) == 2
    assert [a.provider for a in result.analyses] == [LOCAL_PROVIDER] * 3
    assert "local analyser" in result.warnings[0]


def test_malformed_tool_output_falls_back(fake: FakeAnthropic) -> None:
    fake.default = malformed
    result = analyser(fake, max_retries=0).analyze(key_frames(2))
    assert [a.provider for a in result.analyses] == [LOCAL_PROVIDER] * 2
    assert "no report_frames tool call" in result.warnings[0]


def test_slow_claude_times_out_and_falls_back(fake: FakeAnthropic) -> None:
    fake.latency_s = 2.0
    result = analyser(fake, timeout_s=0.5, max_retries=0).analyze(key_frames(1))
    assert result.analyses[0].provider == LOCAL_PROVIDER and result.warnings


def test_local_analyser_says_what_changed_where() -> None:
    result = LocalAnalyser().analyze(key_frames(2))
    assert result.analyses[0].description.startswith("First frame")
    assert "top-left" in result.analyses[1].description and "1.5 s" in result.analyses[1].description
    assert result.analyses[1].provider == LOCAL_PROVIDER


def test_element_diff_reports_added_changed_and_removed() -> None:
    before = [AriaNode("checkbox", "Done", state="unchecked"), AriaNode("button", "Save"), AriaNode("text", "Old")]
    after = [AriaNode("checkbox", "Done", state="checked"), AriaNode("button", "Save"), AriaNode("link", "New")]
    marked, summary = diff_elements(before, after)
    assert (summary.added, summary.changed, summary.removed) == (1, 1, 1)
    assert {(n.role, n.diff_status) for n in marked} == {
        ("checkbox", "changed"), ("button", None), ("link", "added"), ("text", "removed")}
