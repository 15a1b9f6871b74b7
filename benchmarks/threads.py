"""Which torch thread count to train and evaluate with: 1 or more, idle and busy.

Trains bc, bc-rnn and act (their defaults) for a few dozen to a few hundred gradient steps
on scripted Push demos with ``--threads 1``, ``--threads 2`` and ``--threads 0`` (auto: the
cores no other process uses, re-measured every 5 s): on an idle machine ("idle"), with one
CPU-bound process beside it from the start ("busy": a stand-in for a second job, a
browser, a test suite), and with that process starting 6 s into the run ("later"); and
evaluates the act policy likewise. Each run is its own ``iltk``
process; the training figure is the run's own gradient steps per second (startup
excluded), the evaluation figure the wall time of ``iltk eval``.

    python benchmarks/threads.py                   # about 15 minutes on 2 cores
    python benchmarks/threads.py --algos bc bc-rnn # quicker

Writes runs/bench/threads.json and runs/bench/threads.png.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ILTK = [sys.executable, "-m", "iltk"]


def _spin(stop, delay: float = 0.0) -> None:
    time.sleep(delay)
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


class Busy:
    """One CPU-bound process beside the measured command (from ``delay`` s on)."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def __enter__(self):
        self.stop = mp.Event()
        self.proc = mp.Process(target=_spin, args=(self.stop, self.delay), daemon=True)
        self.proc.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()


def run(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    res = subprocess.run([*ILTK, *argv], env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"iltk {' '.join(argv)} failed:\n{res.stderr[-2000:]}")
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[300, 60, 30],
        help="gradient steps per run, one per algo (bc's are fast, act's slow on a CPU)",
    )
    parser.add_argument("--algos", nargs="+", default=["bc", "bc-rnn", "act"])
    parser.add_argument(
        "--threads", nargs="+", type=int, default=[1, 2, 0], help="counts to try (0: auto)"
    )
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "runs/bench/threads.json"))
    args = parser.parse_args()
    # the thread count is the command's flag alone: no inherited OMP/MKL setting
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.setdefault("MUJOCO_GL", "egl")
    scratch = Path(tempfile.mkdtemp(prefix="iltk_threads_"))
    data = scratch / "push.hdf5"
    run(["collect", "--episodes", "30", "--out", str(data)], env)
    rows = []
    steps = dict(zip(args.algos, args.steps + args.steps[-1:] * len(args.algos)))
    print(f"{os.cpu_count()} CPUs; gradient steps per run: {steps}")
    print(f"{'algo':<8}{'load':<6}{'threads':>8}{'steps/s':>10}{'eval s':>9}")
    loads = {"idle": None, "busy": 0.0, "later": 6.0}  # later: the other job starts after 6 s
    for load, delay in loads.items():
        for algo in args.algos:
            for threads in args.threads:
                out = scratch / f"{algo}_{load}_{threads}"
                argv = ["train", "--algo", algo, "--dataset", str(data), "--out", str(out)]
                argv += ["--steps", str(steps[algo]), "--eval-episodes", "0", "--no-progress"]
                argv += ["--threads", str(threads), "--device", "cpu"]
                if delay is None:
                    run(argv, env)
                else:
                    with Busy(delay):
                        run(argv, env)
                res = json.loads((out / "results.json").read_text())
                steps_s = res["samples_per_s"] / 256
                eval_s = None
                if algo == args.algos[-1] and args.eval_episodes and threads >= 1:
                    ev = ["eval", "--policy", str(out / "last"), "--device", "cpu"]
                    ev += ["--episodes", str(args.eval_episodes), "--threads", str(threads)]
                    if delay is None:
                        eval_s = run(ev, env)
                    else:
                        with Busy(delay):
                            eval_s = run(ev, env)
                used = res.get("threads", threads)
                rows.append(
                    {"algo": algo, "load": load, "threads": threads, "steps_per_s": steps_s}
                    | {"threads_used": used}
                    | ({"eval_s": eval_s} if eval_s is not None else {})
                )
                shown = "-" if eval_s is None else f"{eval_s:.1f}"
                name = f"auto={used}" if threads == 0 else str(threads)
                print(f"{algo:<8}{load:<6}{name:>8}{steps_s:>10.1f}{shown:>9}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(
        json.dumps({"cpus": os.cpu_count(), "steps": steps, "rows": rows}, indent=2)
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / (len(loads) * len(args.threads))  # (bars: idle solid, busy paler)
    for i, algo in enumerate(args.algos):
        j = 0
        for load in loads:
            for threads in args.threads:
                row = next(
                    r
                    for r in rows
                    if r["algo"] == algo and r["load"] == load and r["threads"] == threads
                )
                ax.bar(
                    i + (j - (len(loads) * len(args.threads) - 1) / 2) * width,
                    row["steps_per_s"],
                    width,
                    color=f"C{args.threads.index(threads)}",
                    alpha={"idle": 1.0, "busy": 0.45, "later": 0.7}[load],
                    hatch="//" if load == "later" else None,
                    label=(
                        f"{'auto' if threads == 0 else threads} thread{'s' * (threads != 1)}, {load}"
                        if i == 0
                        else None
                    ),
                )
                j += 1
    ax.set_xticks(range(len(args.algos)), args.algos)
    ax.set_ylabel("gradient steps / s (log)")
    ax.set_yscale("log")
    ax.set_title(
        f"iltk train: torch threads, idle and beside one busy process ({os.cpu_count()} CPUs)"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(Path(args.out).with_suffix(".png"), dpi=120)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")


if __name__ == "__main__":
    main()
