"""The streaming multipart reader, byte sniffing and the contract's field rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from werkzeug.exceptions import ClientDisconnected

from function import upload
from function.upload import UploadError, read_multipart, sniff_video, validate

BOUNDARY = "XyZboundary"
CT = f"multipart/form-data; boundary={BOUNDARY}"


def body(parts: list[tuple[str, bytes, str | None]], close: bool = True) -> bytes:
    out = b""
    for name, data, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    if close:
        out += f"--{BOUNDARY}--\r\n".encode()
    return out



def _ebml(doctype: bytes) -> bytes:
    doc = b"\x42\x82" + bytes([0x80 | len(doctype)]) + doctype
    header = b"\x42\x86\x81\x01" + doc
    return b"\x1a\x45\xdf\xa3" + bytes([0x80 | len(header)]) + header + b"\x18\x53\x80\x67" + b"\x00" * 64


class TestSniff:
    def test_webm_and_matroska_by_doctype(self) -> None:
        assert sniff_video(_ebml(b"webm")) == "video/webm"
        assert sniff_video(_ebml(b"matroska")) == "video/x-matroska"

    def test_mp4_by_ftyp(self) -> None:
        assert sniff_video(b"\x00\x00\x00\x1cftypisom\x00\x00\x02\x00") == "video/mp4"

    def test_other_bytes_are_refused(self) -> None:
        assert sniff_video(b"GIF89a" + b"\x00" * 20) is None
        assert sniff_video(_ebml(b"notwebm")) is None
        assert sniff_video(b"\x1a\x45\xdf\xa3\xff") is None
        assert sniff_video(b"") is None

    def test_fixture_files(self, recordings: Path) -> None:
        expected = {".webm": "video/webm", ".mp4": "video/mp4", ".mkv": "video/x-matroska"}
        for path in recordings.iterdir():
            if path.suffix in expected:
                assert sniff_video(path.read_bytes()[:4096]) == expected[path.suffix], path.name


class TestMultipart:
    def test_fields_and_file_are_read(self, tmp_path: Path) -> None:
        video = _ebml(b"webm") + b"\x00" * 300_000
        raw = read_multipart(io.BytesIO(body([("title", b"Hello", None), ("file", video, "a.webm"),
                                               ("seedUrl", b"https://example.com/", None)])), CT, None, str(tmp_path))
        assert raw.texts == {"title": "Hello", "seedUrl": "https://example.com/"}
        assert raw.video_size == len(video)
        assert raw.video_path.read_bytes() == video
        assert raw.head == video[:4096]
        raw.discard()
        assert list(tmp_path.iterdir()) == []

    def test_file_over_limit_is_cut_off_while_streaming(self, tmp_path: Path) -> None:
        class Endless(io.RawIOBase):
            """A body that would never end: the reader must stop by itself."""

            def __init__(self) -> None:
                self.sent = 0
                self.head = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n".encode()

            def read(self, n: int = -1) -> bytes:
                chunk = self.head if self.sent == 0 else b"\x00" * n
                self.sent += len(chunk)
                return chunk

        stream = Endless()
        with pytest.raises(UploadError) as err:
            read_multipart(stream, CT, None, str(tmp_path), max_file_bytes=1_000_000)
        assert (err.value.status, err.value.code) == (413, "FILE_TOO_LARGE")
        assert stream.sent < 1_000_000 + 2 * upload.CHUNK + upload.MAX_BODY_OVERHEAD
        assert list(tmp_path.iterdir()) == []

    def test_declared_length_over_limit_is_refused_before_reading(self, tmp_path: Path) -> None:
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(b""), CT, 10**9, str(tmp_path))
        assert err.value.status == 413

    def test_not_multipart(self) -> None:
        for content_type in ("application/json", None, "multipart/form-data", "multipart/mixed; boundary=x"):
            with pytest.raises(UploadError) as err:
                read_multipart(io.BytesIO(b"{}"), content_type, 2)
            assert (err.value.status, err.value.code) == (415, "UNSUPPORTED_MEDIA_TYPE")

    def test_truncated_body(self, tmp_path: Path) -> None:
        data = body([("file", b"\x00" * 1000, "a.webm")], close=False)[:-10]
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(data), CT, None, str(tmp_path))
        assert err.value.status == 400
        assert list(tmp_path.iterdir()) == []

    def test_duplicate_fields_are_refused(self, tmp_path: Path) -> None:
        data = body([("title", b"a", None), ("title", b"b", None)])
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(data), CT, None, str(tmp_path))
        assert (err.value.code, err.value.field) == ("INVALID_FIELD", "title")

    def test_a_second_file_part_is_refused(self, tmp_path: Path) -> None:
        video = _ebml(b"webm") + b"\x00" * 1000
        data = body([("file", video, "a.webm"), ("file", video, "b.webm")])
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(data), CT, None, str(tmp_path))
        assert (err.value.code, err.value.field) == ("INVALID_FIELD", "file")
        assert list(tmp_path.iterdir()) == []

    def test_the_whole_body_is_capped_not_only_the_file(self, tmp_path: Path) -> None:
        """Parts the service skips still count: a huge unknown part without a Content-Length is cut off."""
        data = body([("padding", b"p" * (upload.MAX_BODY_OVERHEAD + 3 * upload.CHUNK), None),
                     ("file", _ebml(b"webm") + b"\x00" * 100, "a.webm")])
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(data), CT, None, str(tmp_path), max_file_bytes=1000)
        assert (err.value.status, err.value.code) == (413, "FILE_TOO_LARGE")
        assert list(tmp_path.iterdir()) == []

    def test_fields_split_across_many_reads_arrive_whole(self, tmp_path: Path) -> None:
        """A client that sends a few bytes at a time: every field and the file's head come out whole."""
        class Trickle(io.RawIOBase):
            def __init__(self, data: bytes) -> None:
                self.data = data

            def read(self, n: int = -1) -> bytes:
                piece, self.data = self.data[:7], self.data[7:]
                return piece

        video = _ebml(b"webm") + bytes(range(256)) * 40
        notes = "line one\nline two " * 20
        raw = read_multipart(Trickle(body([("title", b"Hello there", None), ("notes", notes.encode(), None),
                                           ("file", video, "a.webm")])), CT, None, str(tmp_path))
        assert raw.texts == {"title": "Hello there", "notes": notes}
        assert raw.head == video[: upload.SNIFF_BYTES] and raw.video_path.read_bytes() == video
        raw.discard()

    def test_the_limits_are_exact(self, tmp_path: Path) -> None:
        limit = 5000
        at_limit = _ebml(b"webm") + b"\x00" * (limit - len(_ebml(b"webm")))
        raw = read_multipart(io.BytesIO(body([("file", at_limit, "a.webm")])), CT, limit + upload.MAX_BODY_OVERHEAD,
                             str(tmp_path), max_file_bytes=limit)
        assert raw.video_size == limit
        raw.discard()
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(body([("file", at_limit + b"\x00", "a.webm")])), CT, None, str(tmp_path),
                           max_file_bytes=limit)
        assert (err.value.status, err.value.field) == (413, "file")
        with pytest.raises(UploadError) as err:  # a declared body one byte over the whole-body limit
            read_multipart(io.BytesIO(b""), CT, limit + upload.MAX_BODY_OVERHEAD + 1, str(tmp_path),
                           max_file_bytes=limit)
        assert (err.value.status, err.value.code, err.value.field) == (413, "FILE_TOO_LARGE", "file")
        title = b"t" * upload.MAX_TEXT_FIELD_BYTES
        assert read_multipart(io.BytesIO(body([("title", title, None)])), CT, None, str(tmp_path)).texts["title"]
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(body([("title", title + b"t", None)])), CT, None, str(tmp_path))
        assert (err.value.status, err.value.code, err.value.field) == (400, "INVALID_FIELD", "title")
        assert list(tmp_path.iterdir()) == []

    def test_a_file_sent_as_a_text_field_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(body([("file", b"not a file part", None)])), CT, None, str(tmp_path))
        assert (err.value.status, err.value.code, err.value.field) == (400, "INVALID_FIELD", "file")
        assert "file part" in err.value.message

    def test_a_body_without_its_closing_boundary_is_refused(self, tmp_path: Path) -> None:
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(body([("file", _ebml(b"webm"), "a.webm")], close=False)), CT, None,
                           str(tmp_path))
        assert (err.value.status, err.value.code) == (400, "INVALID_FIELD") and "malformed" in err.value.message
        assert list(tmp_path.iterdir()) == []

    def test_a_client_gone_mid_body_and_a_full_disk(self, tmp_path: Path) -> None:
        class Gone(io.RawIOBase):
            def __init__(self, error: Exception) -> None:
                self.sent, self.error = False, error

            def read(self, n: int = -1) -> bytes:
                if self.sent:
                    raise self.error
                self.sent = True
                return body([("file", _ebml(b"webm") + b"\x00" * 100, "a.webm")], close=False)[:-4]

        with pytest.raises(UploadError) as err:
            read_multipart(Gone(ClientDisconnected()), CT, None, str(tmp_path))
        assert (err.value.status, err.value.code) == (400, "INVALID_FIELD") and "ended" in err.value.message
        with pytest.raises(upload.DiskFull) as full:
            read_multipart(Gone(OSError(28, "No space left on device")), CT, None, str(tmp_path))
        assert full.value.errno == 28 and "temporary directory" in str(full.value)
        assert list(tmp_path.iterdir()) == []

    def test_a_stalled_body_is_a_408(self) -> None:
        stalled = upload.BodyStalled("the request body stalled")
        assert (stalled.status, stalled.code, stalled.message, stalled.field) == (
            408, "REQUEST_TIMEOUT", "the request body stalled", None)

    def test_huge_text_field_does_not_fill_memory(self, tmp_path: Path) -> None:
        data = body([("title", b"a" * 5_000_000, None)])
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(data), CT, None, str(tmp_path))
        assert (err.value.code, err.value.field) == ("INVALID_FIELD", "title")

    def test_huge_part_headers_are_refused(self, tmp_path: Path) -> None:
        head = f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"title\"\r\nX-Pad: ".encode()
        data = head + b"a" * (3 * 1024 * 1024) + b"\r\n\r\nx\r\n" + f"--{BOUNDARY}--\r\n".encode()
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(data), CT, None, str(tmp_path))
        assert err.value.status == 400 and "headers" in err.value.message

    def test_a_file_name_with_path_separators_is_never_used(self, tmp_path: Path) -> None:
        video = _ebml(b"webm") + b"\x00" * 1000
        raw = read_multipart(io.BytesIO(body([("file", video, "../../../etc/passwd")])), CT, None, str(tmp_path))
        assert raw.video_path.parent == tmp_path and raw.video_path.name.startswith("scope-upload-")
        raw.discard()

    def test_too_many_parts(self, tmp_path: Path) -> None:
        data = body([(f"x{i}", b"1", None) for i in range(upload.MAX_PARTS + 5)])
        with pytest.raises(UploadError) as err:
            read_multipart(io.BytesIO(data), CT, None, str(tmp_path))
        assert err.value.status == 400


def raw(**texts: str) -> upload.RawUpload:
    fields = {"title": "A title", "seedUrl": "https://example.com/app"}
    fields.update(texts)
    return upload.RawUpload(texts={k: v for k, v in fields.items() if v is not None},
                            video_path=Path("/nonexistent"), video_size=100, head=_ebml(b"webm"))


class TestRules:
    def test_valid(self) -> None:
        fields = validate(raw(notes="line one\nline two", agentTarget="CODEX", durationMs="1234"))
        assert (fields.title, fields.agent_target, fields.client_duration_ms, fields.mime_type) == (
            "A title", "CODEX", 1234, "video/webm")

    def test_defaults(self) -> None:
        fields = validate(raw())
        assert (fields.agent_target, fields.notes, fields.client_duration_ms) == ("CLAUDE_CODE", "", None)

    @pytest.mark.parametrize("name", ["title", "seedUrl"])
    def test_missing_or_blank(self, name: str) -> None:
        for value in (None, "", "   "):
            with pytest.raises(UploadError) as err:
                validate(raw(**{name: value}))
            assert (err.value.status, err.value.code, err.value.field) == (400, "MISSING_FIELD", name)

    def test_missing_or_empty_file(self) -> None:
        for upload_ in (upload.RawUpload(texts={"title": "t", "seedUrl": "https://a.b/"}),
                        upload.RawUpload(texts={"title": "t", "seedUrl": "https://a.b/"}, video_path=Path("/x"))):
            with pytest.raises(UploadError) as err:
                validate(upload_)
            assert (err.value.code, err.value.field) == ("MISSING_FIELD", "file")

    @pytest.mark.parametrize("name,value", [
        ("title", "x" * 501),
        ("title", "bad\x07bell"),
        ("title", "two\nlines"),
        ("title", "two\u2028lines"),  # Unicode's own line separator
        ("title", "safe\u202eexe.txt"),  # a right-to-left override: reads other than it is stored
        ("title", "c1\x85control"),
        ("title", "c1\x9bcsi"),  # a C1 control that is no line break
        ("notes", "colour \x9b31mred"),
        ("notes", "isolate \u2066hidden\u2069"),
        ("notes", "n" * 2001),
        ("notes", "nul\x00byte"),
        ("agentTarget", "GEMINI"),
        ("durationMs", "-5"),
        ("durationMs", "1.5"),
        ("durationMs", "١٢"),
        ("seedUrl", "ftp://example.com/"),
        ("seedUrl", "/relative/path"),
        ("seedUrl", "https://"),
        ("seedUrl", "https://example.com/" + "a" * 2048),
        ("seedUrl", "https://exa mple.com/"),
        ("seedUrl", "http://example.com:99999/"),
        ("seedUrl", "https://user:secret@example.com/"),
        ("seedUrl", "https://user@example.com/"),
    ])
    def test_broken_rules(self, name: str, value: str) -> None:
        with pytest.raises(UploadError) as err:
            validate(raw(**{name: value}))
        assert (err.value.status, err.value.code, err.value.field) == (400, "INVALID_FIELD", name)

    def test_unicode_line_separators_in_notes_are_line_breaks(self) -> None:
        assert validate(raw(notes="first\u2028second")).notes == "first\nsecond"

    def test_unusual_ports_and_international_names_are_valid(self) -> None:
        assert validate(raw(seedUrl="http://example.com:8443/x")).seed_url == "http://example.com:8443/x"
        assert validate(raw(seedUrl="https://bücher.example/")).seed_url == "https://bücher.example/"

    def test_limits_count_characters_not_bytes(self) -> None:
        assert validate(raw(title="😀" * 500)).title == "😀" * 500

    def test_bytes_decide_the_type(self) -> None:
        bad = raw()
        bad.head = b"RIFF\x00\x00\x00\x00AVI "
        with pytest.raises(UploadError) as err:
            validate(bad)
        assert (err.value.status, err.value.code) == (415, "UNSUPPORTED_MEDIA_TYPE")
