"""The local blob store: atomic writes, prefix deletion, safe keys, an unwritable root."""

from __future__ import annotations

from pathlib import Path

import pytest

from function.storage import LocalStore, ObjectNotFound, StorageUnavailable


def test_put_get_delete_prefix(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    source = tmp_path / "video.webm"
    source.write_bytes(b"v" * 3_000_000)
    store.put_file("sessions/sess_A/video.webm", source, "video/webm")
    store.put_bytes("sessions/sess_A/frames/frm_1.png", b"png", "image/png")
    store.put_bytes("sessions/sess_B/prompt.md", b"other", "text/markdown")
    assert store.get_bytes("sessions/sess_A/video.webm") == source.read_bytes()
    store.delete_prefix("sessions/sess_A/")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("sessions/sess_A/frames/frm_1.png")
    assert store.get_bytes("sessions/sess_B/prompt.md") == b"other"
    assert not any(p.name.startswith(".part-") for p in (tmp_path / "objects").rglob("*"))


@pytest.mark.parametrize("key", ["../escape", "/abs", "sessions//x", "sessions/./x", ""])
def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        LocalStore(tmp_path).put_bytes(key, b"x", "text/plain")


def test_unwritable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = LocalStore(blocker / "objects")
    with pytest.raises(StorageUnavailable):
        store.put_bytes("sessions/s/prompt.md", b"x", "text/markdown")
    with pytest.raises(StorageUnavailable):
        store.check()
