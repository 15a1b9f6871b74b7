"""Training throughput: the on-device dataset against robomimic's SequenceDataset.

For each algo, the same model and batch size train for a fixed number of steps, fed
either by ``DemoDataset`` (tensors on the device, batches gathered by index arithmetic)
or by the peer: robomimic 0.3.0's ``SequenceDataset`` in its fastest mode
(``hdf5_cache_mode="all"``) behind a shuffling DataLoader, same file, same sequence
length (1 for BC, the window for BC-RNN, the chunk for ACT), same batch. Reports samples/s
and the ratio (aim: >= 5x on CPU). On CUDA it also samples GPU utilization (nvidia-smi).

    python benchmarks/train_throughput.py [--steps 100] [--batch 256] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from peers import robomimic_loader, robomimic_version  # noqa: E402

from iltk.algos.supervised import TrainConfig, Trainer  # noqa: E402
from iltk.collect import collect_demos  # noqa: E402


class GpuSampler:
    def __init__(self):
        self.values, self.stop = [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                )
                self.values.append(float(out.stdout.split()[0]))
            except Exception:
                return
            time.sleep(0.2)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=2)


def time_steps(trainer: Trainer, steps: int, batches=None) -> float:
    dev = trainer.device
    for _ in range(3):  # warm-up (allocator, kernels)
        trainer.train_step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if batches is None:
        for _ in range(steps):
            trainer.train_step()
    else:
        it = iter(batches)
        for _ in range(steps):
            batch = next(it)
            batch = torch.utils._pytree.tree_map(lambda x: x.to(dev, non_blocking=True), batch)
            trainer.train_step(batch)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--dataset", default=None, help="episode file (default: 200 scripted Push demos)"
    )
    parser.add_argument("--algos", nargs="+", default=["bc", "bc-rnn", "act"])
    parser.add_argument("--out", default="runs/bench/train_throughput.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.dataset) if args.dataset else Path(tmp) / "push.hdf5"
        if not args.dataset:
            collect_demos("iltk/Push-v0", path, 200, num_envs=2, progress=False)
        rows = []
        for algo in args.algos:
            cfg = TrainConfig(
                algo=algo,
                dataset=path,
                out=Path(tmp) / algo,
                batch_size=args.batch,
                device=args.device,
                task="none",
                progress=False,
            )
            trainer = Trainer(cfg)
            spec = trainer.spec
            kind = spec["kind"]
            length = spec.get("seq_len", spec.get("chunk", 1))
            with GpuSampler() as gpu_fast:
                t_fast = time_steps(trainer, args.steps)
            loader, _ = robomimic_loader(
                path, trainer.ds.obs_keys, length, args.batch, args.workers, drop_last=True
            )
            keys = trainer.ds.lowdim_keys

            def as_iltk_batch(b, kind=kind, keys=keys):
                """robomimic's (B, L, ...) sequences in the layout the policy's loss takes."""
                state = torch.cat([b["obs"][k].float() for k in keys], -1)
                actions = b["actions"].float()
                n = actions.shape[0]
                if kind == "step":
                    return {"obs": {"state": state[:, 0]}, "actions": actions[:, 0],
                            "weights": torch.ones(n)}  # fmt: skip
                if kind == "window":
                    return {"obs": {"state": state}, "actions": actions,
                            "mask": torch.ones(actions.shape[:2], dtype=torch.bool),
                            "weights": torch.ones(actions.shape[:2])}  # fmt: skip
                return {"obs": {"state": state[:, 0]}, "actions": actions,
                        "pad": torch.zeros(actions.shape[:2], dtype=torch.bool),
                        "weights": torch.ones(n)}  # fmt: skip

            def forever(dl=loader):
                while True:
                    yield from (as_iltk_batch(b) for b in dl)

            with GpuSampler() as gpu_slow:
                t_slow = time_steps(trainer, args.steps, forever())
            row = {
                "algo": algo,
                "device": str(trainer.device),
                "batch": args.batch,
                "steps": args.steps,
                "on_device_samples_per_s": args.steps * args.batch / t_fast,
                "peer": f"robomimic {robomimic_version()} SequenceDataset, hdf5_cache_mode=all",
                "peer_samples_per_s": args.steps * args.batch / t_slow,
                "speedup": t_slow / t_fast,
                "gpu_util_on_device_pct": float(np.mean(gpu_fast.values))
                if gpu_fast.values
                else None,
                "gpu_util_peer_pct": float(np.mean(gpu_slow.values)) if gpu_slow.values else None,
            }
            rows.append(row)
            print(
                f"{algo:<7} {row['device']:<5} on-device {row['on_device_samples_per_s']:>10.0f}/s  "
                f"robomimic {row['peer_samples_per_s']:>9.0f}/s  speedup {row['speedup']:.1f}x"
                + (
                    f"  GPU util {row['gpu_util_on_device_pct']:.0f}% vs {row['gpu_util_peer_pct']:.0f}%"
                    if row["gpu_util_on_device_pct"] is not None
                    else ""
                )
            )
            trainer.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
