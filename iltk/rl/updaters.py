"""Who takes PPO's minibatch steps: one interface, two backends.

``PPO.update`` owns the epochs (one shuffle per epoch from the run's generator, the batch
cut into minibatch views, SB3's target-KL stop before a step) and asks its updater for one
minibatch step at a time:

- :class:`TorchUpdater` (the default): :func:`iltk.rl.loss.ppo_loss` through autograd,
  plus any auxiliary losses on the actor (fine-tuning's pull towards the start), stepped
  by the training core's ``Optimization`` (AdamW, clipping, the schedule). With
  ``compile`` the whole minibatch step is one ``torch.compile``'d function
  (:class:`CompiledStep`): the same loss's gradients through ``torch.func.grad``, the
  joint gradient-norm clip and torch's own Adam kernel on the optimizer's own moments,
  the learning rates passed in as tensors (a schedule never recompiles). The critic
  warm-up and the target-KL stop (a step decided on the minibatch's KL) run eagerly.
- :class:`NumpyUpdater` (opt-in, ``--ppo.update-backend numpy``): the same loss's gradients
  written out (``iltk.rl.numpy_update``), for a fresh actor-critic on the CPU.
"""

from __future__ import annotations

import torch

from iltk.rl.loss import LossSettings, ppo_loss


class CompiledStep:
    """One minibatch step of :class:`TorchUpdater` as a single compiled function.

    The loss is :func:`ppo_loss` (plus the auxiliary losses) evaluated with the policy's
    parameters swapped for plain tensors, so ``torch.func.grad`` traces its backward pass
    into the same graph; the clip is ``Optimization.step``'s (one norm over every
    gradient, ``max_norm / (norm + 1e-6)`` capped at 1); the step is
    ``torch.optim.adam.adam`` (the single-tensor kernel behind ``torch.optim.AdamW``) on
    the moments and step counts kept in the optimizer's own state, so checkpoints, resume
    and an eager step in between all see one optimizer. The compiled function closes
    over plain values and takes the optimizer's state tensors as arguments: Dynamo's
    guards then check a few tensors per call, not the optimizer's dicts."""

    def __init__(self, policy, optim, loss: LossSettings, aux_losses=()):
        import torch.optim.adam as adam
        from torch.nn.utils.stateless import _reparametrize_module

        self.optim = optim
        names = {id(p): n for n, p in policy.named_parameters()}
        groups = []  # per group: its parameters' names, the parameters, its settings
        for group in optim.opt.param_groups:
            params = [p for p in group["params"] if p.requires_grad]
            if any(id(p) not in names for p in params):
                raise ValueError("--ppo.compile: an optimized parameter is not the policy's")
            beta1, beta2 = group["betas"]
            settings = dict(
                beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"]
            )
            groups.append(([names[id(p)] for p in params], params, settings))
        self.params = [p for _, ps, _ in groups for p in ps]
        loss_kwargs = loss.kwargs()
        aux_losses = list(aux_losses)
        clip = float(optim.grad_clip)
        capturable = self.params[0].device.type == "cuda"  # step counts on the GPU

        def loss_of(params, mb, old_log_std, beta):
            with _reparametrize_module(policy, params):
                total, pg_loss, v_loss, _, mean = ppo_loss(
                    policy, mb, old_log_std, beta, **loss_kwargs, train_actor=True, want_kl=False
                )
                for aux in aux_losses:
                    total = total + aux(mb["obs"], mean, policy.log_std)
            return total, (pg_loss, v_loss)

        def step(mb, old_log_std, beta, lrs, exp_avgs, exp_avg_sqs, steps):
            params = {n: p.detach() for ns, ps, _ in groups for n, p in zip(ns, ps)}
            grads, (pg_loss, v_loss) = torch.func.grad(loss_of, has_aux=True)(
                params, mb, old_log_std, beta
            )
            if clip > 0:
                norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads.values()]))
                scale = (clip / (norm + 1e-6)).clamp(max=1.0)
                grads = {n: g * scale for n, g in grads.items()}
            k = 0
            for (ns, ps, settings), lr in zip(groups, lrs):
                j = k + len(ps)
                adam.adam(
                    ps,
                    [grads[n] for n in ns],
                    exp_avgs[k:j],
                    exp_avg_sqs[k:j],
                    [],
                    steps[k:j],
                    foreach=False,
                    capturable=capturable,
                    decoupled_weight_decay=True,
                    amsgrad=False,
                    lr=lr,
                    maximize=False,
                    **settings,
                )
                k = j
            return pg_loss, v_loss

        self._fn = torch.compile(step, dynamic=False)

    def _state(self) -> tuple[list, list, list]:
        """The optimizer's moments and step counts (created as AdamW's first step would)."""
        state = self.optim.opt.state
        for p in self.params:
            if not state[p]:
                state[p]["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state[p]["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return tuple(
            [state[p][key] for p in self.params] for key in ("exp_avg", "exp_avg_sq", "step")
        )

    def __call__(self, mb, old_log_std, beta):
        device = self.params[0].device
        lrs = [torch.tensor(lr, device=device) for lr in self.optim.sched.get_last_lr()]
        with torch.no_grad():
            out = self._fn(mb, old_log_std, beta, lrs, *self._state())
        self.optim.advance()  # the schedule moves as after an eager step
        return out


class TorchUpdater:
    name = "torch"

    def __init__(self, policy, optim, *, compile: bool = False, aux_losses=()):
        self.policy, self.optim = policy, optim
        self.loss_fn = ppo_loss
        self.aux_losses = list(aux_losses)
        self.compile = compile
        self.compiled: CompiledStep | None = None  # built at the first step (its loss settings)

    def prepare(self, batch: dict) -> dict:
        return batch

    def take(self, arrays: dict, perm: torch.Tensor) -> dict:
        return {k: v[perm] for k, v in arrays.items()}

    def step(self, mb, old_log_std, beta, loss: LossSettings, *, train_actor, kl_limit):
        """One minibatch step; returns (surrogate loss, value loss) as tensors, or None
        with nothing changed when the approximate KL exceeds ``kl_limit``."""
        if self.compile and train_actor and kl_limit is None:
            if self.compiled is None or self.compiled_for != loss:
                self.compiled = CompiledStep(self.policy, self.optim, loss, self.aux_losses)
                self.compiled_for = loss
            return self.compiled(mb, old_log_std, beta)
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
