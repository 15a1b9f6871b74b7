"""PPO's loss (Schulman et al. 2017): the one reference implementation.

For a minibatch of a rollout, with rho = pi(a|s) / pi_old(a|s) and the advantages A
(normalized per minibatch by default):

- clip: L_pg = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)];
- kl-penalty: L_pg = -E[rho A] + beta KL(pi_old || pi) (the lecture's adaptive-KL PPO;
  ``update_beta`` adapts beta after each update);
- the value loss L_v = E[(R - V(s))^2], V optionally clipped to ``clip_vf`` around the
  rollout's values;
- the entropy bonus: the Gaussian's entropy, sum(log_std) + d/2 (1 + log 2 pi).

L = L_pg + vf_coef L_v - ent_coef H; while the actor is frozen (a critic warm-up) L =
vf_coef L_v. Every updater (``iltk.rl.updaters``) minimizes this function; the numpy one
is tested against it.
"""

from __future__ import annotations

import dataclasses
import math

import torch

LOG_2PI = math.log(2 * math.pi)


def gaussian_logp(actions, mean, log_std) -> torch.Tensor:
    """log N(actions; mean, exp(log_std)^2), summed over the action dims."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * LOG_2PI).sum(-1)


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q) -> torch.Tensor:
    """KL(p || q) of diagonal Gaussians, summed over the action dimensions."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
    return kl.sum(-1)


def gaussian_entropy(log_std) -> torch.Tensor:
    """Entropy of a diagonal Gaussian with these log stds (state-independent)."""
    return (log_std + 0.5 * (1 + LOG_2PI)).sum()


def update_beta(beta: float, kl: float, kl_target: float) -> float:
    """The adaptive-KL rule: halve beta when KL < d_targ / 1.5, double it when KL > 1.5 d_targ."""
    if kl < kl_target / 1.5:
        return beta / 2
    if kl > kl_target * 1.5:
        return beta * 2
    return beta


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """The settings of :func:`ppo_loss` (SB3's names)."""

    objective: str = "clip"  # "clip" or "kl-penalty"
    clip_range: float = 0.2
    clip_range_vf: float | None = None
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    normalize_advantage: bool = True

    def kwargs(self) -> dict:
        """These settings as :func:`ppo_loss`'s keywords."""
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, cfg) -> LossSettings:
        """The loss settings of a PPO config."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


def ppo_loss(
    policy,
    mb: dict,
    old_log_std: torch.Tensor,
    beta: torch.Tensor,
    *,
    objective: str,
    clip_range: float,
    clip_range_vf: float | None,
    vf_coef: float,
    ent_coef: float,
    normalize_advantage: bool,
    train_actor: bool,
    want_kl: bool,
):
    """PPO's loss on one minibatch (the module docstring): returns (loss, surrogate loss,
    value loss, approximate KL of the old to the new policy or None, the actor's mean).

    ``mb``: obs (normalized), actions, advantages, returns, logp, mean and values of the
    rollout; ``old_log_std``: the log std the rollout was sampled with. The settings are
    plain keywords so that ``torch.compile`` specializes on them."""
    adv = mb["advantages"]
    if normalize_advantage and adv.shape[0] > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    mean = policy.actor(mb["obs"])
    log_std = policy.log_std
    log_ratio = gaussian_logp(mb["actions"], mean, log_std) - mb["logp"]
    ratio = log_ratio.exp()
    approx_kl = ((ratio - 1) - log_ratio).mean().detach() if want_kl else None
    if objective == "clip":
        surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip_range, 1 + clip_range) * adv)
        pg_loss = -surrogate.mean()
    else:
        kl = gaussian_kl(mean, log_std, mb["mean"], old_log_std)
        pg_loss = -(ratio * adv).mean() + beta * kl.mean()
    values = policy.value(mb["obs"])
    if clip_range_vf is not None:
        old = mb["values"]
        values = old + (values - old).clamp(-clip_range_vf, clip_range_vf)
    v_loss = (mb["returns"] - values).pow(2).mean()
    if train_actor:
        loss = pg_loss + vf_coef * v_loss
        if ent_coef:
            loss = loss - ent_coef * gaussian_entropy(log_std)
    else:
        loss = vf_coef * v_loss
    return loss, pg_loss, v_loss, approx_kl, mean
