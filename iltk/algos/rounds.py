"""The interactive rounds DAgger, HG-DAgger and DART share: settings, the round runner
(collection and evaluation envs, the aggregate file, checkpoints, the log) and `fit`."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from iltk.algos.settings import LearnerSettings, RoundConfig, TrainConfig
from iltk.algos.supervised import Trainer
from iltk.data import DemoFile, DemoWriter, make_env_args
from iltk.data.tools import copy_demos
from iltk.envs import TASK_IDS, make_vector_env
from iltk.evaluate import evaluate_policy
from iltk.files import (
    OutputError,
    WriterLock,
    atomic_write_text,
    check_output,
    remove_leftovers,
    remove_outputs,
)
from iltk.policies import Policy, PolicyRunner, load_policy
from iltk.rollout import Controller, Episode, run_episodes
from iltk.training import check_resume_settings

log = logging.getLogger("iltk")


def fit(
    algo: str,
    learner: LearnerSettings,
    dataset: Path,
    task: str,
    seed: int,
    *,
    init: Policy | None = None,
    uncorrected_weight: float = 1.0,
    intervention_weight: float = 1.0,
    progress: bool = False,
) -> Policy:
    """Train a policy on ``dataset`` for ``learner.steps_per_round`` steps and return it."""
    cfg = TrainConfig(
        algo=algo,
        dataset=dataset,
        task=task,
        out=Path("."),
        steps=learner.steps_per_round,
        seed=seed,
        eval_episodes=0,
        progress=False,
        **learner.optim_settings(),
        **learner.policy_options(),
        uncorrected_weight=uncorrected_weight,
        intervention_weight=intervention_weight,
    )
    trainer = Trainer(cfg, policy=init)
    try:
        for _ in tqdm(range(cfg.steps), desc="  train", leave=False, disable=not progress):
            trainer.train_step()
    finally:
        trainer.close()
    return trainer.policy.eval()


@torch.no_grad()
def policy_errors(policy: Policy, episodes: list[Episode]) -> np.ndarray:
    """The learner's action minus the label, at every recorded step (runner per episode,
    so recurrent and chunked policies see their episodes in order)."""
    out = []
    for ep in episodes:
        runner = PolicyRunner(policy, 1)
        runner.reset()
        keys = list(ep.obs)
        for t in range(ep.length):
            obs = {k: ep.obs[k][t : t + 1] for k in keys}
            obs = obs if len(keys) > 1 or keys[0] not in ("state", "pixels") else obs[keys[0]]
            out.append(runner.act(obs)[0] - ep.actions[t])
    return np.asarray(out)


class RoundLog:
    """Per-round rows, written as JSON and CSV after every round, and a plot at the end."""

    def __init__(self, out: Path, config, rows: list[dict] | None = None):
        self.out = out
        self.rows: list[dict] = list(rows or [])
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            out / "config.json", json.dumps(dataclasses.asdict(config), indent=2, default=str)
        )

    def add(self, row: dict) -> None:
        self.rows.append(row)
        atomic_write_text(self.out / "rounds.json", json.dumps(self.rows, indent=2))
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=list(self.rows[-1]))
        w.writeheader()
        for r in self.rows:
            w.writerow({k: r.get(k) for k in self.rows[-1]})
        atomic_write_text(self.out / "rounds.csv", text.getvalue())

    def plot(self, title: str) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(
            [r["expert_labels"] for r in self.rows], [r["success_rate"] for r in self.rows], "o-"
        )
        for r in self.rows:
            ax.annotate(
                str(r["round"]),
                (r["expert_labels"], r["success_rate"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set(
            xlabel="expert labels (steps)", ylabel="success rate", title=title, ylim=(-0.02, 1.02)
        )
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.out / "success_vs_labels.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


ROUND_OUTPUTS = (
    "config.json",
    "data.hdf5",
    "data.hdf5.episodes",
    "rounds.json",
    "rounds.csv",
    "success_vs_labels.png",
    "policy",
)


def prepare_round_folder(out: Path, *, overwrite: bool, resumable: bool = False) -> None:
    """Refuse, before any work, to run into a folder holding an earlier run's data
    (``resumable``: the command can --resume, which the refusal then offers)."""
    check_output(out, kind="folder", append=True, what="--out")
    earlier = [p for p in out.iterdir() if p.name in ROUND_OUTPUTS or p.name.startswith("round_")]
    if earlier and not overwrite:
        names = ", ".join(sorted(p.name for p in earlier)[:4]) + (
            ", ..." if len(earlier) > 4 else ""
        )
        raise OutputError(
            f"{out}: holds an earlier run ({names}); "
            + ("pass --resume to continue it, " if resumable else "pass ")
            + "--overwrite to start afresh (deleting it), or choose another --out"
        )
    WriterLock(out / "data.hdf5").acquire().release()  # a live run there: refuse, delete nothing
    remove_leftovers(out)
    remove_outputs(earlier)


def check_supervised_task(task: str, env_kwargs: dict) -> None:
    """Interactive rounds need a scripted supervisor: say so plainly for other ids."""
    from iltk.envs import is_iltk_task, make_env

    env = make_env(task, **env_kwargs)
    try:
        if not is_iltk_task(env):
            raise OutputError(
                f"{task} has no scripted expert; dagger and dart need an iltk task as supervisor "
                f"({', '.join(TASK_IDS)}), or a person at the gamepad: 'iltk correct'"
            )
    finally:
        env.close()


class RoundRunner:
    """What every interactive round shares: the collection and evaluation envs, the
    aggregate episode file (``OUT/data.hdf5``), checkpoints and the per-round log."""

    EVAL_SEED = 1_000_000  # evaluation seeds never used for collection

    MAY_CHANGE = frozenset({"rounds", "eval_episodes", "num_envs", "resume", "overwrite", "out"})
    """What a resumed run may change: how many rounds, the evaluation, the parallel envs."""

    def __init__(self, config: RoundConfig, resume: bool = False, resumable: bool = False):
        task, out = config.task, config.out
        self.task, self.out, self.env_kwargs = task, out, config.env_kwargs
        check_supervised_task(task, self.env_kwargs)
        # resume: the rows of the completed rounds and the last one's policy
        self.rows: list[dict] = []
        self.policy: Policy | None = None
        if resume and (out / "rounds.json").is_file():
            self._resume(config)
        else:
            started = resume and out.exists() and any(out.iterdir())
            if started:  # its round 0 is collected again, from the same seeds
                log.warning(f"{out} holds no completed round to resume from; starting at round 0")
            prepare_round_folder(out, overwrite=config.overwrite or started, resumable=resumable)
        self.log = RoundLog(out, config, self.rows)
        self.envs = make_vector_env(task, config.num_envs, **self.env_kwargs)
        self.eval_envs = make_vector_env(task, config.num_envs, **self.env_kwargs)
        self.data = self.data_path
        self.writer = DemoWriter(
            self.data,
            make_env_args(task, self.env_kwargs, self.envs.call("control_freq")[0]),
            model_file=self.envs.call("model_xml")[0],
            overwrite=not self.rows,
        )

    def _resume(self, config: RoundConfig) -> None:
        """Take up the run in OUT after its last completed round: its settings checked, the
        episodes of a round cut short dropped from data.hdf5 (they are collected again)."""
        with WriterLock(self.data_path):  # a live run there: refused; none starts meanwhile
            self._take_up(config)

    def _take_up(self, config: RoundConfig) -> None:
        out = self.out
        check_resume_settings(out, dataclasses.asdict(config), self.MAY_CHANGE)
        try:
            rows = json.loads((out / "rounds.json").read_text())
        except ValueError as err:
            raise OutputError(f"{out / 'rounds.json'}: unreadable ({err}); cannot resume") from None
        if len(rows) > config.rounds:
            raise OutputError(
                f"{out}: the run is finished ({len(rows)} rounds, 0 to {len(rows) - 1}); pass a "
                "larger --rounds with --resume to go on"
            )
        keep = sum(int(r["episodes"]) for r in rows)
        with DemoFile(self.data_path) as f:
            held = len(f.demos)
            if held < keep:
                raise OutputError(
                    f"{self.data_path}: holds {held} episodes, fewer than the {keep} of the "
                    f"{len(rows)} completed rounds; the run cannot resume: start afresh with "
                    "--overwrite"
                )
            if held > keep:  # the round cut short: collected again, from its own seeds
                tmp = out / "data.resume.hdf5"
                copy_demos([(f, d) for d in f.demos[:keep]], tmp)
        if held > keep:
            os.replace(tmp, self.data_path)
            remove_outputs([out / "data.hdf5.episodes"])
        self.policy = load_policy(out / f"round_{len(rows) - 1}")
        self.rows = rows
        dropped = f", {held - keep} episodes of round {len(rows)} dropped" if held > keep else ""
        log.warning(f"{out}: resuming at round {len(rows)} ({keep} episodes in data.hdf5{dropped})")

    @property
    def data_path(self) -> Path:
        return self.out / "data.hdf5"

    @property
    def action_dim(self) -> int:
        return int(np.prod(self.envs.single_action_space.shape))

    def collect(
        self, controller: Controller, episodes: int, seed: int, source: str
    ) -> list[Episode]:
        """Run ``episodes`` episodes and append them to the aggregate file (saved on return)."""
        futures = []
        eps = run_episodes(
            self.envs,
            controller,
            episodes,
            seed=seed,
            on_episode=lambda ep: futures.append(self.writer.save(ep, source=source)),
        )
        for f in futures:
            f.result()
        return eps

    def finish_round(self, k: int, policy: Policy, eval_episodes: int, row: dict) -> dict:
        """Checkpoint round k, evaluate it on unseen seeds, log the row (returned, completed)."""
        policy.save(
            self.out / f"round_{k}", {"task": self.task, "round": k, "env_kwargs": self.env_kwargs}
        )
        res = evaluate_policy(
            policy, self.task, eval_episodes, seed=self.EVAL_SEED, envs=self.eval_envs
        )
        row.update(
            success_rate=res.success_rate,
            ci95_lo=res.ci95[0],
            ci95_hi=res.ci95[1],
            mean_return=res.mean_return,
        )
        self.log.add(row)
        return row

    def close(self, policy: Policy | None, title: str) -> None:
        self.envs.close()
        self.eval_envs.close()
        self.writer.close()
        if policy is not None:
            policy.save(self.out / "policy", {"task": self.task, "env_kwargs": self.env_kwargs})
        if self.log.rows:
            self.log.plot(title)
