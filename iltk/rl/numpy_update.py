"""PPO's minibatch update in numpy, with its gradients written out: the opt-in CPU backend.

On the CPU a PPO minibatch step of the usual 64-unit networks is bound by per-operator
overhead, not arithmetic (the matrices are 64 x 64). The same step in numpy, on one flat
float32 buffer that holds every weight (so gradient clipping and Adam are a handful of
array operations over all parameters at once), costs a fraction of torch's. This module is
that step for :class:`~iltk.policies.actor_critic.ActorCritic` (MLP actor and critic, tanh
or ReLU, a state-independent log std) and the loss of :func:`iltk.rl.loss.ppo_loss`: the
clipped surrogate or the KL penalty, the optionally clipped value loss, the entropy bonus;
then the global gradient-norm clip and Adam (torch's update rule, eps and bias corrections
included).

It is a second implementation of the reference loss, so it is opt-in
(``--ppo.update-backend numpy``) and ``tests/rl/test_numpy_update.py`` holds it to autograd
and ``torch.optim.AdamW`` step by step. What it does not cover (CUDA, ``--ppo.compile``,
fine-tuned BC policies and residuals, auxiliary losses, a critic learning rate of its own)
is refused with the reason (:func:`why_not`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

LOG_2PI = math.log(2 * math.pi)


def _layers(seq: torch.nn.Sequential) -> tuple[list[torch.nn.Linear], str] | None:
    """The Linear layers of an MLP ``Linear, act, ..., Linear`` and its activation."""
    linears, acts = [], set()
    for k, module in enumerate(seq):
        want_linear = k % 2 == 0
        if want_linear and isinstance(module, torch.nn.Linear):
            linears.append(module)
        elif not want_linear and isinstance(module, torch.nn.Tanh | torch.nn.ReLU):
            acts.add(type(module))
        else:
            return None
    if not linears or len(acts) > 1 or len(seq) % 2 == 0:
        return None
    return linears, "relu" if torch.nn.ReLU in acts else "tanh"


def why_not(
    device: torch.device, policy, *, compile: bool = False, aux_losses=(), critic_lr=None, lr=None
) -> str | None:
    """Why :class:`NumpyPPO` cannot run these updates, or None when it can."""
    from iltk.policies.actor_critic import ActorCritic

    if device.type != "cpu":
        return f"it runs on the CPU (the run's device is {device.type})"
    if compile:
        return "--ppo.compile compiles torch's update"
    if aux_losses:
        return "an auxiliary loss needs autograd"
    if critic_lr is not None and critic_lr != lr:
        return "a critic learning rate of its own"
    if type(policy) is not ActorCritic:
        return f"it updates PPO's actor-critic, not a {type(policy).__name__}"
    if any(p.dtype != torch.float32 for p in policy.parameters()):
        return "float32 weights only"
    actor, critic = _layers(policy.actor), _layers(policy.critic)
    if actor is None or critic is None or actor[1] != critic[1]:
        return "MLPs of one activation only"
    return None


class NumpyPPO:
    """The actor, critic and log std of an ActorCritic held in one flat float32 array,
    with Adam's moments beside it; :meth:`step` is one minibatch's whole update.

    Args:
        policy: the ActorCritic (its weights are copied in; :meth:`write_back` copies them
            out).
        lr, eps, betas: Adam's (torch's defaults for betas).
        max_grad_norm: the global gradient-norm clip (0: none).
    """

    def __init__(self, policy, *, lr: float, eps: float, max_grad_norm: float, betas=(0.9, 0.999)):
        actor, act = _layers(policy.actor)
        critic, _ = _layers(policy.critic)
        self.relu = act == "relu"
        self.torch_params = [p for m in actor + critic for p in (m.weight, m.bias)]
        self.torch_params.append(policy.log_std)
        sizes = [p.numel() for p in self.torch_params]
        self.flat = np.zeros(sum(sizes), np.float32)
        self.grad = np.zeros_like(self.flat)
        self.m = np.zeros_like(self.flat)
        self.v = np.zeros_like(self.flat)
        self.t = 0
        self.lr, self.eps, self.max_grad_norm = lr, eps, max_grad_norm
        self.b1, self.b2 = betas
        views, gviews, off = [], [], 0
        for p, n in zip(self.torch_params, sizes, strict=True):
            shape = tuple(p.shape)
            if p.dim() == 2:  # nn.Linear's (out, in) weight, kept as (in, out) for x @ W
                shape = shape[::-1]
            views.append(self.flat[off : off + n].reshape(shape))
            gviews.append(self.grad[off : off + n].reshape(shape))
            off += n
        na = 2 * len(actor)
        self.actor = list(zip(views[:na:2], views[1:na:2], strict=True))
        self.critic = list(zip(views[na:-1:2], views[na + 1 : -1 : 2], strict=True))
        self.g_actor = list(zip(gviews[:na:2], gviews[1:na:2], strict=True))
        self.g_critic = list(zip(gviews[na:-1:2], gviews[na + 1 : -1 : 2], strict=True))
        self.log_std, self.g_log_std = views[-1], gviews[-1]
        self.views = views
        self.read_torch()

    # ----------------------------------------------------------- weights in and out
    def read_torch(self) -> None:
        """Copy the torch parameters into the flat buffer."""
        for view, p in zip(self.views, self.torch_params, strict=True):
            w = p.detach().cpu().numpy()
            view[...] = w.T if w.ndim == 2 else w

    def write_back(self) -> None:
        """Copy the flat buffer's weights into the torch parameters."""
        with torch.no_grad():
            for view, p in zip(self.views, self.torch_params, strict=True):
                p.copy_(torch.from_numpy(view.T if view.ndim == 2 else view))

    def save_to(self, opt: torch.optim.Optimizer) -> None:
        """Write Adam's step count and moments into a torch Adam(W) over the same
        parameters (``torch_params``), so a checkpoint holds them in torch's layout."""
        off = 0
        for p in self.torch_params:
            n = p.numel()
            moments = []
            for arr in (self.m, self.v):
                chunk = arr[off : off + n].reshape(p.shape[::-1] if p.dim() == 2 else p.shape)
                moments.append(torch.from_numpy((chunk.T if p.dim() == 2 else chunk).copy()))
            opt.state[p] = {
                "step": torch.tensor(float(self.t)),
                "exp_avg": moments[0],
                "exp_avg_sq": moments[1],
            }
            off += n

    def load_from(self, opt: torch.optim.Optimizer) -> None:
        """Take Adam's state from a torch Adam(W) over the same parameters (a resumed run)."""
        states = [opt.state.get(p) for p in self.torch_params]
        if not any(states):
            return
        self.t = int(max(float(s["step"]) for s in states if s))
        off = 0
        for p, st in zip(self.torch_params, states, strict=True):
            n = p.numel()
            for arr, key in ((self.m, "exp_avg"), (self.v, "exp_avg_sq")):
                x = st[key].detach().cpu().numpy() if st else np.zeros(tuple(p.shape), np.float32)
                arr[off : off + n] = (x.T if x.ndim == 2 else x).reshape(-1)
            off += n

    # --------------------------------------------------------------------- the step
    def _forward(self, layers, x):
        hs = [x]
        for k, (w, b) in enumerate(layers):
            x = x @ w + b
            if k < len(layers) - 1:
                x = np.maximum(x, 0) if self.relu else np.tanh(x)
            hs.append(x)
        return hs

    def _backward(self, layers, glayers, hs, dout):
        for k in range(len(layers) - 1, -1, -1):
            w, _ = layers[k]
            gw, gb = glayers[k]
            np.matmul(hs[k].T, dout, out=gw)
            dout.sum(0, out=gb)
            if k:
                dout = dout @ w.T
                h = hs[k]
                dout *= (h > 0) if self.relu else (1 - h * h)

    def step(
        self,
        mb: dict,
        *,
        objective: str,
        clip_range: float,
        clip_range_vf: float | None,
        vf_coef: float,
        ent_coef: float,
        normalize_advantage: bool,
        beta: float = 0.0,
        old_log_std: np.ndarray | None = None,
        lr: float | None = None,
        kl_stop: float | None = None,
    ) -> tuple[float, float, float | None] | None:
        """One minibatch's loss, gradients, clip and Adam step. Returns the surrogate loss,
        the value loss (as ``ppo_loss`` computes them) and the approximate KL of the
        old to the new policy (None unless ``kl_stop``); or None, with nothing changed,
        when that KL exceeds ``kl_stop`` (SB3's target-KL rule: stop before the step)."""
        obs, n = mb["obs"], mb["obs"].shape[0]
        # the actor's forward pass and the probability ratio
        ha = self._forward(self.actor, obs)
        mean, log_std = ha[-1], self.log_std
        inv_std = np.exp(-log_std)
        z = (mb["actions"] - mean) * inv_std
        log_ratio = (-0.5 * z * z - log_std - 0.5 * LOG_2PI).sum(-1) - mb["logp"]
        ratio = np.exp(log_ratio)
        approx_kl = None
        if kl_stop is not None:
            approx_kl = float(np.mean((ratio - 1) - log_ratio))
            if approx_kl > kl_stop:
                return None
        adv = mb["advantages"]
        if normalize_advantage and n > 1:  # torch's std: Bessel-corrected
            adv = adv - adv.mean()
            adv = adv / np.float32(math.sqrt(float(adv @ adv) / (n - 1)) + 1e-8)
        if objective == "clip":
            clipped = np.clip(ratio, 1 - clip_range, 1 + clip_range)
            pg_loss = -float(np.minimum(ratio * adv, clipped * adv).sum()) / n
            # torch.min's gradient goes to the smaller branch (half to each on a tie, where
            # the clamp passes its half on: the unclipped gradient in all)
            live = (ratio * adv <= clipped * adv) | (
                (ratio >= 1 - clip_range) & (ratio <= 1 + clip_range)
            )
            dlogp = -(adv * ratio * live) / n
            dmean = dlogp[:, None] * z * inv_std
            dlog_std = (dlogp[:, None] * (z * z - 1)).sum(0)
        else:  # the surrogate minus beta * KL(new || old)
            old_var, var = np.exp(2 * old_log_std), np.exp(2 * log_std)
            diff = mean - mb["mean"]
            kl = (old_log_std - log_std + (var + diff * diff) / (2 * old_var) - 0.5).sum(-1)
            pg_loss = float(-np.mean(ratio * adv) + beta * np.mean(kl))
            dlogp = -(adv * ratio) / n
            dmean = dlogp[:, None] * z * inv_std + (beta / n) * diff / old_var
            dlog_std = (dlogp[:, None] * (z * z - 1)).sum(0) + beta * (var / old_var - 1)
        self.g_log_std[:] = dlog_std - ent_coef  # the entropy bonus: d/dlog_std = ent_coef
        self._backward(self.actor, self.g_actor, ha, dmean.astype(np.float32))
        # the critic
        hv = self._forward(self.critic, obs)
        values = hv[-1][:, 0]
        dv_scale = np.float32(2.0 * vf_coef / n)
        if clip_range_vf is not None:
            delta = values - mb["values"]
            values = mb["values"] + np.clip(delta, -clip_range_vf, clip_range_vf)
            dv_scale = dv_scale * (np.abs(delta) <= clip_range_vf)
        err = values - mb["returns"]
        v_loss = float(err @ err) / n
        self._backward(self.critic, self.g_critic, hv, (dv_scale * err)[:, None])
        # the global gradient-norm clip
        g = self.grad
        if self.max_grad_norm > 0:
            scale = self.max_grad_norm / (math.sqrt(float(np.dot(g, g))) + 1e-6)
            if scale < 1.0:
                g *= np.float32(scale)
        # Adam as torch's: bias-corrected step size, eps added to the corrected sqrt(v)
        self.t += 1
        lr = self.lr if lr is None else lr
        self.m *= np.float32(self.b1)
        self.m += np.float32(1 - self.b1) * g
        self.v *= np.float32(self.b2)
        g *= g
        self.v += np.float32(1 - self.b2) * g
        denom = np.sqrt(self.v)
        denom *= np.float32(1 / math.sqrt(1 - self.b2**self.t))
        denom += np.float32(self.eps)
        np.divide(self.m, denom, out=denom)
        denom *= np.float32(lr / (1 - self.b1**self.t))
        self.flat -= denom
        return pg_loss, v_loss, approx_kl
