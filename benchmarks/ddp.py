"""Data-parallel training on the CPU: 2 processes (`iltk train --nproc 2`, gloo) against 1,
same global batch and steps: wall-clock and final success.

    python benchmarks/ddp.py --tasks iltk/Reach-v0 iltk/Push-v0 --demos 100 --steps 5000

Each row trains the default MLP BC through the command line (as a user would: the
2-process row goes through torchrun) without rollouts during training, then evaluates
OUT/last on ``--eval-episodes`` unseen starts. Writes runs/bench/ddp.json. Run it on an
otherwise idle machine: both rows want every core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from iltk.collect import collect_demos  # noqa: E402
from iltk.evaluate import evaluate_policy  # noqa: E402
from iltk.policies import load_policy  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["iltk/Reach-v0", "iltk/Push-v0"])
    parser.add_argument("--demos", type=int, default=100)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--eval-episodes", type=int, default=100)
    args = parser.parse_args()
    root = Path("runs/bench/ddp")
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks:
        data = root / f"{task.split('/')[-1]}_{args.demos}.hdf5"
        if not data.exists():
            collect_demos(task, data, args.demos, progress=False)
        for nproc in (1, 2):
            out = root / f"{task.split('/')[-1]}_{nproc}proc"
            cmd = [sys.executable, "-m", "iltk", "train", "--dataset", str(data), "--out", str(out)]
            cmd += ["--steps", str(args.steps), "--batch-size", str(args.batch_size)]
            cmd += ["--eval-episodes", "0", "--no-progress", "--overwrite", "--nproc", str(nproc)]
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - t0
            res = evaluate_policy(load_policy(out / "last"), task, args.eval_episodes, seed=100_000)
            rows.append(
                {"task": task, "nproc": nproc, "seconds": seconds, "success": res.success_rate}
            )
            print(
                f"{task:18} {nproc} process(es): {seconds:6.1f} s, success {res.success_rate:.0%}",
                flush=True,
            )
    (Path("runs/bench") / "ddp.json").write_text(
        json.dumps({"args": vars(args), "rows": rows}, indent=2)
    )
    print("wrote runs/bench/ddp.json")


if __name__ == "__main__":
    main()
