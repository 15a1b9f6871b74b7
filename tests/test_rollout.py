"""The one control loop: seeds, commands, pacing, and episodes that span calls (Rollout)."""

import numpy as np
import pytest

import iltk.rollout as rollout_module
from iltk.controllers import DartNoise, ExpertController
from iltk.envs import make_vector_env
from iltk.rollout import RatePacer, Rollout, run_episodes


def _envs(n, **kw):
    """Reach envs whose episodes never end early (the expert would succeed within steps)."""
    return make_vector_env("iltk/Reach-v0", n, asynchronous=False, terminate_on_success=False, **kw)


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_same_seed_same_episodes_whatever_the_number_of_envs(noise):
    runs = {}
    for n in (1, 2, 3):
        envs = _envs(n)
        controller = ExpertController()
        if noise:
            controller = DartNoise(controller, noise, seed=5)
        runs[n] = run_episodes(envs, controller, 5, seed=11)
        envs.close()
    for n in (2, 3):
        assert [e.index for e in runs[n]] == [0, 1, 2, 3, 4]
        for a, b in zip(runs[1], runs[n]):
            assert a.seed == b.seed
            np.testing.assert_array_equal(a.actions_executed, b.actions_executed)
            np.testing.assert_array_equal(a.states, b.states)


def test_a_seed_list_is_cycled_and_restarts_the_same_scenes():
    """IRL's policy player replays the demonstrations' starts: episode k is reset with
    seeds[k % len(seeds)], so the third episode starts where the first did."""
    envs = _envs(2)
    eps = Rollout(envs, ExpertController(), seeds=[7, 3]).run(3)
    envs.close()
    assert [e.seed for e in eps] == [7, 3, 7]  # returned in episode order
    first, third = eps[0], eps[2]
    np.testing.assert_array_equal(first.obs["state"][0], third.obs["state"][0])
    assert not np.array_equal(first.obs["state"][0], eps[1].obs["state"][0])
    with pytest.raises(ValueError, match="at least one seed"):
        Rollout(_envs(1), ExpertController(), seeds=[])


def test_commands_save_discard_reset_quit():
    envs = _envs(2)
    seen = []

    def after_step(ev):
        k = ev.step
        if k == 3:
            return {0: "save", 1: "discard"}
        if k == 6:
            return {1: "reset"}
        if k == 9:
            return {0: "quit"}
        return None

    eps = run_episodes(
        envs,
        ExpertController(),
        0,
        on_episode=seen.append,
        after_step=after_step,
        keep_partial=True,
    )
    envs.close()
    outcomes = [(e.index, e.outcome, e.length, e.partial) for e in eps]
    # step 3: env 0's episode 0 saved, env 1's episode 1 discarded (3 steps each); episodes
    # 2 (env 0) and 3 (env 1) start; step 6: episode 3 reset after 3 steps; step 9: quit,
    # episodes 2 (6 steps) and 4 (3 steps) kept as partial
    assert outcomes == [
        (0, "save", 3, False),
        (1, "discard", 3, False),
        (2, "save", 6, True),
        (3, "reset", 3, False),
        (4, "save", 3, True),
    ]
    assert [e.index for e in seen] == [0, 1, 3, 2, 4]  # handed over as they finished


def test_no_episode_starts_past_the_target():
    envs = _envs(4)
    eps = run_episodes(envs, ExpertController(), 2, seed=3)
    envs.close()
    assert [(e.index, e.seed) for e in eps] == [(0, 3), (1, 4)]


class FakeClock:
    """time.perf_counter / time.sleep for the pacer, advanced by the test (no real sleeps)."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now

    def sleep(self, dt):
        self.now += max(dt, 0.0)


def test_pacer_holds_the_rate_and_counts_missed_deadlines(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(rollout_module, "time", clock)
    pacer = RatePacer(20.0)  # 50 ms
    work = [0.01] * 5 + [0.12] + [0.01] * 4  # one step takes 120 ms
    starts = []
    for w in work:
        pacer.wait()
        starts.append(clock.now)
        clock.now += w
    assert pacer.steps == 10 and pacer.missed == 1
    assert pacer.late == pytest.approx([0.07])  # 120 ms of work against a 50 ms period
    gaps = np.diff(starts)
    assert gaps[:5] == pytest.approx([0.05] * 5)  # on the schedule
    assert gaps[5] == pytest.approx(0.12)  # the late step starts the next at once...
    assert gaps[6:] == pytest.approx([0.05] * 3)  # ...and the schedule restarts from it


def test_episodes_span_calls_with_final_observations():
    envs = _envs(2, max_episode_steps=7)  # short episodes, truncated by the time limit
    ro = Rollout(envs, ExpertController(), seed=0, record=False)
    done_at = []
    for t in range(10):  # 10 steps: every episode is truncated after 7
        tr = ro.step()
        if tr.done.any():
            done_at.append(t)
            # the final observation is the one the episode ended in, the next one a reset
            assert tr.truncated[tr.done].all()
            for i in np.flatnonzero(tr.done):
                assert not np.array_equal(tr.final_obs[i], tr.next_obs[i])
    assert done_at == [6]
    assert ro.episodes_done == 2 and [e.length for e in ro.finished] == [7, 7]
    # a later run() finishes the episodes in progress (3 steps in) and one more
    eps = ro.run(3)
    assert [e.index for e in eps] == [2, 3, 4]
    assert [e.length for e in eps] == [7, 7, 7]
    envs.close()


def test_rollout_episodes_match_run_episodes():
    """Steps collected call by call make the same episodes as one run_episodes call."""
    envs = _envs(2)
    whole = run_episodes(envs, ExpertController(), 4, seed=2)
    ro = Rollout(envs, ExpertController(), seed=2)
    parts = ro.run(1) + ro.run(3)
    envs.close()
    assert [e.index for e in parts] == [0, 1, 2, 3]
    for a, b in zip(whole, parts):
        np.testing.assert_array_equal(a.states, b.states)
        np.testing.assert_array_equal(a.actions, b.actions)
