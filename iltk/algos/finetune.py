"""`iltk finetune`: PPO fine-tuning of a behaviour-cloned policy.

An MLP BC checkpoint becomes the actor of ``iltk.policies.tuned.FinetunePolicy`` (its
mean action, a bounded learned std, a fresh critic); a BC-RNN or ACT checkpoint (or any,
with ``--mode residual``) stays frozen under a per-step Gaussian residual
(``ResidualPolicy``, ResiP's recipe: the chunk execution and hidden states are kept as
trained, or as ``--chunk.*`` says, and only the small residual moves). Then the PPO run
(``iltk.algos.ppo.train_ppo``) is composed with what fine-tuning adds, none of it a flag
inside PPO: a learning rate of the critic's own, a critic warm-up with the actor frozen
(``CriticWarmup``), the task's sparse success as the reward source by default
(``--reward-type dense`` for the env's shaped reward, ``--reward DIR`` for a learned one),
and optionally ``TowardsStart``, an auxiliary loss with its callback. The envs are made as
the BC policy's were (its checkpoint's ``env_kwargs``, e.g. ``init_spread``). The result is
an ordinary checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path

import torch

from iltk.algos.settings import FinetuneSettings
from iltk.policies import load_checkpoint, set_chunk_execution
from iltk.rl.ppo import Callback, CriticWarmup
from iltk.rl.rewards import SuccessReward

log = logging.getLogger("iltk")


class FinetuneError(ValueError):
    """A starting policy that cannot be fine-tuned here (the message says why)."""


class TowardsStart(Callback):
    """What keeps the actor near the policy it started from, added to PPO's actor loss:

    - a KL penalty, ``kl_bc`` * KL(pi || pi_start) with pi_start the starting mean under
      the current std: sum (mean - mean_start)^2 / (2 std^2) (for a residual the start is
      a zero residual);
    - DAPG's behaviour-cloning term (Rajeswaran et al. 2017), ``bc_weight`` *
      ``bc_decay``^k times the BC policy's own loss on a minibatch of demonstrations at
      rollout k (MLP fine-tuning only: a residual's frozen base has nothing to clone).

    ``loss`` is PPO's auxiliary loss; as a callback it sets the weight of the rollout and
    logs the terms' means.
    """

    metrics = ("bc_loss", "bc_weight", "kl_to_start")

    def __init__(self, policy, cfg: FinetuneSettings, dataset, device):
        self.kl_bc, self.bc_weight, self.bc_decay = cfg.kl_bc, cfg.bc_weight, cfg.bc_decay
        self.residual = policy.kind == "residual"
        # the starting actor, frozen (a fine-tuned MLP's actor is the BC network itself)
        self.start = None if self.residual else copy.deepcopy(policy.actor._base[0]).eval()
        if self.start is not None:
            self.start.requires_grad_(False)
            from iltk.policies.tuned import BaseMean

            self.start_mean = BaseMean(self.start)
        self.policy, self.dataset = policy, dataset
        self.batch = cfg.bc_batch_size
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed + 7)
        self.weight = self.bc_weight
        self.sums: dict[str, list] = {"bc_loss": [], "kl_to_start": []}

    def on_update_start(self, ppo) -> None:
        self.weight = self.bc_weight * self.bc_decay**ppo.iterations

    def loss(self, obs, mean, log_std) -> torch.Tensor:
        total = torch.zeros((), device=mean.device)
        if self.kl_bc > 0:
            if self.residual:
                ref = torch.zeros_like(mean)
            else:
                with torch.no_grad():
                    ref = self.start_mean(obs)
            kl = ((mean - ref).pow(2) / (2 * torch.exp(2 * log_std))).sum(-1).mean()
            total = total + self.kl_bc * kl
            self.sums["kl_to_start"].append(kl.detach())
        if self.weight > 0 and self.dataset is not None:
            idx = self.dataset.sample_indices(self.batch, self.gen)
            bc, _ = self.policy.loss(self.dataset.batch_steps(idx))
            total = total + self.weight * bc
            self.sums["bc_loss"].append(bc.detach())
        return total

    def on_update_end(self, ppo) -> dict:
        out = {"bc_weight": self.weight if self.dataset is not None else None}
        for key, values in self.sums.items():
            out[key] = float(torch.stack(values).mean()) if values else None
            values.clear()
        return out


def finetune(cfg: FinetuneSettings) -> dict:
    from iltk.algos.ppo import train_ppo
    from iltk.policies.tuned import FinetunePolicy, ResidualPolicy

    base, extra = load_checkpoint(cfg.policy)
    name = type(base).name
    from iltk.policies import POLICY_REGISTRY

    cloned = [n for n, e in POLICY_REGISTRY.items() if e.supervised]
    if name not in cloned:
        raise FinetuneError(
            f"{cfg.policy}: a {name!r} policy; fine-tuning starts from a behaviour-cloned one "
            f"({', '.join(cloned)})"
        )
    if base.config.image_shapes:
        raise FinetuneError(f"{cfg.policy}: a policy on images; fine-tuning here needs states")
    task = cfg.task or extra.get("task")
    if not task:
        raise FinetuneError(f"{cfg.policy}: the checkpoint does not name its task; pass --task")
    if extra.get("task") and task != extra["task"]:
        from iltk.evaluate import check_policy_task

        try:
            check_policy_task(base, task, extra.get("env_kwargs"))
        except ValueError as err:
            raise FinetuneError(
                f"{cfg.policy}: trained on {extra['task']}, not {task}: {err}; fine-tune it on "
                f"its own task (drop --task)"
            ) from None
    try:
        set_chunk_execution(base, **cfg.chunk.given())
    except ValueError as err:
        raise FinetuneError(f"{cfg.policy}: --chunk.*: {err}") from None
    if cfg.mode == "whole" and name != "bc":
        raise FinetuneError(
            f"--mode whole: {name} policies are fine-tuned through a residual only "
            "(its hidden state and chunk execution stay frozen); use --mode auto or residual"
        )
    residual = cfg.mode == "residual" or (cfg.mode == "auto" and name != "bc")
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
    ppo_cfg = cfg.ppo_config(task, normalize_obs=residual and cfg.ppo.normalize_obs)
    env_kwargs = dict(extra.get("env_kwargs") or {})
    reward = SuccessReward() if cfg.reward_type == "sparse" and cfg.reward is None else None
    dataset = None
    if cfg.bc_weight > 0:
        if residual:
            raise FinetuneError(
                "--bc-weight: a residual policy's base is frozen, there is nothing to clone; "
                "use --kl-bc to keep the residual small"
                + (" (or --mode whole: the MLP fine-tuned itself)" if name == "bc" else "")
            )
        from iltk.data.dataset import DemoDataset
        from iltk.policies import resolve_device

        path = cfg.dataset or extra.get("dataset")
        if not path or not Path(path).exists():
            raise FinetuneError(
                f"--bc-weight needs the demonstrations: the checkpoint names {path!r}; "
                "pass --dataset FILE"
            )
        device = resolve_device(cfg.device)
        dataset = DemoDataset(path, obs_keys=list(base.config.lowdim_keys), device=device)
        dataset.check_compatible(base.config.state_dim, base.config.action_dim, str(path))
    warmup_steps = cfg.critic_warmup_rollouts * cfg.ppo.rollout_size
    if cfg.total_timesteps <= warmup_steps:
        log.warning(
            f"--total-timesteps {cfg.total_timesteps} ends inside the critic warm-up "
            f"({cfg.critic_warmup_rollouts} rollouts of {cfg.ppo.rollout_size} steps = "
            f"{warmup_steps}): the actor will not move; raise --total-timesteps or lower "
            "--critic-warmup-rollouts"
        )
    callbacks: list = [CriticWarmup(cfg.critic_warmup_rollouts)]
    aux_losses = []
    if cfg.kl_bc > 0 or dataset is not None:
        from iltk.policies import resolve_device

        towards = TowardsStart(policy, cfg, dataset, resolve_device(cfg.device))
        callbacks.append(towards)
        aux_losses.append(towards.loss)
    return train_ppo(
        ppo_cfg,
        policy=policy,
        env_kwargs=env_kwargs,
        reward=reward,
        callbacks=callbacks,
        aux_losses=aux_losses,
        critic_lr=cfg.critic_lr,
        run_config={**dataclasses.asdict(cfg), "task": task},
    )
