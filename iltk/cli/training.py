"""The training commands: `iltk train`, `dagger`, `dart`, `ppo`, `finetune`, `irl`, and
`iltk eval`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iltk.algos.settings import EvalConfig
from iltk.cli.common import (
    ARGV,
    CliError,
    _check_file_name,
)


@dataclass
class Eval(EvalConfig):
    __doc__ = EvalConfig.__doc__

    def run(self) -> None:
        from iltk.evaluate import evaluate_checkpoint

        if self.json is not None:
            _check_file_name("--json", self.json, "eval.json")
        res = evaluate_checkpoint(self)
        print(res.line())
        print(f"per-episode results: {self.results_path()}")
        if self.video:
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
