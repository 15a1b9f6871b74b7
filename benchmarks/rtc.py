"""Real-time chunking against plain receding horizon: the jump between chunks, and success.

One trained diffusion/flow checkpoint acts on the same unseen episodes with each
``--rtc`` setting (0: plain receding horizon, every chunk generated afresh; K: each chunk
starts with the K actions the last one planned next, the rest inpainted around them).
Reported per setting: success over ``--episodes``, and the change of the executed action
from one step to the next (max over the action's dims) at the seams (the first generated
action of a chunk after the last of the old plan) and at the other steps, as means and
95th percentiles.

    python benchmarks/rtc.py --policy runs/bench/bc_suite/.../last --rtc 0 2 4

Writes runs/bench/rtc.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402

from iltk.controllers import PolicyController  # noqa: E402
from iltk.envs import make_vector_env  # noqa: E402
from iltk.evaluate import policy_for_task  # noqa: E402
from iltk.policies import CheckpointError, PolicyRunner  # noqa: E402
from iltk.rollout import run_episodes  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy", required=True, help="a diffusion checkpoint folder")
    parser.add_argument("--rtc", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=100_000)
    parser.add_argument("--out", default="runs/bench/rtc.json")
    args = parser.parse_args()
    try:  # the checkpoint, its task and the env settings it was trained under
        policy, task, env_kwargs = policy_for_task(Path(args.policy), None)
    except (CheckpointError, ValueError) as err:
        parser.error(str(err))
    if type(policy).name != "diffusion":
        parser.error(f"{args.policy}: a {type(policy).name} policy; this compares diffusion's")
    rows = {}
    print(f"{args.policy}: {policy.config.objective}, {task}, {args.episodes} episodes")
    print(
        f"{'rtc':>4} {'success':>8} {'seam mean':>10} {'seam p95':>9} {'other mean':>11} {'other p95':>10}"
    )
    configs = {}
    for k in args.rtc:  # every setting checked before any episode runs
        try:
            configs[k] = dataclasses.replace(policy.config, rtc_steps=k)
        except ValueError as err:
            parser.error(f"--rtc {k}: {err}")
    for k in args.rtc:
        policy.config = configs[k]
        runner = PolicyRunner(policy, args.num_envs)
        envs = make_vector_env(task, args.num_envs, **env_kwargs)
        try:
            eps = run_episodes(
                envs, PolicyController(runner), args.episodes, seed=args.seed, record_states=False
            )
        finally:
            envs.close()
        seam, inner = np.array(runner.seam_changes), np.array(runner.inner_changes)
        rows[k] = {
            "success": float(np.mean([e.success for e in eps])),
            "seam_mean": float(seam.mean()),
            "seam_p95": float(np.percentile(seam, 95)),
            "inner_mean": float(inner.mean()),
            "inner_p95": float(np.percentile(inner, 95)),
            "seams": len(seam),
        }
        r = rows[k]
        print(f"{k:>4} {r['success']:>8.0%} {r['seam_mean']:>10.4f} {r['seam_p95']:>9.4f} "
              f"{r['inner_mean']:>11.4f} {r['inner_p95']:>10.4f}", flush=True)  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"policy": args.policy, "task": task, "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
