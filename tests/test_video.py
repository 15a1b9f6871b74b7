"""Videos are streamed to the encoder and written whole or not at all."""

import numpy as np
import pytest

from iltk.video import write_video


def _frames(n, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise RuntimeError("render failed")
        yield np.full((48, 64, 3), i * 20, np.uint8)


def test_frames_are_streamed_and_the_file_appears_whole(tmp_path):
    out = tmp_path / "v.mp4"
    assert write_video(out, _frames(6), fps=20) == out
    assert out.stat().st_size > 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_an_interrupted_render_leaves_the_old_video_and_no_temp(tmp_path):
    out = tmp_path / "v.mp4"
    write_video(out, _frames(3), fps=20)
    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="render failed"):
        write_video(out, _frames(6, fail_at=4), fps=20)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], fps=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
