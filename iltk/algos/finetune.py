"""`iltk finetune`: PPO fine-tuning of a behaviour-cloned policy.

An MLP BC checkpoint becomes the actor of ``iltk.policies.finetune.FinetunePolicy`` (its
mean action, a bounded learned std, a fresh critic); a BC-RNN or ACT checkpoint (or any,
with ``--residual``) stays frozen under a per-step Gaussian residual
(``ResidualPolicy``, ResiP's recipe: temporal ensembling and hidden states are kept as
trained, and only the small residual moves). Then ``iltk.algos.ppo.train_ppo``
runs with two learning rates (a small one for the actor, a large one for the critic), a
critic warm-up with the actor frozen, a small clip, and the task's sparse success as the
reward by default (``--reward-type dense`` for the env's shaped reward, ``--reward DIR``
for a learned one). The envs are made as the BC policy's were (its checkpoint's
``env_kwargs``, e.g. ``init_spread``). The result is an ordinary checkpoint.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from iltk.algos.configs import FinetuneSettings
from iltk.policies import load_checkpoint


class FinetuneError(ValueError):
    """A starting policy that cannot be fine-tuned here (the message says why)."""


def success_reward(transition) -> np.ndarray:
    """1 where the task reports success after the step, else 0."""
    success = transition.info.get("success")
    if success is None:
        raise FinetuneError(
            "this task reports no success: pass --reward-type dense (or --reward DIR)"
        )
    return np.asarray(success, np.float64)


def finetune(cfg: FinetuneSettings) -> dict:
    from iltk.algos.ppo import train_ppo
    from iltk.policies.finetune import FinetunePolicy, ResidualPolicy

    base, extra = load_checkpoint(cfg.policy)
    name = type(base).name
    if name not in ("bc", "bc-rnn", "act"):
        raise FinetuneError(
            f"{cfg.policy}: a {name!r} policy; fine-tuning starts from a behaviour-cloned one "
            "(bc, bc-rnn or act)"
        )
    if base.config.image_shapes:
        raise FinetuneError(f"{cfg.policy}: a policy on images; fine-tuning here needs states")
    task = cfg.task or extra.get("task")
    if not task:
        raise FinetuneError(f"{cfg.policy}: the checkpoint does not name its task; pass --task")
    residual = cfg.residual or name != "bc"
    bounds = dict(
        log_std_init=cfg.log_std_init, min_log_std=cfg.min_log_std, max_log_std=cfg.max_log_std
    )
    if residual:  # recurrent and chunked bases stay frozen under a per-step residual
        policy = ResidualPolicy.from_base(base, name, hidden=list(cfg.critic_hidden), **bounds)
    else:
        policy = FinetunePolicy.from_base(
            base, name, critic_hidden=list(cfg.critic_hidden), **bounds
        )
    # a residual reads (state, base action) through PPO's running normalization; a
    # fine-tuned MLP keeps the normalization it was trained with
    cfg = dataclasses.replace(cfg, task=task, normalize_obs=residual)
    env_kwargs = dict(extra.get("env_kwargs") or {})
    reward_fn = success_reward if cfg.reward_type == "sparse" and cfg.reward is None else None
    return train_ppo(cfg, policy=policy, env_kwargs=env_kwargs, reward_fn=reward_fn)
