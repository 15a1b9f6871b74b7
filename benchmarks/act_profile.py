"""Where ACT's or Diffusion Policy's training step goes: FLOPs per step against its time.

For ACT at its defaults (and smaller widths), or with ``--algo diffusion`` Diffusion
Policy's U-Net at three widths, on a task's shapes, one training step at a batch size is timed and its floating-point work counted (torch's FlopCounterMode over the
forward and backward pass). Dividing the two gives the GFLOP/s the step achieves, set
against the GFLOP/s of a plain large fp32 matmul on the same device: a step near that
ceiling costs what its FLOPs cost (the fix is fewer FLOPs: a smaller model or a GPU), a
step far below it has overhead to remove. The top operators of one step (torch.profiler)
say where the time goes.

    python benchmarks/act_profile.py                       # Lift's shapes, batch 256, CPU
    python benchmarks/act_profile.py --task iltk/Push-v0 --batch 64
    python benchmarks/act_profile.py --algo diffusion --task iltk/PointMaze-v0 --batch 64 --threads 1

Writes runs/bench/act_profile.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from iltk.envs import env_shapes  # noqa: E402
from iltk.policies import make_policy, resolve_device  # noqa: E402
from iltk.policies.configs import ACTConfig, DiffusionConfig  # noqa: E402

SIZES = {
    "act": {
        "default (d256, ff1024)": {},
        "d128, ff512": {"d_model": 128, "dim_feedforward": 512},
        "d64, ff256": {"d_model": 64, "dim_feedforward": 256},
    },
    "diffusion": {
        "default (U-Net 32 64 128)": {},
        "U-Net 64 128 256": {"down_dims": [64, 128, 256]},
        "U-Net 256 512 1024 (Chi et al.)": {"down_dims": [256, 512, 1024]},
    },
}
CONFIGS = {"act": ACTConfig, "diffusion": DiffusionConfig}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, n: int = 1024, reps: int = 20) -> float:
    """The device's fp32 matmul rate: the ceiling a training step can approach."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def make_batch(cfg, batch: int, device: torch.device) -> dict:
    if isinstance(cfg, DiffusionConfig):  # the dataset's history_chunk batches
        return {
            "obs": {"state": torch.randn(batch, cfg.n_obs_steps, cfg.state_dim, device=device)},
            "actions": torch.rand(batch, cfg.horizon, cfg.action_dim, device=device) * 2 - 1,
            "pad": torch.zeros(batch, cfg.horizon, dtype=torch.bool, device=device),
            "weights": torch.ones(batch, device=device),
        }
    return {
        "obs": {"state": torch.randn(batch, cfg.state_dim, device=device)},
        "actions": torch.randn(batch, cfg.chunk_size, cfg.action_dim, device=device),
        "pad": torch.zeros(batch, cfg.chunk_size, dtype=torch.bool, device=device),
        "weights": torch.ones(batch, device=device),
    }


def step_fn(policy, opt, batch):
    def step():
        loss, _ = policy(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(algo: str, cfg, batch_size: int, device: torch.device, reps: int) -> dict:
    torch.manual_seed(0)
    policy = make_policy(algo, cfg).to(device).train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batch = make_batch(cfg, batch_size, device)
    step = step_fn(policy, opt, batch)
    with FlopCounterMode(display=False) as counter:
        loss, _ = policy(batch)
        loss.backward()
    flops = counter.get_total_flops()
    for _ in range(2):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    sync(device)
    seconds = (time.perf_counter() - t0) / reps
    return {
        "params_M": sum(p.numel() for p in policy.parameters()) / 1e6,
        "gflop_per_step": flops / 1e9,
        "s_per_step": seconds,
        "gflops_achieved": flops / seconds / 1e9,
        "samples_per_s": batch_size / seconds,
    }


def top_ops(algo: str, cfg, batch_size: int, device: torch.device, n: int = 8) -> list[dict]:
    policy = make_policy(algo, cfg).to(device).train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    step = step_fn(policy, opt, make_batch(cfg, batch_size, device))
    step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        step()
        sync(device)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {"op": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[:n]
    ]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--algo", choices=tuple(SIZES), default="act")
    parser.add_argument("--task", default="iltk/Lift-v0")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--out", default="runs/bench/act_profile.json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    state_dim, action_dim, low, high = env_shapes(args.task, {})

    def make_config(**kw):
        bounds = {"action_low": list(low), "action_high": list(high)}
        return CONFIGS[args.algo](state_dim=state_dim, action_dim=action_dim, **bounds, **kw)

    peak = matmul_gflops(device)
    print(
        f"{args.algo} training step on {args.task} shapes (state {state_dim}, action {action_dim}), "
        f"batch {args.batch}, {device} with {torch.get_num_threads()} threads; "
        f"fp32 matmul ceiling {peak:.0f} GFLOP/s"
    )
    rows = []
    print(
        f"{'size':24} {'params':>8} {'GFLOP/step':>10} {'s/step':>8} {'GFLOP/s':>8} "
        f"{'of ceiling':>10} {'samples/s':>10}"
    )
    for label, kw in SIZES[args.algo].items():
        cfg = make_config(**kw)
        r = {"size": label, **kw, **measure(args.algo, cfg, args.batch, device, args.reps)}
        r["of_ceiling"] = r["gflops_achieved"] / peak
        rows.append(r)
        print(
            f"{label:24} {r['params_M']:7.2f}M {r['gflop_per_step']:10.1f} "
            f"{r['s_per_step']:8.3f} {r['gflops_achieved']:8.0f} {r['of_ceiling']:10.0%} "
            f"{r['samples_per_s']:10.0f}"
        )
    ops = top_ops(args.algo, make_config(), args.batch, device)
    print("\nwhere one default step's time goes (self CPU time):")
    for op in ops:
        print(f"  {op['share']:6.1%}  {op['op']} ({op['calls']} calls)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "algo": args.algo,
        "task": args.task,
        "batch": args.batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_gflops": peak,
        "rows": rows,
        "top_ops": ops,
    }
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
