"""The local session store: owner scoping, newest-first paging, stats, deletion."""

from __future__ import annotations

from pathlib import Path

import pytest

from function.models import Session
from function.sessions import BadPageToken, LocalSessionStore, SessionsUnavailable


def make(n: int, owner: str = "alice", **kw) -> Session:
    return Session(id=f"sess_{n:08d}", owner_id=owner, title=f"t{n}", created_at=f"2026-11-29T10:00:{n:02d}.000Z",
                   **kw)


def test_put_get_and_owner_scope(tmp_path: Path) -> None:
    store = LocalSessionStore(tmp_path)
    store.put(make(1, prompt="p"))
    assert store.get("alice", "sess_00000001").prompt == "p"
    assert store.get("bob", "sess_00000001") is None
    assert store.get("alice", "sess_00000002") is None
    assert store.get("alice", "../../etc/passwd") is None


def test_create_never_overwrites(tmp_path: Path) -> None:
    store = LocalSessionStore(tmp_path)
    assert store.create(make(1, owner="bob"))
    assert not store.create(make(1, owner="alice"))
    assert store.get("bob", "sess_00000001") is not None and store.get("alice", "sess_00000001") is None
    assert [p.name for p in (tmp_path / "sessions").iterdir()] == ["sess_00000001.json"]  # no temporary left


def test_list_is_newest_first_and_pages(tmp_path: Path) -> None:
    store = LocalSessionStore(tmp_path)
    for n in range(7):
        store.put(make(n))
    store.put(make(50, owner="bob"))
    everything, token = store.list("alice", None, None)
    assert [s.id for s in everything] == [f"sess_{n:08d}" for n in range(6, -1, -1)] and token is None
    seen, token = [], None
    while True:
        page, token = store.list("alice", 3, token)
        seen += [s.id for s in page]
        if token is None:
            break
    assert seen == [s.id for s in everything]
    with pytest.raises(BadPageToken):
        store.list("alice", 3, "not-a-token")


def test_stats_and_delete(tmp_path: Path) -> None:
    store = LocalSessionStore(tmp_path)
    store.put(make(1, status="complete", duration=10, processing_time=1000))
    store.put(make(2, status="complete", duration=20, processing_time=3000))
    store.put(make(3, status="processing"))
    stats = store.stats("alice")
    assert (stats.total_sessions, stats.completed_sessions, stats.total_duration, stats.avg_processing_time) == (
        3, 2, 30, 2000)
    assert not store.delete("bob", "sess_00000001")
    assert store.delete("alice", "sess_00000001")
    assert store.get("alice", "sess_00000001") is None


def test_unwritable_root_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = LocalSessionStore(blocker / "records")
    with pytest.raises(SessionsUnavailable):
        store.put(make(1))
    with pytest.raises(SessionsUnavailable):
        store.check()
