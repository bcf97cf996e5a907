"""The README and the docs pages: every link points at a file or a heading that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\- ]", "", text))


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for line in page.read_text().splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_points_at_something_that_exists(page: Path) -> None:
    links = LINK.findall(page.read_text())
    assert links or page.name != "README.md"
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue  # http(s) and mailto links are not checked offline
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name}: {link} points at no file"
        if anchor:
            assert anchor in anchors(target), f"{page.name}: {link} points at no heading"


def test_the_readme_fits_on_a_screen_or_two() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 160
