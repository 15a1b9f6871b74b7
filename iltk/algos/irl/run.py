"""`iltk irl`: tabular tasks by the exact MaxEnt IRL passes (``tabular.py``), the others by
the game (``deep.py``)."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from pathlib import Path

import numpy as np
import torch

from iltk.algos.irl.deep import _save_figure, dataset_task, train_deep_irl
from iltk.algos.settings import IRLConfig
from iltk.data import DatasetError
from iltk.envs import TABULAR_TASKS, make_env
from iltk.files import atomic_write, atomic_write_text, write_bytes


def train_irl(cfg: IRLConfig) -> dict:
    """`iltk irl`: tabular tasks by the exact passes, the others by the game."""
    task = cfg.task or dataset_task(cfg.dataset)
    cfg = dataclasses.replace(cfg, task=task)
    if task in TABULAR_TASKS:
        if cfg.init_reward is not None:
            raise ValueError(
                f"--init-reward: tabular IRL ({task}) plays its game in seconds from a fresh "
                "reward; --init-reward continues a MuJoCo task's reward player"
            )
        if cfg.resume:
            raise ValueError(
                f"--resume: tabular IRL ({task}) keeps no checkpoint to resume from (it runs "
                "in seconds); run it again with --overwrite"
            )
        return train_tabular_irl(cfg)
    return train_deep_irl(cfg)


def train_tabular_irl(cfg: IRLConfig) -> dict:
    """Exact MaxEnt IRL on a tabular task's MDP from an episode file of it (one writer per
    run folder, as every run)."""
    from iltk.training import run_lock

    with run_lock(cfg.out):
        return _train_tabular_irl(cfg)


def _train_tabular_irl(cfg: IRLConfig) -> dict:
    from tqdm.auto import tqdm

    from iltk.algos.irl.tabular import demo_trajectories, expert_visitation, maxent_irl
    from iltk.training import prepare_run_folder

    env = make_env(cfg.task)
    mdp = env.unwrapped.mdp
    env.close()
    outputs = ("config.json", "reward.npz", "results.json", "plots")
    prepare_run_folder(
        cfg.out, resume=False, overwrite=cfg.overwrite, outputs=outputs, resumable=False
    )
    trajs = demo_trajectories(cfg.dataset)
    if cfg.demos:
        if len(trajs) < cfg.demos:
            raise DatasetError(
                cfg.dataset, f"holds {len(trajs)} episodes, fewer than --demos {cfg.demos}"
            )
        trajs = trajs[: cfg.demos]
    top = max(int(s.max()) for s, _ in trajs)
    if top >= mdp.n_states:
        raise DatasetError(
            cfg.dataset, f"visits state {top}, but {cfg.task} has {mdp.n_states}: another MDP?"
        )
    horizon = cfg.tabular.horizon or mdp.horizon
    lengths = {len(a) for _, a in trajs}
    if lengths != {horizon}:
        raise DatasetError(
            cfg.dataset,
            f"holds episodes of {sorted(lengths)} steps; the horizon is {horizon} "
            "(pass --tabular.horizon to match the file)",
        )
    # counts over every state of an episode, the one after the last action included
    target = expert_visitation(trajs, mdp.n_states, mdp.n_actions, discount=cfg.tabular.discount)
    atomic_write_text(
        cfg.out / "config.json", json.dumps(dataclasses.asdict(cfg), default=str, indent=2)
    )
    t0 = time.perf_counter()
    # no ETA: the passes stop when the visitation matches (long before --tabular.max-iter)
    with tqdm(
        total=cfg.tabular.max_iter,
        desc=f"irl {cfg.task}",
        disable=not cfg.progress,
        bar_format="{desc}: {n_fmt} iterations (at most {total_fmt}) [{elapsed}, {rate_fmt}"
        "{postfix}]",
    ) as bar:
        if cfg.tabular.solver == "game":
            res = _tabular_game(cfg, mdp, trajs, horizon, target, bar)
        else:
            res = maxent_irl(
                mdp.P,
                mdp.features,
                mdp.init,
                target,
                horizon=horizon,
                discount=cfg.tabular.discount,
                model=cfg.tabular.model,
                max_iter=cfg.tabular.max_iter,
                linf_eps=cfg.tabular.tolerance,
                device=cfg.device
                if cfg.device != "auto"
                else ("cuda" if torch.cuda.is_available() else "cpu"),
                seed=cfg.seed,
                progress=bar,
            )
    seconds = time.perf_counter() - t0
    learned = np.asarray(res.reward, np.float64).reshape(mdp.n_states, -1).mean(1)
    corr = float(np.corrcoef(learned, mdp.reward)[0, 1]) if learned.std() > 0 else float("nan")
    linf = float(np.abs(np.asarray(res.visitation) - target).max())
    buf = io.BytesIO()
    np.savez(
        buf,
        reward=np.asarray(res.reward),
        pi=np.asarray(res.pi),
        visitation=np.asarray(res.visitation),
        expert_visitation=target,
    )
    atomic_write(cfg.out / "reward.npz", lambda tmp: write_bytes(tmp, buf.getvalue()), durable=True)
    plots = []
    if mdp.grid is not None:
        plots.append(
            str(
                _tabular_heatmap(
                    cfg.task, mdp, learned, target, res, cfg.out / "plots" / "reward_heatmap.png"
                )
            )
        )
    results = {
        "task": cfg.task,
        "demos": len(trajs),
        "iterations": res.iterations,
        "converged": res.converged,
        "visitation_linf": linf,
        "reward_correlation_with_true": corr,
        "train_time_s": seconds,
        "reward": str(cfg.out / "reward.npz"),
        "plots": plots,
    }
    atomic_write_text(cfg.out / "results.json", json.dumps(results, indent=2))
    return results


def _tabular_game(cfg: IRLConfig, mdp, trajs, horizon: int, target: np.ndarray, bar):
    """`--tabular.solver game`: the deep reward player of the MuJoCo tasks against an exact
    policy player (``iltk.algos.irl.game``), in the exact passes' result type."""
    from iltk.algos.irl.game import tabular_game
    from iltk.algos.irl.tabular import IRLResult, expert_visitation

    expert_sa = expert_visitation(
        trajs, mdp.n_states, mdp.n_actions, discount=cfg.tabular.discount, state_action=True
    )
    res = tabular_game(
        mdp.P,
        mdp.features,
        mdp.init,
        expert_sa,
        horizon=horizon,
        discount=cfg.tabular.discount,
        game=cfg.game,
        kind=cfg.reward.kind,
        rounds=cfg.tabular.max_iter,
        settings=cfg.reward,
        seed=cfg.seed,
        target=target,
        tolerance=cfg.tabular.tolerance,
        progress=bar,
        lr_decay=cfg.tabular.lr_decay,
    )
    return IRLResult(
        reward=res.reward,
        pi=res.pi,
        visitation=res.visitation,
        iterations=len(res.history),
        converged=res.converged,
        history=res.history,
        model=res.net,
    )


def _tabular_heatmap(task, mdp, learned, target, res, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = mdp.grid
    visit = np.asarray(res.visitation).reshape(mdp.n_states, -1).sum(1)
    expert = np.asarray(target).reshape(mdp.n_states, -1).sum(1)
    panels = [
        ("true reward", mdp.reward),
        ("learned reward", learned),
        ("expert visitation", expert),
        ("visitation of the learned reward", visit),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    for ax, (title, values) in zip(axes, panels):
        im = ax.imshow(np.asarray(values).reshape(rows, cols), cmap="viridis")
        ax.set(title=title, xticks=[], yticks=[])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{task}: MaxEnt IRL ({res.iterations} iterations)", fontsize=10)
    fig.tight_layout()
    return _save_figure(fig, path)
