"""Blob store for a session's objects: video, frame images, snapshots, the prompt.

One interface, ``BlobStore``; ``LocalStore`` keeps objects under a folder laid
out like the bucket (``sessions/{sessionId}/…``). ``open_store`` picks the
implementation from the configuration.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from .config import Config, ConfigError


class StorageUnavailable(RuntimeError):
    """The store cannot be reached or written: the request fails with 503."""


class ObjectNotFound(KeyError):
    pass


class BlobStore(Protocol):
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def check(self) -> None:
        """Raise StorageUnavailable when the store cannot take writes."""


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise ValueError(f"bad object key {key!r}")
    return key


class LocalStore:
    """Objects as files below ``root``; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def _write(self, key: str, writer) -> None:  # noqa: ANN001 - a callable taking a file object
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
            try:
                with os.fdopen(fd, "wb") as out:
                    writer(out)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StorageUnavailable(f"local store: {exc.strerror or exc}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        def copy(out) -> None:  # noqa: ANN001
            with open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)

        self._write(key, copy)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"local store: {exc.strerror or exc}") from exc

    def delete_prefix(self, prefix: str) -> None:
        target = self._path(prefix.rstrip("/"))
        try:
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"local store: {exc.strerror or exc}") from exc

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as exc:
            raise StorageUnavailable(f"local store at {self.root} is not writable") from exc


def open_store(config: Config) -> BlobStore:
    if config.storage == "local":
        return LocalStore(config.data_dir / "objects")
    raise ConfigError(f"SCOPE_STORAGE={config.storage} is not supported by this build")
