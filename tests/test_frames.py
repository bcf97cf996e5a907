"""The key-frame extractor on generated videos with known changes and on the real recordings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import REPO, ui_frames, write_video
from function.frames import Limits, VideoError, extract


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
    assert (info.width, info.height) == (640, 360) and info.frames_decoded == 40 and warnings == []
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
    assert len(frames) == 1 and info.frames_decoded == 1


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


@pytest.mark.parametrize("video", ["todomvc_quick_1280_h264.mkv", "todomvc_basic_1280_mediarecorder.webm"])
def test_real_recordings_changes_are_caught_and_idle_is_quiet(recordings: Path, video: str, tmp_path: Path) -> None:
    frames, info, _ = extract(recordings / video, encode_images=False)
    result = score(recordings, Path(video).stem, [f.timestamp for f in frames], tmp_path)
    assert result["recall"] >= 0.9, result
    assert result["fp_in_nochange"] == 0, result
    assert info.width == 1280 and info.last_frame_ms > 20_000


def test_command_line_prints_frames_as_json(recordings: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "function.frames", str(recordings / "todomvc_quick_1280_h264.mkv")],
                         capture_output=True, text=True, cwd=REPO, check=True)
    body = json.loads(out.stdout)
    assert len(body["frames"]) >= 8
    assert {"timestamp", "changeScore", "changedRegion"} <= set(body["frames"][1])
