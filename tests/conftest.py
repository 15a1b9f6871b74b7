import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import pytest  # noqa: E402

REACH_DEMOS = 4
"""Episodes in the shared ``reach_demos`` file (seeds 0..3)."""


@pytest.fixture(scope="session")
def reach_demos(tmp_path_factory):
    """A small file of scripted Reach demonstrations (REACH_DEMOS episodes, seeds 0..),
    shared by the tests that only read it."""
    from iltk.collect import collect_demos

    path = tmp_path_factory.mktemp("reach") / "reach.hdf5"
    collect_demos("iltk/Reach-v0", path, REACH_DEMOS, progress=False)
    path.chmod(0o444)  # read only: a test that writes into it fails instead of leaking
    return path


@pytest.fixture(scope="session")
def reach_bc(tmp_path_factory, reach_demos):
    """A BC checkpoint folder trained briefly (50 steps) on ``reach_demos``: a policy
    to load, evaluate, replay and correct, not a good one."""
    from iltk.algos.supervised import TrainConfig, train

    out = tmp_path_factory.mktemp("reach_bc") / "run"
    train(TrainConfig(dataset=reach_demos, out=out, steps=50, eval_episodes=0, progress=False))
    return out / "last"
