"""The service's own web page, driven end to end in a real Chromium against the real service.

Screenshots of every view go to ``test-results/web/`` for a reviewer to look at.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from conftest import REPO, PageServer, RunningService, free_port, upload
from fake_tasks import FakeTasks
from recorder import chromium_path

SHOTS = REPO / "test-results" / "web"
KEY = "page-test-key"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def open_service(start_service: Callable[..., RunningService]) -> RunningService:
    return start_service(SCOPE_ALLOW_PRIVATE_URLS="1")


@pytest.fixture(scope="module")
def locked_service(start_service: Callable[..., RunningService]) -> RunningService:
    return start_service(SCOPE_ALLOW_PRIVATE_URLS="1", SCOPE_API_KEYS=f"dana:{KEY}")


def new_page(browser: Browser, service: RunningService, width: int = 1280, height: int = 720) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=service.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=service.url)
    page = context.new_page()
    page.set_default_timeout(30_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.problems = problems  # type: ignore[attr-defined]
    return page


def no_horizontal_scroll(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_upload_watch_read_copy_switch_rename_delete(browser: Browser, open_service: RunningService,
                                                     small_video: Path, pages: PageServer) -> None:
    page = new_page(browser, open_service)
    response = page.goto("/")
    assert response is not None and response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp
    expect(page.get_by_role("heading", name="New recording")).to_be_visible()
    page.screenshot(path=str(SHOTS / "home-empty.png"), full_page=True)

    page.get_by_label("Screen recording").set_input_files(str(small_video))
    page.get_by_label("Title").fill("Saving a todo does nothing")
    page.get_by_label("URL where the flow starts").fill(pages.url + "/")
    page.get_by_label("Notes").fill("Typing a todo and pressing Enter does nothing.")
    page.get_by_label("Coding agent").select_option("CLAUDE_CODE")
    page.evaluate("""() => { window.seen = [];
        for (const id of ['upload-label', 'process-label']) new MutationObserver(() => window.seen.push(
            document.getElementById(id).textContent)).observe(document.getElementById(id), {childList: true}); }""")
    page.get_by_role("button", name="Upload and process").click()
    page.wait_for_url(re.compile(r"#/sessions/sess_[A-Z0-9]{8}$"), timeout=120_000)
    session_id = page.url.rsplit("/", 1)[-1]
    session = requests.get(f"{open_service.url}/sessions/{session_id}", timeout=30).json()
    assert session["status"] == "complete" and session["title"] == "Saving a todo does nothing"
    seen = page.evaluate("window.seen")  # bytes sent, then the phases as the status route reported them
    assert any(re.fullmatch(r"Uploading: \d+ %", text) for text in seen) and "Uploaded" in seen, seen
    phases = [text for text in seen if text.startswith("Processing: ")]
    assert phases and phases[-1] == "Processing: complete (100 %)", seen
    assert all(re.fullmatch(r"Processing: (queued|decoding|reading frames|inspecting pages|writing prompt|complete)"
                            r" \(\d+ %\)", text) for text in phases), seen

    expect(page.get_by_role("heading", level=1)).to_have_text("Saving a todo does nothing")
    steps = page.locator("#step-list > li")
    expect(steps).to_have_count(len(session["steps"]))
    assert len(session["steps"]) >= 1
    thumbs = page.locator("#step-list img")
    for n in range(thumbs.count()):
        thumbs.nth(n).scroll_into_view_if_needed()
        expect(thumbs.nth(n)).to_have_js_property("complete", True)
        assert thumbs.nth(n).evaluate("img => img.naturalWidth") > 0
    viewer = page.locator("#viewer-image")
    expect(viewer).to_have_js_property("complete", True)
    assert viewer.evaluate("img => img.naturalWidth") == 640
    page.get_by_role("button", name="Next frame").click()
    second = session["frames"][1]
    expect(page.locator("#viewer-caption")).to_contain_text(f"Frame 2 of {len(session['frames'])}")
    if second["changedRegion"]:  # the box sits where the change is, scaled with the image
        expect(page.locator("#viewer-region")).to_be_visible()
        left = page.locator("#viewer-region").evaluate("e => e.style.left")
        assert left == f"{second['changedRegion']['x'] / 640 * 100}%"
    page.screenshot(path=str(SHOTS / "session.png"), full_page=True)

    prompt = page.locator("#prompt-text")
    expect(prompt).to_have_text(session["prompt"])
    page.get_by_role("button", name="Copy prompt").click()
    expect(page.locator("#copy-message")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == session["prompt"]

    page.get_by_role("tab", name="CODEX").click()
    expect(page.get_by_role("tab", name="CODEX")).to_have_attribute("aria-selected", "true")
    codex = requests.get(f"{open_service.url}/sessions/{session_id}/prompt", timeout=30).text
    assert codex != session["prompt"] and "## Acceptance criteria" in codex
    expect(prompt).to_have_text(codex)
    page.get_by_role("tab", name="CODEX").press("ArrowRight")  # the keyboard moves between the tabs
    expect(page.get_by_role("tab", name="CURSOR")).to_be_focused()
    expect(page.get_by_role("tab", name="CURSOR")).to_have_attribute("aria-selected", "true")
    assert requests.get(f"{open_service.url}/sessions/{session_id}", timeout=30).json()["agentTarget"] == "CURSOR"

    page.get_by_label("Rename").fill("Enter does not save the todo")
    page.get_by_role("button", name="Save title").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Enter does not save the todo")
    assert requests.get(f"{open_service.url}/sessions/{session_id}", timeout=30).json()["title"] == \
        "Enter does not save the todo"

    page.get_by_role("link", name="All sessions").click()
    expect(page.get_by_role("link", name="Enter does not save the todo")).to_be_visible()
    page.screenshot(path=str(SHOTS / "home-list.png"), full_page=True)
    page.get_by_role("link", name="Enter does not save the todo").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete session").click()
    expect(page.get_by_role("heading", name="New recording")).to_be_visible()
    expect(page.get_by_text("No sessions yet.")).to_be_visible()
    assert requests.get(f"{open_service.url}/sessions/{session_id}", timeout=30).status_code == 404
    assert page.problems == []  # type: ignore[attr-defined]


def test_a_page_with_errors_shows_them_and_warnings(browser: Browser, open_service: RunningService,
                                                     small_video: Path, pages: PageServer) -> None:
    created = upload(open_service.url, small_video, seedUrl=pages.url + "/broken", title="Broken <b>page</b>")
    assert created.status_code == 200, created.text
    session_id = created.json()["sessionId"]
    page = new_page(browser, open_service)
    page.goto(f"/#/sessions/{session_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Broken <b>page</b>")  # text, never markup
    expect(page.locator("#page-list")).to_contain_text("boom from page")
    expect(page.locator("#page-list")).to_contain_text("Failed requests")
    page.screenshot(path=str(SHOTS / "session-page-errors.png"), full_page=True)
    page.once("dialog", lambda dialog: dialog.dismiss())  # a dismissed confirmation deletes nothing
    page.get_by_role("button", name="Delete session").click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert requests.get(f"{open_service.url}/sessions/{session_id}", timeout=30).status_code == 200
    page.goto("/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete Broken <b>page</b>").click()
    expect(page.get_by_text("No sessions yet.")).to_be_visible()
    assert requests.get(f"{open_service.url}/sessions/{session_id}", timeout=30).status_code == 404


def test_the_page_is_accessible_and_fits_a_phone(browser: Browser, open_service: RunningService) -> None:
    page = new_page(browser, open_service, 375, 740)
    page.goto("/")
    expect(page.get_by_role("heading", name="New recording")).to_be_visible()
    snapshot = page.locator("main").aria_snapshot()
    for expected in ('heading "New recording" [level=1]', 'textbox "Title"', 'textbox "URL where the flow starts"',
                     'textbox "Notes (optional)"', 'combobox "Coding agent"', 'button "Upload and process"',
                     'heading "Sessions" [level=2]'):
        assert expected in snapshot, snapshot
    unlabelled = page.evaluate("""[...document.querySelectorAll('input, select, textarea, button')]
        .filter(e => !e.closest('[hidden]') && !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                     && !e.textContent.trim()).map(e => e.id || e.outerHTML)""")
    assert unlabelled == []
    assert no_horizontal_scroll(page)
    page.screenshot(path=str(SHOTS / "home-phone.png"), full_page=True)
    page.keyboard.press("Tab")  # the first stop skips to the content
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("Title").focus()
    page.keyboard.type("Typed with the keyboard")
    page.keyboard.press("Tab")
    expect(page.get_by_label("URL where the flow starts")).to_be_focused()
    page.get_by_role("button", name="Upload and process").press("Enter")  # nothing picked: it says so
    expect(page.locator("#upload-message")).to_have_text("Pick a recording to upload.")


def test_with_auth_the_page_asks_for_the_key_once_and_never_loops(browser: Browser, locked_service: RunningService,
                                                                  small_video: Path, pages: PageServer) -> None:
    created = upload(locked_service.url, small_video, seedUrl=pages.url + "/",
                     headers={"Authorization": f"Bearer {KEY}"}, title="Behind a key")
    assert created.status_code == 200, created.text
    session_id = created.json()["sessionId"]
    page = new_page(browser, locked_service)
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    page.goto(f"/#/sessions/{session_id}")
    expect(page.get_by_role("heading", name="API key")).to_be_visible()
    expect(page.locator("#key-message")).to_have_text("")  # no key given yet: nothing was refused
    page.get_by_role("textbox", name="API key").fill("wrong-key")
    page.get_by_role("button", name="Use this key").click()
    expect(page.locator("#key-message")).to_contain_text("not accepted")
    page.screenshot(path=str(SHOTS / "key-refused.png"), full_page=True)
    page.wait_for_timeout(1500)  # give a reload loop the time to show itself
    assert len(loads) == 1
    page.get_by_role("textbox", name="API key").fill(KEY)
    page.get_by_role("button", name="Use this key").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Behind a key")
    expect(page.locator("#caller")).to_have_text("Signed in as dana")
    viewer = page.locator("#viewer-image")
    expect(viewer).to_have_js_property("complete", True)
    assert viewer.evaluate("img => img.naturalWidth") == 640  # loaded through its signed URL
    assert "signature=" in viewer.get_attribute("src")
    assert page.evaluate("sessionStorage.getItem('scope-key')") == KEY
    page.screenshot(path=str(SHOTS / "session-auth.png"), full_page=True)
    page.reload()  # the key is kept for the tab
    expect(page.get_by_role("heading", level=1)).to_have_text("Behind a key")
    page.get_by_role("link", name="All sessions").click()  # an upload through the page sends the key too
    page.get_by_label("Screen recording").set_input_files(str(small_video))
    page.get_by_label("Title").fill("Uploaded behind a key")
    page.get_by_label("URL where the flow starts").fill(pages.url + "/")
    page.get_by_role("button", name="Upload and process").click()
    page.wait_for_url(re.compile(r"#/sessions/sess_[A-Z0-9]{8}$"), timeout=120_000)
    expect(page.get_by_role("heading", level=1)).to_have_text("Uploaded behind a key")
    uploaded = page.url.rsplit("/", 1)[-1]
    owned = requests.get(f"{locked_service.url}/sessions/{uploaded}", headers={"Authorization": f"Bearer {KEY}"},
                         timeout=30)
    assert owned.status_code == 200 and owned.json()["status"] == "complete"
    page.get_by_role("link", name="All sessions").click()
    for title in ("Behind a key", "Uploaded behind a key"):  # the caller's sessions, both
        expect(page.get_by_role("link", name=title, exact=True)).to_be_visible()
    page.get_by_role("button", name="Forget key").click()
    expect(page.get_by_role("heading", name="API key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('scope-key')") is None
    for sid in (session_id, uploaded):
        assert requests.delete(f"{locked_service.url}/sessions/{sid}", headers={"Authorization": f"Bearer {KEY}"},
                               timeout=30).status_code == 204
    assert page.problems == [] or all("401" in p for p in page.problems)  # type: ignore[attr-defined]


def test_the_list_follows_a_recording_processed_in_the_background(browser: Browser, start_service: Callable[...,
                                                                   RunningService], small_video: Path,
                                                                   pages: PageServer, tmp_path: Path) -> None:
    """A session waiting in the task queue shows its phase; once processed, the list says so by itself."""
    tasks = FakeTasks()
    tasks.hold()
    try:
        port = free_port()
        service = start_service(port=port, **tasks.service_env(port, tmp_path / "data"))
        accepted = upload(service.url, small_video, headers={"Prefer": "respond-async"}, seedUrl=pages.url + "/",
                          title="Waiting in the queue")
        assert accepted.status_code == 202, accepted.text
        page = new_page(browser, service)
        loads: list[str] = []
        page.on("load", lambda p: loads.append(p.url))
        page.goto("/")
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Waiting in the queue"))
        expect(row.get_by_role("cell").nth(1)).to_have_text("queued (0 %)")
        page.screenshot(path=str(SHOTS / "home-queued.png"), full_page=True)
        tasks.release()
        expect(row.get_by_role("cell").nth(1)).to_have_text("complete", timeout=120_000)
        assert len(loads) == 1  # it looked again by itself, without reloading the page
        assert requests.delete(f"{service.url}/sessions/{accepted.json()['sessionId']}", timeout=30).status_code == 204
    finally:
        tasks.release()
        tasks.close()
