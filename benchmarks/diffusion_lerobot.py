"""Diffusion Policy: iltk against LeRobot's, side by side, one machine, one configuration.

LeRobot 0.4.4 (the newest for Python 3.11) pins torch < 2.11 and imports torchvision, so it
runs in its own venv, this script's worker (``--worker``) started with that venv's Python;
it reads the same episode file through iltk's ``DemoDataset`` (iltk is installed in
its venv too) and draws the same kind of windows (``batch_history_chunks``). Both models get the same configuration:
2 observations, a horizon of 16, 8 executed actions, the U-Net widths ``--down-dims``,
kernel 5, 8 groups, a 128-wide step embedding, 100 DDPM noise levels with the squared
cosine schedule, DDIM with 10 steps at inference, epsilon prediction, batch ``--batch``,
Adam at 1e-4 with LeRobot's betas (0.95, 0.999) and weight decay 1e-6, one torch thread.
State observations: LeRobot's model takes ``observation.state`` (the task's state) and
needs an image or an environment state beside it, so it gets a constant 1-d
``observation.environment_state`` (one more conditioning input per step). Each side
normalizes its own way (LeRobot: min-max to [-1, 1], clip 1; iltk: z-scores, clip 3).

Measured:
- training samples/s: ``--steps`` steps of the whole loop (a batch of windows drawn from
  tensors in memory, the step, and for iltk its EMA update) after 5 warm-up steps;
  LeRobot's loop draws its windows from iltk's in-memory dataset (the model step alone:
  its figure is, if anything, generous), or with ``--lerobot-data loader`` through its own
  pipeline as ``lerobot-train`` builds it: the episode file exported by ``iltk dataset
  export``, ``LeRobotDataset`` with the policy's delta timestamps, a shuffling
  ``DataLoader`` with ``--loader-workers`` workers (lerobot-train's default 4);
- inference latency per action: ``select_action`` of LeRobot / ``PolicyRunner.act`` of
  iltk, one env, averaged over 160 steps (20 chunks);
- with ``--success-steps N``: both trained N steps on the same demonstrations, then the
  success rate over ``--episodes`` unseen episodes of the task (LeRobot's model acting in
  iltk's control loop through its own ``select_action``, on the same episode seeds).

    python benchmarks/diffusion_lerobot.py --lerobot-python /path/to/lerobot-venv/bin/python
    python benchmarks/diffusion_lerobot.py --success-steps 3000 --episodes 100
    python benchmarks/diffusion_lerobot.py --lerobot-data loader --loader-workers 4

The worker's venv: ``torch==2.13.0`` and ``torchvision==0.28.0`` (the registry's CUDA builds,
which run on the CPU), ``lerobot==0.4.4 --no-deps``, ``diffusers einops draccus
huggingface_hub``, and this repository (``pip install -e .``) for the success episodes.
Writes runs/bench/diffusion_lerobot.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

N_OBS, HORIZON, N_ACT = 2, 16, 8


# --------------------------------------------------------------------------- LeRobot
def lerobot_worker(args) -> dict:
    import torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig
    from lerobot.policies.diffusion.modeling_diffusion import DiffusionPolicy

    from iltk.data.dataset import DemoDataset

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    # the same file and the same windows as iltk's side (DemoDataset.batch_history_chunks)
    ds = DemoDataset(args.data)
    states, actions = ds.state.numpy(), ds.actions.numpy()
    s_lo, s_hi = states.min(0), states.max(0)
    a_lo, a_hi = actions.min(0), actions.max(0)

    def minmax(x, lo, hi):
        return 2 * (x - lo) / (hi - lo).clip(min=1e-8) - 1

    s_lo_t, s_hi_t = torch.as_tensor(s_lo), torch.as_tensor(s_hi)
    a_lo_t, a_hi_t = torch.as_tensor(a_lo), torch.as_tensor(a_hi)
    sd, ad = states.shape[1], actions.shape[1]
    cfg = DiffusionConfig(
        n_obs_steps=N_OBS,
        horizon=HORIZON,
        n_action_steps=N_ACT,
        down_dims=tuple(args.down_dims),
        kernel_size=5,
        n_groups=8,
        diffusion_step_embed_dim=128,
        noise_scheduler_type="DDIM",
        num_train_timesteps=100,
        num_inference_steps=10,
        input_features={
            "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(sd,)),
            "observation.environment_state": PolicyFeature(type=FeatureType.ENV, shape=(1,)),
        },
        output_features={"action": PolicyFeature(type=FeatureType.ACTION, shape=(ad,))},
        device="cpu",
    )
    policy = DiffusionPolicy(cfg)
    opt = torch.optim.Adam(policy.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6)
    gen = torch.Generator().manual_seed(args.seed)

    def batch():
        b = ds.batch_history_chunks(ds.sample_indices(args.batch, gen), N_OBS, HORIZON)
        return {
            "observation.state": minmax(b["obs"]["state"], s_lo_t, s_hi_t).float(),
            "observation.environment_state": torch.zeros(args.batch, N_OBS, 1),
            "action": minmax(b["actions"], a_lo_t, a_hi_t).float(),
            "action_is_pad": torch.zeros(args.batch, HORIZON, dtype=torch.bool),
        }

    if args.lerobot_folder:  # LeRobot's own data pipeline, as lerobot-train builds it
        from itertools import cycle

        from lerobot.datasets.factory import resolve_delta_timestamps
        from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

        meta = LeRobotDatasetMetadata("iltk/export", root=args.lerobot_folder)
        lr_ds = LeRobotDataset(
            "iltk/export",
            root=args.lerobot_folder,
            delta_timestamps=resolve_delta_timestamps(cfg, meta),
        )
        loader = torch.utils.data.DataLoader(
            lr_ds,
            batch_size=args.batch,
            shuffle=True,
            num_workers=args.loader_workers,
            drop_last=False,
            prefetch_factor=2 if args.loader_workers > 0 else None,
        )
        batches = cycle(loader)

        def batch():  # noqa: F811 - the loader's batches replace iltk's sampler
            b = next(batches)
            n = len(b["action"])
            return {
                "observation.state": minmax(b["observation.state"], s_lo_t, s_hi_t).float(),
                "observation.environment_state": torch.zeros(n, N_OBS, 1),
                "action": minmax(b["action"], a_lo_t, a_hi_t).float(),
                "action_is_pad": b["action_is_pad"],
            }

    def step():
        loss, _ = policy.forward(batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.detach().item()

    policy.train()
    for _ in range(5):
        step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    train_s = time.perf_counter() - t0
    out = {
        "params": sum(p.numel() for p in policy.parameters()),
        "samples_per_s": args.steps * args.batch / train_s,
        "step_ms": 1e3 * train_s / args.steps,
    }
    policy.eval()
    policy.reset()
    obs = {
        "observation.state": torch.zeros(1, sd),
        "observation.environment_state": torch.zeros(1, 1),
    }
    t0 = time.perf_counter()
    for _ in range(20 * N_ACT):
        policy.select_action(dict(obs))
    out["latency_ms_per_action"] = 1e3 * (time.perf_counter() - t0) / (20 * N_ACT)
    if args.success_steps:
        policy.train()
        t0 = time.perf_counter()
        for _ in range(args.success_steps):
            step()
        out["success_train_s"] = time.perf_counter() - t0
        policy.eval()
        out.update(lerobot_success(policy, args, (s_lo, s_hi, a_lo, a_hi), minmax))
    return out


def lerobot_success(policy, args, stats, minmax) -> dict:
    """LeRobot's model in iltk's control loop (``run_episodes``), on the episodes iltk's
    ``evaluate_policy`` runs (seeds 100,000 + k), one env: ``select_action`` keeps its
    own queues, which ``reset`` clears at each episode start."""
    import torch

    from iltk.envs import make_vector_env
    from iltk.rollout import ControlOutput, run_episodes

    s_lo, s_hi, a_lo, a_hi = stats

    class LeRobotController:
        def reset(self, env_ids):
            policy.reset()

        def act(self, obs, info, envs):
            state = np.asarray(obs["state"] if isinstance(obs, dict) else obs, np.float32)
            batch = {
                "observation.state": torch.as_tensor(
                    minmax(state, s_lo, s_hi), dtype=torch.float32
                ),
                "observation.environment_state": torch.zeros(len(state), 1),
            }
            a = policy.select_action(batch).numpy()
            action = (a + 1) / 2 * np.maximum(a_hi - a_lo, 1e-8) + a_lo
            low, high = envs.single_action_space.low, envs.single_action_space.high
            action = np.clip(action, low, high).astype(np.float32)
            return ControlOutput(executed=action, label=action)

    envs = make_vector_env(args.task, 1)
    try:
        eps = run_episodes(
            envs, LeRobotController(), args.episodes, seed=100_000, record_states=False
        )
    finally:
        envs.close()
    return {"success": float(np.mean([e.success for e in eps])), "episodes": len(eps)}


# --------------------------------------------------------------------------- iltk
def iltk_side(args, dataset: Path, work: Path) -> dict:
    import torch

    from iltk.algos.supervised import TrainConfig, Trainer, train
    from iltk.evaluate import evaluate_policy
    from iltk.policies import PolicyRunner, load_policy
    from iltk.policies.configs import DiffusionConfig

    torch.set_num_threads(args.threads)

    def config(out, steps):
        return TrainConfig(
            algo="diffusion",
            diffusion=DiffusionConfig(
                down_dims=list(args.down_dims), kernel_size=5, n_groups=8, step_embed_dim=128
            ),
            dataset=dataset,
            out=out,
            steps=steps,
            batch_size=args.batch,
            lr=1e-4,
            weight_decay=1e-6,
            warmup_steps=0,
            lr_schedule="constant",
            eval_episodes=0,
            progress=False,
            threads=args.threads,
            seed=args.seed,
            device="cpu",
        )

    trainer = Trainer(config(work / "iltk_speed", args.steps + 5))
    for _ in range(5):
        trainer.train_step()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        info = trainer.train_step()
    float(info["loss"])
    train_s = time.perf_counter() - t0
    policy = trainer.policy.eval()
    out = {
        "params": sum(p.numel() for p in policy.net.parameters())
        + sum(p.numel() for p in policy.encoder.parameters()),
        "samples_per_s": args.steps * args.batch / train_s,
        "step_ms": 1e3 * train_s / args.steps,
    }
    runner = PolicyRunner(policy, 1)
    runner.reset()
    obs = np.zeros((1, policy.config.state_dim), np.float32)
    t0 = time.perf_counter()
    for _ in range(20 * N_ACT):
        runner.act(obs)
    out["latency_ms_per_action"] = 1e3 * (time.perf_counter() - t0) / (20 * N_ACT)
    if args.success_steps:
        t0 = time.perf_counter()
        train(config(work / "iltk_success", args.success_steps))
        out["success_train_s"] = time.perf_counter() - t0
        ev = evaluate_policy(load_policy(work / "iltk_success" / "last"), args.task, args.episodes)
        out.update(success=ev.success_rate, episodes=args.episodes)
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="iltk/Push-v0")
    parser.add_argument("--demos", type=int, default=100)
    parser.add_argument("--steps", type=int, default=200, help="timed training steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--down-dims", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--success-steps", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument(
        "--lerobot-python",
        default=os.environ.get("ILTK_LEROBOT_PYTHON", "/tmp/lrvenv/bin/python"),
        help="the Python of the venv holding lerobot 0.4.4",
    )
    parser.add_argument(
        "--lerobot-data",
        choices=("iltk", "loader"),
        default="iltk",
        help="LeRobot's batches: drawn from iltk's in-memory dataset (the model step alone), "
        "or through LeRobot's own LeRobotDataset and DataLoader on the file exported with "
        "'iltk dataset export' (as lerobot-train feeds it)",
    )
    parser.add_argument(
        "--loader-workers", type=int, default=4, help="DataLoader workers (lerobot-train's 4)"
    )
    parser.add_argument("--lerobot-folder", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="runs/bench/diffusion_lerobot.json")
    args = parser.parse_args()
    if args.worker:
        Path(args.result).write_text(json.dumps(lerobot_worker(args)))
        return
    if not Path(args.lerobot_python).exists():
        parser.error(f"--lerobot-python {args.lerobot_python}: no such Python (see the docstring)")
    from iltk.collect import collect_demos

    work = Path(tempfile.mkdtemp(prefix="iltk_dp_"))
    dataset = Path("runs/bench") / f"dp_{args.task.split('/')[-1]}_{args.demos}.hdf5"
    if not dataset.exists():
        dataset.parent.mkdir(parents=True, exist_ok=True)
        collect_demos(args.task, dataset, args.demos, progress=False)
    version = subprocess.run(
        [args.lerobot_python, "-c", "import importlib.metadata as m; print(m.version('lerobot'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"{args.task}, {args.demos} demos; U-Net {args.down_dims}, batch {args.batch}, "
          f"{args.threads} thread(s); lerobot {version}", flush=True)  # fmt: skip
    results = {"iltk": iltk_side(args, dataset, work)}
    print("iltk   ", json.dumps(results["iltk"]), flush=True)
    cmd = [args.lerobot_python, __file__, "--worker", "--data", str(dataset)]
    cmd += ["--result", str(work / "lerobot.json"), "--task", args.task]
    for name in ("steps", "batch", "threads", "seed", "success_steps", "episodes"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    cmd += ["--down-dims", *map(str, args.down_dims)]
    if args.lerobot_data == "loader":
        from iltk.data.lerobot import export_lerobot

        folder = work / "lerobot_dataset"
        export_lerobot(dataset, folder, progress=False)
        cmd += ["--lerobot-folder", str(folder), "--loader-workers", str(args.loader_workers)]
    subprocess.run(cmd, check=True)
    results["lerobot"] = json.loads((work / "lerobot.json").read_text())
    print("lerobot", json.dumps(results["lerobot"]), flush=True)
    il, lr = results["iltk"], results["lerobot"]
    print(
        f"\n| {args.task}, U-Net {args.down_dims}, batch {args.batch} | iltk | LeRobot {version} | ratio |"
    )
    print("|---|---|---|---|")
    print(f"| training samples/s | {il['samples_per_s']:,.0f} | {lr['samples_per_s']:,.0f} | "
          f"{il['samples_per_s'] / lr['samples_per_s']:.2f}x |")  # fmt: skip
    print(f"| inference ms per action | {il['latency_ms_per_action']:.2f} | "
          f"{lr['latency_ms_per_action']:.2f} | {lr['latency_ms_per_action'] / il['latency_ms_per_action']:.2f}x |")  # fmt: skip
    if args.success_steps:
        print(f"| success after {args.success_steps} steps ({args.episodes} episodes) | "
              f"{il['success']:.0%} | {lr['success']:.0%} | |")  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"lerobot_version": version, "args": vars(args), **results}, indent=1)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
