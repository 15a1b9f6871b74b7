"""The layering of DESIGN.md: iltk/ runs where pygame is absent; `python -m iltk` works."""

import subprocess
import sys

from iltk.collect import collect_demos

NO_PYGAME = "import sys; sys.modules['pygame'] = None; "  # any `import pygame` now fails


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_headless_replay_video_needs_no_pygame(tmp_path):
    data = tmp_path / "reach.hdf5"
    collect_demos("iltk/Reach-v0", data, 1, progress=False)
    out = tmp_path / "replay.mp4"
    res = _run(
        NO_PYGAME + "from iltk.cli import main; "
        f"sys.exit(main(['replay', {str(data)!r}, '--video', {str(out)!r}]))"
    )
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 1000


def test_library_imports_without_pygame():
    res = _run(
        NO_PYGAME + "import iltk, iltk.cli, iltk.replay, iltk.evaluate, iltk.algos.dagger, "
        "iltk.algos.dart, iltk.collect, iltk.video; print('ok')"
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_python_dash_m_iltk():
    res = subprocess.run(
        [sys.executable, "-m", "iltk", "--version"], capture_output=True, text=True
    )
    assert res.returncode == 0 and res.stdout.startswith("iltk ")
