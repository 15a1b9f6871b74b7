"""One PPO minibatch step, Hopper-sized, in each of iltk's update backends.

A step is the whole of one minibatch's update: the clipped loss's forward pass, its
gradients, the global gradient-norm clip and Adam. The networks are PPO's defaults (64-64
tanh actor and critic, 11 observations, 3 actions: Hopper-v5's shapes), the minibatch 64
samples, one torch thread. Rows:

- torch eager (the default): ``iltk.rl.loss.ppo_loss`` + ``Optimization.step`` (autograd,
  fused AdamW);
- torch, the whole step compiled (``--ppo.compile``): ``iltk.rl.updaters.CompiledStep``,
  the loss's gradients through ``torch.func.grad``, the clip and Adam in one
  ``torch.compile``'d function;
- numpy: ``iltk.rl.numpy_update.NumpyPPO.step`` (``--ppo.update-backend numpy``).

Reported: the best of ``--repeats`` means over ``--steps`` steps each, after a warm-up
(which includes the compiles). Run it on an idle core.

    python benchmarks/ppo_update_step.py

Writes runs/bench/ppo_update_step.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from iltk.policies import make_policy
from iltk.policies.configs import ActorCriticConfig
from iltk.rl.loss import LossSettings
from iltk.rl.numpy_update import NumpyPPO
from iltk.rl.updaters import TorchUpdater
from iltk.training import Optimization

OBS, ACT, BATCH = 11, 3, 64
KW = dict(
    objective="clip",
    clip_range=0.2,
    clip_range_vf=None,
    vf_coef=0.5,
    ent_coef=0.0,
    normalize_advantage=True,
)


def setup():
    torch.manual_seed(0)
    policy = make_policy(
        "actor-critic",
        ActorCriticConfig(
            state_dim=OBS,
            action_dim=ACT,
            lowdim_keys=["state"],
            action_low=[-1.0] * ACT,
            action_high=[1.0] * ACT,
        ),
    )
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(BATCH, OBS, generator=g)
    with torch.no_grad():
        mean = policy.actor(obs)
    mb = {
        "obs": obs,
        "actions": mean + torch.randn(BATCH, ACT, generator=g),
        "advantages": torch.randn(BATCH, generator=g),
        "returns": torch.randn(BATCH, generator=g),
        "logp": torch.randn(BATCH, generator=g) - 3,
        "mean": mean,
        "values": torch.randn(BATCH, generator=g),
    }
    optim = Optimization(
        policy.parameters(), lr=3e-4, total_steps=10**8, grad_clip=0.5, eps=1e-5, amp=False
    )
    return policy, mb, optim


def torch_step(compile: bool):
    policy, mb, optim = setup()
    updater = TorchUpdater(policy, optim, compile=compile)
    old_log_std, beta = policy.log_std.detach().clone(), torch.tensor(1.0)
    loss = LossSettings(**KW)

    def one():
        updater.step(mb, old_log_std, beta, loss, train_actor=True, kl_limit=None)

    return one


def numpy_step():
    policy, mb, _ = setup()
    fast = NumpyPPO(policy, lr=3e-4, eps=1e-5, max_grad_norm=0.5)
    arrays = {k: v.numpy() for k, v in mb.items()}

    def one():
        fast.step(arrays, **KW)

    return one


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")
    torch.set_num_threads(1)
    rows = {
        "torch eager (the default)": lambda: torch_step(False),
        "torch, the whole step compiled (--ppo.compile)": lambda: torch_step(True),
        "numpy (--ppo.update-backend numpy)": numpy_step,
    }
    results = {}
    for name, make in rows.items():
        one = make()
        t0 = time.perf_counter()
        for _ in range(50):
            one()
        warm = time.perf_counter() - t0
        best = min(_mean_time(one, args.steps) for _ in range(args.repeats))
        results[name] = {"ms": best * 1e3, "warmup_s": warm}
        print(f"{name:48} {best * 1e3:6.3f} ms a step (warm-up {warm:.1f} s)")
    base = results["torch eager (the default)"]["ms"]
    for name, r in results.items():
        print(f"{name:48} {base / r['ms']:5.2f}x torch eager")
    out = Path("runs/bench/ppo_update_step.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"torch": torch.__version__, "numpy": np.__version__, **results}, indent=1)
    )
    print(f"wrote {out}")


def _mean_time(one, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t0) / steps


if __name__ == "__main__":
    main()
