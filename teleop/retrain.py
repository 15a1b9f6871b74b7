"""Retraining while a person corrects: a background process, then a swap at an episode start.

:class:`BackgroundRetrainer` trains on the corrections file in a child process (spawned,
through the Python API ``iltk.algos.supervised.train``, warm-started from the policy in use, on
one CPU thread so that the control loop keeps its core); the window never freezes.
:class:`SwappablePolicy` is the policy controller of a correction session: a retrained
policy takes over at the next episode start, never in the middle of one, and every step
records the version that acted (``policy_version``).
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np

from iltk.algos.settings import TrainConfig
from iltk.controllers import PolicyController
from iltk.rollout import ControlOutput


def _train_in_child(config: TrainConfig, log_path: str) -> None:
    """The child process: output to the log, one thread, then ``train``."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    import torch

    torch.set_num_threads(1)
    from iltk.algos.supervised import train

    train(config)


class BackgroundRetrainer:
    """One retraining at a time on ``dataset``, each in ``run_dir/retrain_<k>``.

    Args:
        dataset: the episode file being recorded (flushed by the caller first).
        task: the task (for the checkpoint's facts).
        run_dir: where the current policy and the retraining runs are written.
        steps: gradient steps per retraining.
        uncorrected_weight: weight of steps where the policy was in control (0 for
            HG-DAgger: train on the interventions only).
    """

    def __init__(
        self, dataset: Path, task: str, run_dir: Path, steps: int, uncorrected_weight: float
    ):
        self.dataset, self.task, self.run_dir = Path(dataset), task, Path(run_dir)
        self.steps, self.uncorrected_weight = int(steps), float(uncorrected_weight)
        self.rounds = 0
        self.process = None
        self.target: Path | None = None
        self.log: Path | None = None

    @property
    def running(self) -> bool:
        return self.process is not None

    def start(self, policy, version: int) -> bool:
        """Start retraining from ``policy`` (False when one is already running)."""
        if self.process is not None:
            return False
        self.rounds += 1
        current = self.run_dir / f"v{version}"
        policy.save(current, {"task": self.task, "env_kwargs": {}})
        self.target = self.run_dir / f"retrain_{self.rounds}"
        self.log = self.run_dir / f"retrain_{self.rounds}.log"
        config = TrainConfig(
            dataset=self.dataset,
            task=self.task,
            init=current,
            out=self.target,
            steps=self.steps,
            eval_episodes=0,
            progress=False,
            overwrite=True,
            device="cpu",
            uncorrected_weight=self.uncorrected_weight,
        )
        context = multiprocessing.get_context("spawn")  # no fork of a process with a GL context
        self.process = context.Process(
            target=_train_in_child, args=(config, str(self.log)), daemon=True
        )
        self.process.start()
        return True

    def poll(self, wait: bool = False):
        """The retrained policy when the run has finished (None while it runs or when it
        failed: then the log says why)."""
        if self.process is None:
            return None
        if wait:
            self.process.join()
        if self.process.is_alive():
            return None
        code = self.process.exitcode
        self.process.close()
        self.process = None
        if code != 0:
            print(f"teleop: retraining failed (see {self.log}); keeping the current policy")
            return None
        from iltk.policies import load_policy

        return load_policy(self.target / "last")

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.join(timeout=5)
            self.process = None


class SwappablePolicy(PolicyController):
    """A policy controller whose policy can be replaced between episodes (see module)."""

    def __init__(self, policy):
        from iltk.policies import PolicyRunner

        super().__init__(PolicyRunner(policy, 1))
        self.policy, self.version, self.next_policy = policy, 0, None

    def reset(self, env_ids):
        if self.next_policy is not None:
            from iltk.policies import PolicyRunner

            self.policy, self.next_policy = self.next_policy, None
            self.runner = PolicyRunner(self.policy, 1)
            self.version += 1
            print(f"teleop: retrained policy v{self.version} swapped in")
        super().reset(env_ids)

    def act(self, obs, info, envs) -> ControlOutput:
        out = super().act(obs, info, envs)
        out.fields["policy_version"] = np.full(len(out.executed), self.version, np.int32)
        return out
