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
from typing import BinaryIO, Callable, Protocol

from .config import Config


class StorageUnavailable(RuntimeError):
    """The store cannot be reached or written: the request fails with 503."""


class ObjectNotFound(KeyError):
    pass


class BlobStore(Protocol):
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    def put_file(self, key: str, path: Path, content_type: str) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def get_file(self, key: str, path: Path) -> None:
        """Copy an object into the file ``path`` (a video: never whole in memory)."""

    def delete_prefix(self, prefix: str) -> None: ...

    def check(self) -> None:
        """Raise StorageUnavailable when the store cannot take writes."""


def _safe_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in {"", ".", ".."} for p in parts):
        raise ValueError(f"bad object key {key!r}")
    return key


def write_atomically(target: Path, writer: Callable[[BinaryIO], object]) -> None:
    """Write ``target`` through a temporary file and a rename: readers never see half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            writer(out)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_new(target: Path, data: bytes) -> bool:
    """Write ``target`` whole unless it exists (``False`` then); a hard link makes the check and the
    write one step, so two writers, even in two processes, cannot both succeed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.link(tmp, target)
        return True
    except FileExistsError:
        return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def check_writable(root: Path) -> None:
    """Raise OSError unless files can be created below ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=root):
        pass


class LocalStore:
    """Objects as files below ``root``; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / _safe_key(key)

    def _write(self, key: str, writer: Callable[[BinaryIO], object]) -> None:
        try:
            write_atomically(self._path(key), writer)
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

    def get_file(self, key: str, path: Path) -> None:
        try:
            shutil.copyfile(self._path(key), path)
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
            check_writable(self.root)
        except OSError as exc:
            raise StorageUnavailable(f"local store at {self.root} is not writable") from exc


class GcsStore:
    """Objects in a Cloud Storage bucket, through google-cloud-storage.

    Transient failures (429, 5xx, connection resets) are retried with backoff by the
    client's own retry policy, bounded by ``retry_s``; what still fails becomes
    ``StorageUnavailable`` (503). Large files upload resumably, in chunks.
    """

    CHUNK = 8 * 1024 * 1024  # resumable-upload chunk for the video

    def __init__(self, bucket: str, project: str | None = None, retry_s: float = 30.0, emulated: bool = False) -> None:
        from google.api_core import exceptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        from google.cloud.storage.retry import DEFAULT_RETRY

        # The client finds an emulator through STORAGE_EMULATOR_HOST itself; it only needs no credentials.
        self._client = storage.Client(project=project or "local-emulator", credentials=AnonymousCredentials()) \
            if emulated else storage.Client(project=project)
        self._bucket = self._client.bucket(bucket)
        self._retry = DEFAULT_RETRY.with_deadline(retry_s)
        self._timeout = (5, 60)
        self._errors = (exceptions.GoogleAPIError, OSError, ValueError)
        self._not_found = exceptions.NotFound
        try:
            import requests

            self._errors = self._errors + (requests.RequestException,)
        except ImportError:  # pragma: no cover - requests comes with google-cloud-storage
            pass

    def _call(self, what: str, fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        try:
            return fn(*args, retry=self._retry, timeout=self._timeout, **kwargs)
        except self._not_found as exc:
            raise ObjectNotFound(what) from exc
        except self._errors as exc:
            raise StorageUnavailable(f"cloud storage: {type(exc).__name__} on {what}") from exc

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        blob = self._bucket.blob(_safe_key(key))
        self._call(key, blob.upload_from_string, data, content_type=content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> None:
        blob = self._bucket.blob(_safe_key(key), chunk_size=self.CHUNK)
        self._call(key, blob.upload_from_filename, str(path), content_type=content_type)

    def get_bytes(self, key: str) -> bytes:
        return self._call(key, self._bucket.blob(_safe_key(key)).download_as_bytes)

    def get_file(self, key: str, path: Path) -> None:
        blob = self._bucket.blob(_safe_key(key), chunk_size=self.CHUNK)
        self._call(key, blob.download_to_filename, str(path))

    def delete_prefix(self, prefix: str) -> None:
        blobs = self._call(prefix, lambda **kw: list(self._client.list_blobs(self._bucket, prefix=prefix, **kw)))
        for blob in blobs:
            try:
                self._call(blob.name, blob.delete)
            except ObjectNotFound:
                pass  # already gone: what a retry after a partial delete finds

    def check(self) -> None:
        self._call("the bucket", lambda **kw: list(self._client.list_blobs(self._bucket, max_results=1, **kw)))


def open_store(config: Config) -> BlobStore:
    """The store the configuration names: local disk, or the Cloud Storage bucket."""
    if config.storage == "gcs":
        return GcsStore(config.bucket or "", config.gcp_project, config.store_retry_s, config.storage_emulated)
    return LocalStore(config.data_dir / "objects")
