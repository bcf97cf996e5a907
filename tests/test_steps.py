"""The step inference alone: key frames, pointer, caret and screen text in; the user's actions out.

Synthetic evidence for each rule, then the real dev recordings scored against their action ground truth.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from function.frames import extract
from function.models import FrameAnalysis, KeyFrame, PageHit, PointerAt, Region, Step, StepTarget, TextBox, Word
from function.steps import infer, merge_steps
from function.vision import LocalProvider, Vision

W, H = 1280, 720


def box(x: int, y: int, w: int, h: int) -> Region:
    return Region(x=x, y=y, width=w, height=h)


def line(text: str, x: int, y: int, h: int = 16, gap: int = 8, char: int = 9) -> TextBox:
    """A line of text with its words laid out left to right (``gap`` px between words)."""
    words, at = [], x
    for word in text.split("  ") if "  " in text else text.split():
        words.append(Word(text=word, x=at, width=len(word) * char))
        at += len(word) * char + gap
    return TextBox(text=" ".join(w.text for w in words), region=box(x, y, at - gap - x, h), words=words)


def frame(index: int, ms: int, region: Region | None, **kw) -> KeyFrame:
    return KeyFrame(index, ms, 0.1, region, W, H, started=kw.pop("started", ms - 200), **kw)


def seen(*lines: TextBox, url: str | None = None) -> FrameAnalysis:
    return FrameAnalysis(description="", provider="test", screen_text=list(lines), url=url)


HEADER = line("Shop", 40, 20)
FIELD = box(400, 150, 300, 24)


def test_typing_on_one_line_is_one_step_and_enter_adds_the_row() -> None:
    caret = {"caret": box(402, 150, 2, 20), "caret_ms": 900}
    frames = [frame(0, 0, None),
              frame(1, 1500, box(400, 150, 90, 24), **caret),
              frame(2, 4000, box(480, 150, 120, 24), **caret),
              frame(3, 6000, box(380, 150, 500, 120))]
    analyses = [seen(HEADER, line("What needs to be done?", 405, 154)),
                seen(HEADER, line("Buy milk", 405, 154)),
                seen(HEADER, line("Buy milk and eggs", 405, 154)),
                seen(HEADER, line("What needs to be done?", 405, 154), line("Buy milk and eggs", 420, 210))]
    found = infer(frames, analyses)
    assert [s.action for s in found] == ["type", "key"]
    typed, enter = found
    assert typed.value == "Buy milk and eggs" and typed.timestamp == 1300 and typed.end_timestamp == 4000
    assert typed.target is not None and typed.target.role == "textbox" and typed.target.name == "What needs to be done?"
    assert enter.value == "Enter" and "Buy milk and eggs" in enter.description and enter.frame_index == 3
    assert [s.index for s in found] == [1, 2]


def test_a_click_names_the_phrase_under_the_pointer_in_a_bar_of_links() -> None:
    bar = line("All  Active  Completed", 500, 400, gap=40)
    active = bar.words[1]
    at = PointerAt(2800, active.x + 5, 404)
    frames = [frame(0, 0, None), frame(1, 3000, box(380, 200, 520, 220), started=2900, pointer=at,
                                      pointer_path=[PointerAt(2700, 300, 500), at], pointer_still_ms=100)]
    found = infer(frames, [seen(HEADER, bar), seen(HEADER, bar, line("Walk the dog", 420, 250))])
    assert len(found) == 1 and found[0].action == "click"
    assert found[0].target is not None and found[0].target.name == "Active"
    assert found[0].description.startswith("Clicked \u201cActive\u201d") and found[0].source == "pointer+screen"


def test_a_small_control_appearing_as_the_pointer_arrives_is_a_hover() -> None:
    row = line("Call the plumber", 420, 280)
    at = PointerAt(2000, 600, 286)
    frames = [frame(0, 0, None), frame(1, 2300, box(880, 278, 14, 12), started=2000, pointer=at,
                                      pointer_path=[PointerAt(1900, 300, 400), at])]
    found = infer(frames, [seen(HEADER, row), seen(HEADER, row)])
    assert [s.action for s in found] == ["hover"]
    assert found[0].target is not None and found[0].target.name == "Call the plumber"
    assert "to its right" in found[0].description


def test_a_click_that_takes_a_row_away_says_so_and_ocr_losing_words_does_not() -> None:
    first, second, footer = line("Call the plumber", 420, 280), line("Walk the dog", 420, 340), line("1 item left", 380, 400)
    at = PointerAt(5000, 890, 286)
    clicked = dict(started=5100, pointer=at, pointer_path=[PointerAt(4900, 850, 286), at], pointer_still_ms=100)
    frames = [frame(0, 0, None), frame(1, 5400, box(360, 270, 560, 160), **clicked)]
    removed = infer(frames, [seen(first, second, footer),
                             seen(line("Walk the dog", 420, 280), line("0 items left", 380, 340))])
    assert removed[0].action == "click" and "the row \u201cCall the plumber\u201d was removed" in removed[0].description
    blurred = infer(frames, [seen(first, second, footer), seen(line("Cal the plumbcr", 420, 280), second, footer)])
    assert "removed" not in blurred[0].description


def test_a_point_the_pointer_only_passed_through_is_not_where_it_clicked() -> None:
    rows = [line("Book flights to Lisbon", 427, 276, h=22), line("Water the plants", 425, 336, h=22)]
    path = [PointerAt(18300, 368, 356), PointerAt(18399, 368, 356, left=True),  # one sample on its way
            PointerAt(18500, 634, 284), PointerAt(18899, 634, 284, left=True)]  # rested, then left
    frames = [frame(0, 0, None), frame(1, 19200, box(362, 128, 556, 226), started=18300, pointer_path=path)]
    found = infer(frames, [seen(HEADER, *rows), seen(HEADER, *rows)])
    assert [s.action for s in found] == ["click"]
    assert found[0].target is not None and found[0].target.name == "Book flights to Lisbon"


def test_a_place_the_pointer_was_seen_at_again_before_it_left_is_a_rest_not_a_passing_point() -> None:
    """The pointer arrived on the first row's checkbox as the change began and was seen there again
    100 ms before it left: it rested there 400 ms, so that is where it clicked, not where it came from."""
    rows = [line("Buy milk and eggs", 427, 216, h=22), line("Call the plumber", 426, 276, h=22)]
    path = [PointerAt(18199, 282, 314, left=True),  # where it came from, near the change too
            PointerAt(18200, 382, 230), PointerAt(18500, 382, 226),  # arrived, seen again
            PointerAt(18599, 382, 230, left=True), PointerAt(18600, 256, 336)]  # left
    frames = [frame(0, 0, None), frame(1, 18900, box(362, 128, 556, 216), started=18200,
                                      pointer=PointerAt(18200, 382, 230), pointer_path=path)]
    found = infer(frames, [seen(HEADER, *rows), seen(HEADER, rows[1])])
    assert [s.action for s in found] == ["click"]
    assert found[0].target is not None and found[0].target.name == "Buy milk and eggs"


def test_the_row_nearest_the_pointer_names_it_between_two_rows() -> None:
    rows = [line("Buy milk and eggs", 427, 216, h=22), line("Call the plumber", 426, 276, h=22)]
    at = PointerAt(18700, 430, 254)  # 16 px below the first row's text, 22 px above the second's
    frames = [frame(0, 0, None), frame(1, 19300, box(362, 126, 556, 218), started=18773, pointer=at,
                                      pointer_path=[PointerAt(18600, 230, 358), at], pointer_still_ms=100)]
    found = infer(frames, [seen(HEADER, *rows), seen(HEADER, *rows, line("1 item left", 380, 330))])
    assert found[0].action == "click" and found[0].target is not None
    assert found[0].target.name == "Buy milk and eggs"


def test_after_enter_the_value_is_the_whole_text_the_app_shows() -> None:
    caret = {"caret": box(600, 276, 2, 22), "caret_ms": 20500}
    before = line("Book flights to Lisbon", 427, 276, h=22)
    frames = [frame(0, 0, None),
              frame(1, 21000, box(560, 276, 90, 22), **caret),
              frame(2, 22300, box(360, 330, 560, 40), started=22100)]
    analyses = [seen(HEADER, before),
                seen(HEADER, line("Lisbon and hotel", 520, 276, h=22)),  # the editor's scrolled read
                seen(HEADER, line("Book flights to Lisbon and hotel", 427, 276, h=22), line("3 items left", 380, 340))]
    found = infer(frames, analyses)
    assert [s.action for s in found] == ["type", "key"]
    assert found[0].value == "Book flights to Lisbon and hotel" and found[1].value == "Enter"


def test_typing_a_url_into_the_browsers_address_bar_then_enter_is_a_navigation() -> None:
    rows = 87  # a window capture: tab strip, then the address bar's row, then the page
    page = line("All  Active  Completed", 500, 400, gap=40)

    def seen_in_window(*lines: TextBox, url: str) -> FrameAnalysis:
        return FrameAnalysis(description="", provider="test", screen_text=list(lines), url=url, browser_rows=rows)

    frames = [frame(0, 0, None),
              frame(1, 25500, box(120, 44, 1076, 38)),  # the address bar is focused, its URL selected
              frame(2, 26200, box(112, 44, 1090, 142)),  # typing: suggestions drop over the page
              frame(3, 28300, box(112, 54, 1090, 552)),  # Enter: the page changes with the address
              frame(4, 29000, box(300, 8, 200, 24))]  # the tab's title changes: not the address bar
    home, done = "http://127.0.0.1:8765/#/", "http://127.0.0.1:8765/#/completed"
    analyses = [seen_in_window(page, url=home)] * 3 + [seen_in_window(page, url=done)] * 2
    found = infer(frames, analyses)
    assert [s.action for s in found[:3]] == ["click", "type", "navigate"]
    assert all(s.target is not None and s.target.name == "Address and search bar" for s in found[:3])
    assert found[1].value == done and found[2].value == done and done in found[2].description
    assert len(found) == 4 and (found[3].target is None or found[3].target.name != "Address and search bar")
    tab_capture = infer(frames, [FrameAnalysis(description="", provider="test", screen_text=[page], url=a.url)
                                 for a in analyses])
    assert not any(s.target is not None and s.target.name == "Address and search bar" for s in tab_capture)


def test_scrolling_is_a_scroll_with_its_direction() -> None:
    frames = [frame(0, 0, None), frame(1, 2500, box(300, 0, 900, 720), started=1000, scroll_dy=-320),
              frame(2, 5000, box(300, 0, 900, 720), started=4000, scroll_dy=200)]
    found = infer(frames, [seen(HEADER)] * 3)
    assert [(s.action, s.value) for s in found] == [("scroll", "down"), ("scroll", "up")]


def test_navigation_states_only_urls_with_a_real_host() -> None:
    frames = [frame(0, 0, None), frame(1, 2000, box(0, 90, W, 600)), frame(2, 4000, box(0, 90, W, 600))]
    analyses = [seen(HEADER, url="http://shop.example.com/"), seen(HEADER, url="http://shop.example.com/cart"),
                seen(HEADER, url="http://0.1:8766/tables.html")]
    found = infer(frames, analyses)
    assert found[0].action == "navigate" and found[0].value == "http://shop.example.com/cart"
    assert all("0.1:8766" not in (s.value or "") + s.description + (s.url or "") for s in found)


def test_the_live_page_names_the_element_when_it_agrees_with_the_recording() -> None:
    at = PointerAt(2800, 150, 300)
    frames = [frame(0, 0, None), frame(1, 3000, box(100, 280, 300, 200), started=2900, pointer=at,
                                      pointer_path=[PointerAt(2700, 500, 500), at], pointer_still_ms=100)]
    hits = [PageHit(frame_index=1, x=150, y=300, role="link", name="Components", selector="nav >> text=Components")]
    found = infer(frames, [seen(HEADER, line("Cmponents", 120, 294)), seen(HEADER)], hits)
    assert found[0].target is not None and (found[0].target.role, found[0].target.name) == ("link", "Components")
    assert found[0].target.selector == "nav >> text=Components"
    assert found[0].source == "pointer+page" and found[0].confidence >= 0.8
    assert found[0].description.startswith("Clicked the link \u201cComponents\u201d")
    # Nothing readable there in the recording: the page's name, less sure.
    unread = infer(frames, [seen(HEADER), seen(HEADER)], hits)[0]
    assert unread.target.name == "Components" and unread.confidence < found[0].confidence
    # The live page has something else there (another state): the recording's text stands, less sure.
    other = [PageHit(frame_index=1, x=150, y=300, role="button", name="Sign in")]
    differs = infer(frames, [seen(HEADER, line("Components", 120, 294)), seen(HEADER)], other)[0]
    assert differs.target.name == "Components" and differs.source == "pointer+screen" and differs.confidence < 0.6


def test_a_change_nothing_explains_is_said_plainly() -> None:
    frames = [frame(0, 0, None), frame(1, 2000, box(600, 300, 40, 40))]
    found = infer(frames, [seen(HEADER), seen(HEADER)])
    assert found[0].action == "key" and found[0].confidence < 0.5 and found[0].target is None


# --------------------------------------------------------------------------- the dev recordings


def score_module(recordings: Path):  # noqa: ANN201 - the fixture's own scorer
    spec = importlib.util.spec_from_file_location("score_actions", recordings / "score_actions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.parametrize("name,floor", [("todomvc_basic_1280_vp9.webm", 0.9), ("todomvc_hires_1920_h264.mp4", 0.8),
                                       ("todomvc_edit_1280_h264.mp4", 0.85), ("todomvc_browser_1280_vp9.webm", 1.0)])
def test_steps_name_what_the_user_did_on_real_recordings(recordings: Path, name: str, floor: float) -> None:
    key_frames, _, _ = extract(recordings / name)
    analyses = Vision(LocalProvider()).analyze(key_frames).analyses
    found = infer(key_frames, analyses)
    result = score_module(recordings).score(name, {"steps": [s.to_json() for s in found]})
    assert result["named_rate"] >= floor, result["rows"]
    assert [s.timestamp for s in found] == sorted(s.timestamp for s in found)
    assert all(s.frame_index is not None and 0 < s.frame_index < len(key_frames) for s in found)


def said(ms: int, action: str, description: str, target: StepTarget | None = None, value: str | None = None,
         frame_index: int | None = None) -> Step:
    return Step(index=0, timestamp=ms, end_timestamp=ms, action=action, target=target, value=value,
                description=description, confidence=0.9, source="anthropic:claude-test", frame_index=frame_index)


def test_a_vision_models_steps_join_the_inferred_ones() -> None:
    frames = [frame(0, 0, None), frame(1, 2000, box(600, 300, 40, 40)), frame(2, 4000, box(400, 150, 90, 24),
                                                                          caret=box(402, 150, 2, 20), caret_ms=3500)]
    found = infer(frames, [seen(HEADER), seen(HEADER), seen(HEADER, line("milk", 405, 154))])
    assert found[0].confidence < 0.5 and found[1].confidence >= 0.5
    proposed = [said(1900, "key", "Pressed the space bar to start the game.", value="Space"),
                said(3900, "type", "Typed something.", value="mlk"),
                said(9000, "click", "Closed the dialog.", StepTarget(role="button", name="Close"), frame_index=2)]
    merged = merge_steps(found, proposed)
    assert [s.index for s in merged] == [1, 2, 3]
    # unsure here: the model's action, value and sentence replace the inference
    assert (merged[0].action, merged[0].value, merged[0].description) == ("key", "Space",
                                                                        "Pressed the space bar to start the game.")
    assert merged[0].source == found[0].source + "+anthropic:claude-test" and merged[0].confidence <= 0.8
    # sure here: kept, the model only confirms it
    assert merged[1].action == "type" and merged[1].value == "milk" and merged[1].description == found[1].description
    # seen only by the model: a step of its own, its confidence capped
    assert (merged[2].action, merged[2].timestamp, merged[2].target, merged[2].frame_index) == (
        "click", 9000, StepTarget(role="button", name="Close"), 2)
    assert merged[2].confidence == 0.7


def test_the_element_the_page_confirmed_outranks_the_models_name() -> None:
    confirmed = Step(index=1, timestamp=2000, end_timestamp=2000, action="click",
                     target=StepTarget(role="link", name="Components"), description='Clicked the link "Components".',
                     confidence=0.4, source="pointer+page", frame_index=1)
    merged = merge_steps([confirmed], [said(2100, "click", "Clicked Compnents.", StepTarget(role="button",
                                                                                             name="Compnents"))])
    assert len(merged) == 1 and merged[0].target == StepTarget(role="link", name="Components")
    assert merged[0].description == 'Clicked the link "Components".' and merged[0].source == "pointer+page+anthropic:claude-test"
