"""Data-parallel training with PyTorch's own engine: DDP processes started by torchrun.

`torchrun --nproc_per_node N -m iltk train ...` runs N copies of `iltk train`; each finds
its rank in the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) and
:func:`setup` joins them into one process group (gloo on the CPU, nccl on CUDA, one GPU
per local rank). `iltk train --nproc N` starts the same torchrun for a user on one machine
(:func:`launch`). What each rank does is in ``iltk.algos.supervised.train``: its own batches
(sampled with seed + rank, so no two ranks draw the same ones), ``--batch-size`` split over
the ranks, gradients averaged by DDP, rank 0 alone evaluating, logging and writing
checkpoints. torchrun ends every rank when one fails or is killed (no hang), and
forwards Ctrl-C to all.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's place in the job (world 1: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that evaluates, logs and writes."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the ranks (every rank must call it)."""
        if not self.enabled:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def gather(self, value: float) -> list[float]:
        """``value`` of every rank, in rank order (every rank must call it)."""
        if not self.enabled:
            return [value]
        out: list = [None] * self.world
        dist.all_gather_object(out, float(value))
        return out

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def from_env() -> Dist:
    """The rank and world size torchrun set, without joining anything."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    return Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: str) -> tuple[Dist, str]:
    """Join the process group of a torchrun job (nothing for a single process); returns
    this rank's place and its device (``cuda:<local rank>`` when training on CUDA)."""
    d = from_env()
    if not d.enabled:
        return d, device
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(d.local_rank)
        device = f"cuda:{d.local_rank}"
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if cuda else "gloo",
            # a rank that stops answering (torchrun normally ends the job first): fail,
            # do not wait forever
            timeout=datetime.timedelta(minutes=10),
        )
    return d, device


def strip_nproc(argv: list[str]) -> list[str]:
    """The command line without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = i + 1 < len(argv)
            continue
        if arg.startswith("--nproc="):
            continue
        out.append(arg)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m iltk ARGV`` in ``nproc`` processes under torchrun on this machine;
    returns its exit status (non-zero when any rank failed)."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "iltk",
        *strip_nproc(argv),
    ]
    env = dict(os.environ)
    # each rank gets its share of the cores (torchrun's own default is 1 thread per rank)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    if os.path.exists("/sys/class/net/lo"):
        # every rank is on this machine: gloo talks over loopback, whatever the hostname
        # resolves to (containers often resolve it to nothing reachable)
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        return subprocess.run(cmd, env=env).returncode
    except KeyboardInterrupt:  # torchrun forwards the signal to the ranks and stops them
        return 130
