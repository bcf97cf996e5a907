"""The key-frame extractor on generated videos with known changes and on the real recordings."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, ui_frames, write_video
from function.frames import Limits, VideoError, extract
from function.frames.detect import MAX_SETTLE_MS
from function.frames.regions import changed_boxes


def test_one_frame_per_change_after_it_settles(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.webm", ui_frames([1.0, 2.5], seconds=4.0))
    frames, info, warnings = extract(video)
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].timestamp == 0 and frames[0].change_score == 1.0 and frames[0].changed_region is None
    assert 1000 <= frames[1].timestamp <= 1800
    assert 2500 <= frames[2].timestamp <= 3300
    region = frames[2].changed_region
    assert region is not None and region.y <= 130 <= region.y + region.height  # the second item's row
    assert 0 < frames[1].change_score < 1
    assert (info.width, info.height) == (640, 360) and info.frames_read == 40 and warnings == []
    image = cv2.imdecode(np.frombuffer(frames[2].png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)  # full resolution, lossless PNG


def test_pointer_motion_and_a_blinking_caret_make_no_frames(tmp_path: Path) -> None:
    frames = []
    for n in range(50):
        img = ui_frames([], seconds=0.1)[0]
        x = 100 + n * 8
        cv2.fillConvexPoly(img, np.array([[x, 200], [x, 219], [x + 12, 214]]), (0, 0, 0))  # a pointer
        if (n // 5) % 2:
            cv2.line(img, (500, 300), (500, 318), (0, 0, 0), 1)  # a caret blinking twice a second
        frames.append(img)
    key_frames, _, _ = extract(write_video(tmp_path / "p.mp4", frames))
    assert len(key_frames) == 1


def test_black_and_single_frame_videos(tmp_path: Path) -> None:
    black = write_video(tmp_path / "black.mkv", [np.zeros((240, 320, 3), np.uint8)] * 20)
    assert len(extract(black)[0]) == 1
    single = write_video(tmp_path / "one.webm", [np.full((240, 320, 3), 128, np.uint8)])
    frames, info, _ = extract(single)
    assert len(frames) == 1 and info.frames_read == 1


def test_limits_are_checked_before_decoding(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.webm", ui_frames([1.0], seconds=2.0))
    with pytest.raises(VideoError, match="pixels"):
        extract(video, Limits(max_pixels=320 * 240))
    with pytest.raises(VideoError, match="limit"):
        extract(video, Limits(max_seconds=1.0))
    frames, _, warnings = extract(write_video(tmp_path / "w.webm", ui_frames([0.5, 1.5, 2.5])), Limits(max_frames=2))
    assert len(frames) == 2 and "limit of 2 key frames" in warnings[0]


def test_undecodable_bytes(tmp_path: Path) -> None:
    junk = tmp_path / "junk.webm"
    junk.write_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 5000)
    with pytest.raises(VideoError):
        extract(junk)


def score(recordings: Path, video: str, timestamps: list[int], tmp_path: Path) -> dict:
    frames_file = tmp_path / "frames.json"
    frames_file.write_text(json.dumps(timestamps))
    out = subprocess.run([sys.executable, str(recordings / "score.py"), str(recordings / f"{video}.json"),
                          str(frames_file)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


FIXTURE_VIDEOS = ["todomvc_basic_1280_mediarecorder.webm", "todomvc_basic_1280_vp9.webm",
                  "todomvc_browser_1280_vp9.webm", "todomvc_edit_1280_h264.mp4", "todomvc_hires_1920_h264.mp4",
                  "todomvc_long_1280_vp8.webm", "todomvc_quick_1280_h264.mkv"]


@pytest.fixture(scope="module")
def fixture_scores(recordings: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    scores = {}
    for video in FIXTURE_VIDEOS:
        frames, _, _ = extract(recordings / video, encode_images=False)
        scores[video] = score(recordings, Path(video).stem, [f.timestamp for f in frames],
                              tmp_path_factory.mktemp("score"))
    return scores


@pytest.mark.parametrize("video", FIXTURE_VIDEOS)
def test_every_fixture_change_is_caught_and_idle_is_quiet(fixture_scores: dict, video: str) -> None:
    result = fixture_scores[video]
    assert result["recall"] >= 0.95, result
    assert result["fp_in_nochange"] == 0, result


def test_fixture_set_quality_floor(fixture_scores: dict) -> None:
    f1 = [r["f1"] for r in fixture_scores.values()]
    recall = [r["recall"] for r in fixture_scores.values()]
    assert sum(f1) / len(f1) >= 0.95 and sum(recall) / len(recall) >= 0.95, fixture_scores


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.mark.parametrize("name,args", [
    ("quick_1440.mp4", ["-vf", "scale=2560:1440:flags=bicubic", "-c:v", "libx264", "-preset", "ultrafast",
                        "-crf", "23"]),
    # libvpx's realtime mode is not deterministic (it drops quality when the machine is busy): good
    # mode on one thread gives the same frames every time. (At 250k with -cpu-used ≥ 5 three quality
    # pulses in still stretches pass for changes: a known weakness, see BENCHMARKS.)
    ("quick_vp8_lowq_keyjumps.webm", ["-c:v", "libvpx", "-b:v", "400k", "-g", "45", "-deadline", "good",
                                      "-cpu-used", "5", "-threads", "1"]),
    ("quick_1366_25fps.mkv", ["-vf", "scale=1366:768", "-r", "25", "-c:v", "libx264", "-preset", "ultrafast",
                              "-crf", "30", "-pix_fmt", "yuv420p"]),
    # B-frames at a rate the 100 ms grid does not divide: sampled on the grid, the rest skipped
    ("quick_25fps_bframes.mp4", ["-r", "25", "-c:v", "libx264", "-preset", "veryfast", "-bf", "3", "-crf", "28",
                                 "-pix_fmt", "yuv420p"]),
])
def test_same_defaults_generalise_to_other_sizes_and_codecs(recordings: Path, tmp_path: Path, name: str,
                                                            args: list[str]) -> None:
    """The fixture re-encoded at other resolutions, frame rates and qualities scores the same."""
    target = tmp_path / name
    ffmpeg("-i", str(recordings / "todomvc_quick_1280_h264.mkv"), *args, str(target))
    frames, _, _ = extract(target, encode_images=False)
    result = score(recordings, "todomvc_quick_1280_h264", [f.timestamp for f in frames], tmp_path)
    assert result["recall"] >= 0.95 and result["fp_in_nochange"] == 0, result


def test_corrupt_tail_keeps_what_decoded(recordings: Path, tmp_path: Path) -> None:
    data = (recordings / "todomvc_long_1280_vp8.webm").read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: len(data) * 6 // 10] + b"\x00\xff" * 5000)
    frames, info, warnings = extract(cut, encode_images=False)
    assert len(frames) >= 3 and 10_000 < info.last_frame_ms < 31_000
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((recordings / "todomvc_edit_1280_h264.mp4").read_bytes()[:150_000])
    frames, info, warnings = extract(truncated, encode_images=False)
    assert frames and warnings, "a file cut short says so"


def test_rotation_metadata_is_applied(recordings: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(recordings / "todomvc_quick_1280_h264.mkv"), "-t", "3", "-c", "copy",
           "-metadata:s:v:0", "rotate=90", str(rotated))
    frames, info, _ = extract(rotated)
    assert (info.width, info.height) == (720, 1280)
    image = cv2.imdecode(np.frombuffer(frames[0].png, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[:2] == (1280, 720)


def test_variable_frame_rate_and_odd_size(tmp_path: Path) -> None:
    """Frames at irregular times and an odd size: times come from the stream, not from a frame rate."""
    source = write_video(tmp_path / "v.mkv", ui_frames([1.0, 2.5], seconds=4.0))
    vfr = tmp_path / "vfr.mkv"
    ffmpeg("-i", str(source), "-vf", "scale=641:359,setpts='PTS+0.5*gte(T,2)/TB'", "-vsync", "vfr", "-c:v", "libx264",
           "-preset", "ultrafast", "-pix_fmt", "yuv444p", str(vfr))
    frames, info, _ = extract(vfr, encode_images=False)
    assert (info.width, info.height) == (641, 359)
    assert len(frames) == 3 and 1000 <= frames[1].timestamp <= 1800 and 3000 <= frames[2].timestamp <= 3800


def test_ten_hour_stream_is_refused_before_decoding(tmp_path: Path) -> None:
    long_video = tmp_path / "long.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=64x64:r=1/600", "-t", "36000", "-c:v", "libx264",
           "-preset", "ultrafast", str(long_video))
    with pytest.raises(VideoError, match="limit"):
        extract(long_video, Limits(max_seconds=900))


def test_command_line_prints_frames_as_json(recordings: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "function.frames", str(recordings / "todomvc_quick_1280_h264.mkv")],
                         capture_output=True, text=True, cwd=REPO, check=True)
    body = json.loads(out.stdout)
    assert len(body["frames"]) >= 8
    assert {"timestamp", "changeScore", "changedRegion"} <= set(body["frames"][1])


def test_decoding_stops_when_the_caller_gives_up(recordings: Path) -> None:
    from function.frames import Cancelled

    asked = []

    def cancelled() -> bool:
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(Cancelled):
        extract(recordings / "todomvc_long_1280_vp8.webm", encode_images=False, cancelled=cancelled)
    assert len(asked) == 3


def test_the_decoder_works_on_eight_1080p_frames_at_once_and_fewer_larger_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    decoding = importlib.import_module("function.frames.decode")  # the package's ``decode`` is the function

    monkeypatch.setattr(decoding.os, "cpu_count", lambda: 2)  # FFmpeg's own count: 3
    assert decoding.decoder_threads(1920, 1080) == 8
    assert decoding.decoder_threads(1280, 720) == 8
    assert decoding.decoder_threads(2560, 1440) == 4
    assert decoding.decoder_threads(3840, 2160) == 3, "4K keeps FFmpeg's count"
    assert decoding.decoder_threads(0, 0) == 3, "an unknown size keeps FFmpeg's count"
    monkeypatch.setattr(decoding.os, "cpu_count", lambda: 32)
    assert decoding.decoder_threads(1920, 1080) == 16, "never fewer than FFmpeg would use"


@pytest.mark.parametrize("video", ["todomvc_hires_1920_h264.mp4", "todomvc_basic_1280_vp9.webm"])
def test_more_decoder_threads_decode_the_same_frames(recordings: Path, monkeypatch: pytest.MonkeyPatch,
                                                     video: str) -> None:
    """Frame threads change when frames are ready, never what is in them: the key frames are bit for bit
    those of a single-threaded decoder."""
    decoding = importlib.import_module("function.frames.decode")  # the package's ``decode`` is the function

    asked: list[tuple[int, int]] = []
    threads = decoding.decoder_threads

    def counted(width: int, height: int) -> int:
        asked.append((width, height))
        return threads(width, height)

    monkeypatch.setattr(decoding, "decoder_threads", counted)
    threaded, info, _ = extract(recordings / video)
    assert (info.width, info.height) in asked and threads(info.width, info.height) >= 8
    monkeypatch.setattr(decoding, "decoder_threads", lambda width, height: 1)
    single, _, _ = extract(recordings / video)
    assert [(f.timestamp, f.png) for f in threaded] == [(f.timestamp, f.png) for f in single]


def test_frames_no_sample_needs_are_not_decoded_and_nothing_changes(recordings: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording with B-frames: frames that no other frame refers to are decoded only where the
    sampling grid takes one, a third of all here; the key frames, their PNGs and the pointer's
    track are bit for bit those of decoding every frame."""
    decoding = importlib.import_module("function.frames.decode")
    video = recordings / "todomvc_quick_1280_h264.mkv"
    assert decoding.probe(video).reorders
    decoded = list(decoding.decode(video, grid_ms=100.0))
    assert len(decoded) < 0.8 * decoded[-1].read
    skipping, info, warnings = extract(video)
    monkeypatch.setattr(decoding, "_on_grid", lambda *args: True)  # every frame decoded
    every, every_info, every_warnings = extract(video)
    assert [(f.timestamp, f.png, f.pointer_path) for f in skipping] == \
        [(f.timestamp, f.png, f.pointer_path) for f in every]
    assert (info, warnings) == (every_info, every_warnings) and info.frames_read == decoded[-1].read


@pytest.mark.parametrize("font_scale", [0.35, 0.4])  # about 9 and 11 px tall digits
def test_a_digit_changing_in_small_text_is_a_change(tmp_path: Path, font_scale: float) -> None:
    """A price going from 10 to 17 in small text is too small to move SSIM; it is still a UI change."""
    frames = []
    for n in range(40):
        image = np.full((720, 1280, 3), 250, np.uint8)
        for row in range(6):
            cv2.putText(image, f"Item {row}   price", (200, 150 + row * 40), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                        (40, 40, 40), 1)
        cv2.putText(image, f"Total: {'10' if n < 20 else '17'} EUR", (900, 150), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, (40, 40, 40), 1)
        frames.append(image)
    key_frames, _, _ = extract(write_video(tmp_path / "price.mkv", frames), encode_images=False)
    assert [f.timestamp for f in key_frames] == [0, 2300]
    region = key_frames[1].changed_region
    assert region is not None and 900 <= region.x <= 1000 and region.width <= 24 and 130 <= region.y <= 150


def test_isolated_changed_pixels_are_noise_not_a_change() -> None:
    """Scattered single pixels (sensor noise, dithering) swing hard but touch no other changed pixel."""
    rng = np.random.default_rng(3)
    reference = np.full((360, 640), 245, np.uint8)
    cv2.putText(reference, "Demo app text here", (20, 100), cv2.FONT_HERSHEY_SIMPLEX, 1, 0, 2)
    chosen = np.zeros_like(reference)
    chosen[rng.integers(0, 360, 1500), rng.integers(0, 640, 1500)] = 1
    isolated = (chosen == 1) & (cv2.boxFilter(chosen, -1, (3, 3), normalize=False) == 1)
    noisy = reference.copy()
    noisy[isolated] = 40
    assert isolated.sum() > 1000 and changed_boxes(reference, noisy) == []
    word = reference.copy()
    cv2.putText(word, "new", (300, 200), cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0, 1)
    assert len(changed_boxes(reference, word)) == 1  # touching pixels: a change


def test_a_recorders_blank_first_frame_gives_way_to_the_first_screen(tmp_path: Path) -> None:
    frames = [np.zeros((360, 640, 3), np.uint8)] * 3 + ui_frames([2.0], seconds=3.5)
    key_frames, _, _ = extract(write_video(tmp_path / "blank.mkv", frames))
    first = cv2.imdecode(np.frombuffer(key_frames[0].png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert first.mean() > 150 and key_frames[0].timestamp == 300  # the first screen, when it came
    assert len(key_frames) == 2 and 2300 <= key_frames[1].timestamp <= 3200


def test_a_change_that_never_settles_is_captured_on_the_way(tmp_path: Path) -> None:
    """A screen that changes at every sample for 8 s (a running counter, a long animation): a frame every
    MAX_SETTLE_MS or so, not one at the end."""
    frames = []
    for n in range(100):  # 10 s at 10 fps: the counter runs until 8 s, then stops
        image = ui_frames([], seconds=0.1)[0]
        cv2.putText(image, f"Elapsed {min(n, 80) * 7919 % 100000:05d} ms", (40, 220), cv2.FONT_HERSHEY_SIMPLEX, 1.6,
                    (0, 0, 0), 3)
        frames.append(image)
    key_frames, _, _ = extract(write_video(tmp_path / "counter.mkv", frames))
    during = [f.timestamp for f in key_frames[1:] if f.timestamp < 8000]
    assert len(during) >= 2, [f.timestamp for f in key_frames]
    assert all(later - earlier <= MAX_SETTLE_MS + 600 for earlier, later in zip(during, during[1:]))


def test_a_thin_bar_that_appears_and_stays_is_a_change_not_a_caret(tmp_path: Path) -> None:
    """A caret blinks; a divider or a progress mark that appears and stays is a UI change."""
    frames = []
    for n in range(50):  # 5 s: the bar appears at 1.0 s and stays; a caret blinks elsewhere all along
        image = ui_frames([], seconds=0.1)[0]
        if n >= 10:
            cv2.rectangle(image, (400, 200), (401, 229), (0, 0, 0), -1)
        if (n // 5) % 2:
            cv2.line(image, (200, 300), (200, 318), (0, 0, 0), 1)
        frames.append(image)
    key_frames, _, _ = extract(write_video(tmp_path / "bar.mkv", frames))
    assert len(key_frames) == 2, [(f.timestamp, f.changed_region) for f in key_frames]
    region = key_frames[1].changed_region
    assert region is not None and region.x <= 400 <= region.x + region.width and region.y <= 215 <= region.y + region.height
    assert 1000 <= key_frames[1].timestamp <= 3500


def test_ssim_is_wang_et_al_formula_with_a_gaussian_window() -> None:
    """The SSIM map, computed in place to spare the allocator, is exactly the formula as written:
    ((2 μa μb + C1)(2 σab + C2)) / ((μa² + μb² + C1)(σa² + σb² + C2)), Gaussian window σ = 1.5."""
    from function.frames.regions import ssim, ssim_map

    def textbook(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = a.astype(np.float32), b.astype(np.float32)
        blur = lambda image: cv2.GaussianBlur(image, (11, 11), 1.5)  # noqa: E731
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b, cov = blur(a * a) - mu_a * mu_a, blur(b * b) - mu_b * mu_b, blur(a * b) - mu_a * mu_b
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))

    rng = np.random.default_rng(11)
    for height, width in ((540, 960), (13, 31)):
        a = rng.integers(0, 256, (height, width), dtype=np.uint8)
        b = a.copy()
        b[: height // 2, : width // 3] = rng.integers(0, 256, (height // 2, width // 3), dtype=np.uint8)
        given = a.copy(), b.copy()
        computed = ssim_map(a, b)
        assert np.array_equal(a, given[0]) and np.array_equal(b, given[1])  # the scratch arrays are its own
        assert computed.dtype == np.float32 and np.array_equal(computed, textbook(a, b))
        assert ssim(a, a) == pytest.approx(1.0) and ssim(a, b) < 0.9


def test_the_analysis_copy_halves_by_the_mean_of_each_two_by_two_block() -> None:
    """The extractor's analysis copy of a decoded frame: halved until its long edge fits, each halving
    the mean of every 2×2 block (what INTER_AREA gives; bilinear gives it faster at exactly half)."""
    import av

    from function.frames.decode import DecodedFrame
    from function.frames.detect import _Extractor

    def halved(image: np.ndarray) -> np.ndarray:
        height, width = image.shape
        blocks = image.reshape(height // 2, 2, width // 2, 2).astype(np.uint16).sum(axis=(1, 3))
        return ((blocks + 2) // 4).astype(np.uint8)

    rng = np.random.default_rng(7)
    for height, width, halvings in ((1080, 1920, 1), (2160, 3840, 2), (540, 960, 0)):
        image = rng.integers(0, 256, (height, width), dtype=np.uint8)
        expected = image
        for _ in range(halvings):
            expected = halved(expected)
        frame = av.VideoFrame.from_ndarray(image, format="gray")
        small = _Extractor(Limits(), encode_images=False).analysis_copy(DecodedFrame(0, frame))
        assert np.array_equal(small, expected), (height, width)


def test_a_failure_in_the_analysis_thread_reaches_the_caller(recordings: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The samples are judged on a thread of their own: what fails there is raised by ``extract``
    in the caller's thread, decoding stops early, and no analysis thread is left behind."""
    import threading

    from function.frames import detect

    judged: list[int] = []
    sample = detect._Extractor.sample

    def failing(self: detect._Extractor, item: detect.DecodedFrame) -> None:
        judged.append(item.ms)
        if len(judged) == 5:
            raise MemoryError("out of memory while judging")
        sample(self, item)

    handed: list[int] = []
    put = detect._Analysis.put

    def counted(self: detect._Analysis, item: detect.DecodedFrame) -> None:
        handed.append(item.ms)
        put(self, item)

    monkeypatch.setattr(detect._Extractor, "sample", failing)
    monkeypatch.setattr(detect._Analysis, "put", counted)
    with pytest.raises(MemoryError, match="while judging"):
        extract(recordings / "todomvc_long_1280_vp8.webm", encode_images=True)
    assert len(judged) == 5  # nothing judged after the failure
    assert len(handed) <= 5 + detect.QUEUED_SAMPLES + 1, len(handed)  # decoding stopped soon after it (of ~350)
    assert not [t for t in threading.enumerate() if t.name == "key-frames"]
