"""A flow policy sampled three ways: from z = 0, from z ~ N(0, I), and the mean over z.

The lecture's table from "Much Ado About Noising" (Pan et al.): if a flow policy's gain
came from representing several modes, sampling from z = 0 (one deterministic draw) or
averaging draws would cost success; the paper finds little difference. One trained flow
checkpoint (``--diffusion.objective flow``) acts on the same unseen episodes with each
``flow_init``; success over ``--episodes``.

    python benchmarks/flow_sampling.py --policy runs/bench/.../flow_100/last

Writes runs/bench/flow_sampling.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


from iltk.evaluate import evaluate_policy, policy_for_task  # noqa: E402
from iltk.policies import CheckpointError  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--policy", required=True, help="a flow checkpoint folder")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=8, help="draws averaged by 'mean'")
    parser.add_argument("--out", default="runs/bench/flow_sampling.json")
    args = parser.parse_args()
    try:  # the checkpoint, its task and the env settings it was trained under
        policy, task, env_kwargs = policy_for_task(Path(args.policy), None)
    except (CheckpointError, ValueError) as err:
        parser.error(str(err))
    if getattr(policy.config, "objective", None) != "flow":
        parser.error(f"{args.policy}: not a flow policy (--diffusion.objective flow)")
    rows = {}
    for init in ("zero", "noise", "mean"):
        policy.config = dataclasses.replace(
            policy.config, flow_init=init, flow_mean_samples=args.samples
        )
        res = evaluate_policy(policy, task, args.episodes, num_envs=2, env_kwargs=env_kwargs)
        rows[init] = res.success_rate
        print(f"{task} flow_init {init:<5}: success {res.success_rate:.0%}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"policy": args.policy, "task": task, "success": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
