"""Who takes PPO's minibatch steps: one interface, two backends.

``PPO.update`` owns the epochs (one shuffle per epoch from the run's generator, the batch
cut into minibatch views, SB3's target-KL stop before a step) and asks its updater for one
minibatch step at a time:

- :class:`TorchUpdater` (the default): :func:`iltk.rl.loss.ppo_loss` through autograd,
  plus any auxiliary losses on the actor (fine-tuning's pull towards the start), stepped
  by the training core's ``Optimization`` (AdamW, clipping, the schedule); with
  ``compile`` the loss runs through ``torch.compile``.
- :class:`NumpyUpdater` (opt-in, ``--ppo.update-backend numpy``): the same loss's gradients
  written out (``iltk.rl.numpy_update``), for a fresh actor-critic on the CPU.
"""

from __future__ import annotations

import torch

from iltk.rl.loss import LossSettings, ppo_loss

_compiled_loss = None


def compiled_ppo_loss():
    """``ppo_loss`` through ``torch.compile`` (forward and backward as generated kernels),
    compiled on its first call for each shape and flag."""
    global _compiled_loss
    if _compiled_loss is None:
        _compiled_loss = torch.compile(ppo_loss, dynamic=False)
    return _compiled_loss


class TorchUpdater:
    name = "torch"

    def __init__(self, policy, optim, *, compile: bool = False, aux_losses=()):
        self.policy, self.optim = policy, optim
        self.loss_fn = compiled_ppo_loss() if compile else ppo_loss
        self.aux_losses = list(aux_losses)

    def prepare(self, batch: dict) -> dict:
        return batch

    def take(self, arrays: dict, perm: torch.Tensor) -> dict:
        return {k: v[perm] for k, v in arrays.items()}

    def step(self, mb, old_log_std, beta, loss: LossSettings, *, train_actor, kl_limit):
        """One minibatch step; returns (surrogate loss, value loss) as tensors, or None
        with nothing changed when the approximate KL exceeds ``kl_limit``."""
        total, pg_loss, v_loss, approx_kl, mean = self.loss_fn(
            self.policy,
            mb,
            old_log_std,
            beta,
            **loss.kwargs(),
            train_actor=train_actor,
            want_kl=kl_limit is not None,
        )
        if kl_limit is not None and float(approx_kl) > kl_limit:
            return None
        if train_actor:
            for aux in self.aux_losses:
                total = total + aux(mb["obs"], mean, self.policy.log_std)
        self.optim.step(total)
        return pg_loss.detach(), v_loss.detach()

    def finish(self) -> None:
        pass

    def save_to(self, opt) -> None:
        pass


class NumpyUpdater:
    name = "numpy"

    def __init__(self, policy, optim, *, max_grad_norm: float):
        from iltk.rl.numpy_update import NumpyPPO

        self.optim = optim
        self.fast = NumpyPPO(policy, lr=optim.lr, eps=1e-5, max_grad_norm=max_grad_norm)
        self.fast.load_from(optim.opt)  # a resumed run's Adam moments

    def prepare(self, batch: dict) -> dict:
        self.fast.read_torch()
        return {k: v.cpu().numpy() for k, v in batch.items()}

    def take(self, arrays: dict, perm: torch.Tensor) -> dict:
        idx = perm.cpu().numpy()
        return {k: v[idx] for k, v in arrays.items()}

    def step(self, mb, old_log_std, beta, loss: LossSettings, *, train_actor, kl_limit):
        if not train_actor:
            raise ValueError(
                "the numpy update has no critic warm-up: use --ppo.update-backend torch"
            )
        out = self.fast.step(
            mb,
            **loss.kwargs(),
            beta=float(beta),
            old_log_std=old_log_std.cpu().numpy(),
            lr=self.optim.advance(),
            kl_stop=kl_limit,
        )
        return None if out is None else (out[0], out[1])

    def finish(self) -> None:
        self.fast.write_back()

    def save_to(self, opt) -> None:
        """Adam's moments, in torch's layout (a checkpoint resumes under either backend)."""
        self.fast.save_to(opt)
