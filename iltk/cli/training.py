"""The training commands: `iltk train`, `dagger`, `dart`, `ppo`, `finetune`, `irl`, and
`iltk eval`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from iltk.algos.settings import (
    ChunkExecution,
)
from iltk.cli.common import (
    ARGV,
    CliError,
    _check_file_name,
    _check_video,
    _policy_for_task,
)


@dataclass
class Eval:
    """Evaluate a policy checkpoint: success rate with a 95% interval, mean return and
    episode length, per-episode JSON, and optionally a video."""

    policy: Path
    """The policy: a checkpoint folder (e.g. runs/NAME/best)."""
    task: str | None = None
    """Task id (default: the task the policy was trained for)."""
    episodes: int = 100
    """Episodes to run; episode k uses seed SEED + k."""
    seed: int = 100_000
    """First episode seed (training data used 0.., so the default is unseen)."""
    num_envs: int = 2
    """Parallel environments."""
    device: str = "auto"
    """auto, cpu or cuda."""
    threads: int = 1
    """torch threads on the CPU."""
    video: Path | None = None
    """Also render the first two episodes to this mp4."""
    json: Path | None = None
    """Where the results go, per episode, as JSON (default: POLICY/eval.json)."""
    chunk: ChunkExecution = field(default_factory=ChunkExecution)
    """Chunked policies: how chunks are executed (default: as the checkpoint says)."""

    def __post_init__(self):
        if self.episodes < 1:
            raise CliError(f"--episodes must be at least 1, got {self.episodes}")
        if self.num_envs < 1:
            raise CliError(f"--num-envs must be at least 1, got {self.num_envs}")
        if self.threads < 1:
            raise CliError(f"--threads must be at least 1, got {self.threads}")

    def run(self) -> None:
        from iltk.evaluate import evaluate_policy, policy_video
        from iltk.files import check_output

        if self.json is not None:
            _check_file_name("--json", self.json, "eval.json")
        out = self.json or self.policy / "eval.json"
        if self.video:  # (a file check: it raises OutputError, a line of its own)
            _check_video(self.video)
        policy, task, env_kwargs = _policy_for_task(
            self.policy, self.task, self.device, self.chunk, self.threads
        )
        check_output(out, overwrite=True, what="--json")
        from tqdm.auto import tqdm

        with tqdm(total=self.episodes, desc=f"eval {task}", unit="ep") as bar:
            res = evaluate_policy(
                policy,
                task,
                self.episodes,
                seed=self.seed,
                num_envs=self.num_envs,
                env_kwargs=env_kwargs,
                progress=bar,
            )
        print(res.line())
        from iltk.files import atomic_write_text

        record = res.to_dict()
        if self.chunk.given():  # how the chunks were executed, where not as saved
            record["chunk_execution"] = self.chunk.given()
        atomic_write_text(out, json.dumps(record, indent=2))
        print(f"per-episode results: {out}")
        if self.video:
            print(f"rendering the first episodes to {self.video} ...", flush=True)
            policy_video(policy, task, self.video, seed=self.seed, env_kwargs=env_kwargs)
            print(f"video: {self.video}")


def _run_dagger(cfg) -> None:
    from iltk.algos.dagger import run_dagger

    last = run_dagger(cfg)[-1]
    print(
        f"{cfg.variant}: {last['expert_labels']} expert labels, final success "
        f"{last['success_rate']:.0%}; policy in {cfg.out / 'policy'}, log in {cfg.out / 'rounds.csv'}"
    )


def _run_dart(cfg) -> None:
    from iltk.algos.dart import run_dart

    last = run_dart(cfg)[-1]
    print(
        f"dart: {last['expert_labels']} labels, noise std {last['noise_std']}, final success "
        f"{last['success_rate']:.0%}; policy in {cfg.out / 'policy'}"
    )


def _run_train(cfg) -> int | None:
    if not cfg.dataset.exists():
        raise CliError(f"{cfg.dataset}: no such dataset file (make one with 'iltk collect')")
    if cfg.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        from iltk.distributed import launch

        code = launch(cfg.nproc, ARGV)
        if code == 130:  # Ctrl-C: torchrun stopped every rank
            raise KeyboardInterrupt
        if code != 0:
            raise CliError(
                f"the {cfg.nproc}-process run failed (exit status {code}; the failing rank's "
                f"error is above); {cfg.out / 'last'} holds the last complete checkpoint: fix "
                "the cause and run the same command with --resume"
            )
        return None
    from iltk.algos.supervised import train

    res = train(cfg)
    if int(os.environ.get("RANK", "0")) != 0:
        return None  # rank 0 reports for the job
    final = res["final"] or {}
    msg = f"trained {cfg.algo} for {res['steps']} steps on {res['device']} in {res['train_time_s']:.0f}s"
    if final.get("success_rate") is not None:
        msg += f"; final success {final['success_rate']:.0%}"
    print(msg)
    print(f"checkpoints: {cfg.out / 'best'} and {cfg.out / 'last'}; plots in {cfg.out / 'plots'}")


def _run_ppo(cfg) -> None:
    from iltk.algos.ppo import train_ppo

    res = train_ppo(cfg)
    final = res["final"]
    msg = f"ppo: {res['env_steps']} env steps in {res['train_time_s']:.0f}s"
    if final.get("eval_return") is not None:
        msg += f"; evaluation return {final['eval_return']:.1f}"
        msg += f", success {final['eval_success']:.0%}"
    print(msg)
    print(f"checkpoints: {cfg.out / 'best'} and {cfg.out / 'last'}; plots in {cfg.out / 'plots'}")


def _run_irl(cfg) -> None:
    from iltk.algos.irl.run import train_irl

    res = train_irl(cfg)
    if "iterations" in res:  # tabular
        print(
            f"irl: {res['iterations']} iterations in {res['train_time_s']:.1f}s "
            f"({'converged' if res['converged'] else 'not converged'}); max visitation error "
            f"{res['visitation_linf']:.2g}; correlation with the true reward "
            f"{res['reward_correlation_with_true']:.2f}"
        )
        print(f"reward: {res['reward']}; plots: {', '.join(res['plots']) or 'none'}")
        return
    final = res["final"]
    msg = f"irl: {res['env_steps']} env steps on {res['demos']} demos in {res['train_time_s']:.0f}s"
    if final.get("eval_success") is not None:
        msg += f"; the policy's evaluation success {final['eval_success']:.0%}"
        msg += f" (return {final['eval_return']:.1f} on the task's reward, never trained on)"
    print(msg)
    out = Path(res["reward"]).parent
    print(
        f"reward: {res['reward']} (iltk ppo --reward {res['reward']}); policy: {res['policy']}; "
        f"plots in {out / 'plots'}"
    )


def _run_finetune(cfg) -> None:
    from iltk.algos.finetune import finetune

    res = finetune(cfg)
    start, final = res.get("start") or {}, res["final"]
    msg = f"finetune: {res['env_steps']} env steps in {res['train_time_s']:.0f}s"
    if start.get("eval_success") is not None and final.get("eval_success") is not None:
        msg += f"; success {start['eval_success']:.0%} (start) -> {final['eval_success']:.0%}"
    print(msg)
    print(f"checkpoints: {cfg.out / 'best'} and {cfg.out / 'last'}; plots in {cfg.out / 'plots'}")
