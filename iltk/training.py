"""The one training core: what every trainer needs besides its loss and its update.

- :func:`seed_everything`: Python, numpy and torch seeded together.
- :class:`Optimization`: AdamW, a linear warm-up then cosine / linear / constant, bf16
  autocast on CUDA, gradient-norm clipping; ``step(loss)`` returns the logged values as
  tensors (no device-to-host sync per step).
- :class:`RunningMean`: losses averaged on the device and read once per log period.
- :class:`RunFolder`: the run folder of a training command: refuses to mix a new run into
  an earlier one (``--resume`` / ``--overwrite``), ``config.json``, ``metrics.csv`` (rows
  logged after the checkpoint resumed from are dropped), TensorBoard in ``tb/``, plots in
  ``plots/``, ``best/`` and ``last/`` checkpoints swapped in atomically (``last/`` holds the
  training state ``--resume`` restores), and one clear error when the disk fills.

Supervised imitation (``iltk.algos.supervised``) is built on it; so are the RL algorithms.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from iltk.files import (
    OutputError,
    WriterLock,
    atomic_write,
    atomic_write_text,
    check_output,
    disk_error,
    is_disk_error,
    recover_dir,
    remove_leftovers,
    remove_outputs,
    write_bytes,
)

log = logging.getLogger("iltk")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(
    warmup_steps: int, total_steps: int, schedule: str = "cosine"
) -> Callable[[int], float]:
    """The learning-rate factor at a step: linear warm-up over ``warmup_steps``, then
    ``cosine`` (to 0 at ``total_steps``), ``linear`` (to 0) or ``constant``."""
    if schedule not in ("cosine", "linear", "constant"):
        raise ValueError(f"schedule must be cosine, linear or constant, got {schedule!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        if schedule == "constant":
            return 1.0
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class Optimization:
    """An optimizer, its schedule, autocast and gradient clipping, stepped as one.

    Args:
        params: the parameters to optimize, or groups of them (dicts with "params" and
            their own "lr", e.g. an actor's and a critic's).
        lr: the peak learning rate.
        total_steps: steps of the whole run (the schedule's horizon).
        warmup_steps, schedule: see :func:`lr_lambda`.
        weight_decay: AdamW's decoupled weight decay (0: Adam).
        grad_clip: the gradient-norm clip (0: none).
        device: the training device (bf16 autocast on CUDA).
        eps: Adam's epsilon (PPO uses 1e-5, as SB3 and CleanRL).
        amp: bf16 autocast on CUDA.
        fused: the fused AdamW kernel (on the CPU a minibatch step of PPO's 64-unit
            networks takes 1.0 ms instead of 1.36 ms); falls back where unsupported.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        total_steps: int,
        warmup_steps: int = 0,
        schedule: str = "constant",
        weight_decay: float = 0.0,
        grad_clip: float = 0.0,
        device: torch.device | str = "cpu",
        eps: float = 1e-8,
        amp: bool = True,
        fused: bool = True,
    ):
        params = list(params)
        if params and isinstance(params[0], dict):  # groups with their own learning rates
            groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
        else:
            groups = [{"params": [p for p in params if p.requires_grad]}]
        self.params = [p for g in groups for p in g["params"]]
        try:
            self.opt = torch.optim.AdamW(
                groups, lr=lr, weight_decay=weight_decay, eps=eps, fused=fused or None
            )
        except (RuntimeError, ValueError):  # a device or dtype the fused kernel lacks
            self.opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, eps=eps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda(warmup_steps, total_steps, schedule)
        )
        self.grad_clip = grad_clip
        self.device = torch.device(device)
        self.amp = amp and self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA (a no-op elsewhere): wrap the forward pass in it."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def step(self, loss: torch.Tensor) -> dict[str, torch.Tensor | float]:
        """Backward, clip, step the optimizer and the schedule. Returns ``grad_norm`` (a
        tensor, when clipping) and the ``lr`` used."""
        lr = self.sched.get_last_lr()[0]
        # what zero_grad(set_to_none=True) and clip_grad_norm_ do, without their per-call
        # overhead (profiler hooks, grouping by device): a minibatch step of PPO's 64-unit
        # networks on the CPU takes 0.95 ms instead of 1.02
        for p in self.params:
            p.grad = None
        loss.backward()
        info: dict[str, torch.Tensor | float] = {"lr": lr}
        if self.grad_clip > 0:
            grads = [p.grad for p in self.params if p.grad is not None]
            flat = [g.reshape(-1) for g in grads] or [torch.zeros(1, device=self.device)]
            norm = torch.linalg.vector_norm(torch.cat(flat))
            scale = (self.grad_clip / (norm + 1e-6)).clamp_(max=1.0)
            for g in grads:
                g.mul_(scale)
            info["grad_norm"] = norm.detach()
        self.opt.step()
        self.sched.step()
        return info

    def advance(self) -> float:
        """Step the schedule alone, for a step taken outside the torch optimizer (PPO's
        numpy update); returns the learning rate that step is to use."""
        lr = self.sched.get_last_lr()[0]
        with warnings.catch_warnings():  # torch warns when no optimizer.step() came first
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.sched.step()
        return lr

    @property
    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])


def threads_for(cpus: int, others: float, most: int) -> int:
    """Torch threads for a process on ``cpus`` cores while other processes keep ``others``
    cores busy: the cores left to it (a core counts as free below 0.7 of another's use),
    at least 1, at most ``most``."""
    return max(1, min(most, int(cpus - others + 0.3)))


def _busy_core_seconds() -> float | None:
    """Core-seconds every process has spent on the CPU since boot (``/proc/stat``), or None
    where there is none to read."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class AdaptiveThreads:
    """``--threads 0``: torch's thread count follows the cores nobody else is using,
    measured at the start and again every ``every`` seconds (``step()`` is cheap between):
    an idle machine gets every core, and when another job starts beside the run it drops
    to one thread instead of thrashing (``benchmarks/threads.py`` measures both). A fixed
    count (``threads`` >= 1) is taken as it is. Where ``/proc/stat`` cannot be read, auto
    means 1."""

    def __init__(self, threads: int, every: float = 5.0, most: int | None = None):
        self.fixed = threads if threads >= 1 else None
        self.every = every
        self.cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        self.most = min(most or self.cpus, self.cpus)
        self.count = self.fixed or 1
        self._last = None
        if self.fixed is not None or _busy_core_seconds() is None:
            torch.set_num_threads(self.count)
            return
        # the first measurement over a short window, before any work
        self._mark()
        time.sleep(0.2)
        self.step(force=True)

    def _mark(self) -> None:
        own = sum(os.times()[:2])
        self._last = (time.monotonic(), _busy_core_seconds(), own)

    def step(self, force: bool = False) -> int:
        """Re-measure when ``every`` seconds have passed; returns the thread count in use."""
        if self._last is None:
            return self.count
        t0, busy0, own0 = self._last
        now = time.monotonic()
        if not force and now - t0 < self.every:
            return self.count
        busy, own = _busy_core_seconds(), sum(os.times()[:2])
        others = max(0.0, ((busy - busy0) - (own - own0)) / max(now - t0, 1e-3))
        self._last = (now, busy, own)
        count = threads_for(self.cpus, others, self.most)
        if count != self.count or force:
            torch.set_num_threads(count)
            self.count = count
        return self.count


class RunningMean:
    """Averages scalar tensors on their device; ``pop()`` reads the mean (one sync)."""

    def __init__(self):
        self.values: list[torch.Tensor] = []

    def add(self, value: torch.Tensor) -> None:
        self.values.append(value.detach())

    def pop(self) -> float | None:
        if not self.values:
            return None
        mean = float(torch.stack([v.float() for v in self.values]).mean())
        self.values = []
        return mean


def run_lock(out: Path) -> WriterLock:
    """The writer lock of a run folder (``<out>.lock`` beside it, held while a run writes)."""
    return WriterLock(
        out, "writing this run", hint="wait for it to finish, or train into another --out"
    )


class RunFolder:
    """The run folder of one training command (see the module's docstring).

    Args:
        out: the folder.
        fields: the columns of ``metrics.csv`` ("step" and "kind" first).
        resume: continue the run in ``out`` (from ``out/last``).
        overwrite: delete an earlier run in ``out`` first.
        outputs: the names in ``out`` that make a run (what ``overwrite`` deletes and what
            a fresh run refuses to write over).
        writer: False for the ranks of a data-parallel job other than 0: they read the
            checkpoint to resume from (after rank 0 has checked the folder) and write
            nothing.
    """

    OUTPUTS = ("config.json", "last", "best", "metrics.csv", "results.json", "tb", "plots")

    def __init__(
        self,
        out: Path,
        fields: list[str],
        *,
        resume: bool,
        overwrite: bool,
        outputs: tuple[str, ...] = OUTPUTS,
        writer: bool = True,
        resumable: bool = True,
    ):
        self.out = Path(out)
        self.fields = ["step", "kind", *[f for f in fields if f not in ("step", "kind")]]
        self.resume = resume
        self.writer = writer
        self.lock = None
        # a run that fails before its first checkpoint leaves nothing behind (close(failed=
        # True)), so the corrected command is not refused as an earlier run
        self.existed = self.out.exists()
        empty_dir = self.out.is_dir() and not any(self.out.iterdir())
        self.fresh = writer and (not self.existed or empty_dir)
        if writer:
            # one writer per run: a second run into it (or --overwrite of a live one) is
            # refused with the holder's pid, before anything is touched
            self.lock = run_lock(self.out).acquire()
            try:
                prepare_run_folder(
                    self.out,
                    resume=resume,
                    overwrite=overwrite,
                    outputs=outputs,
                    resumable=resumable,
                )
            except BaseException:
                self.lock.release()
                raise
        self.tb = None
        self.csv_file = None
        self.csv = None

    # ----------------------------------------------------------------- resume
    @property
    def last(self) -> Path:
        return self.out / "last"

    @property
    def best(self) -> Path:
        return self.out / "best"

    def resume_point(self) -> Path | None:
        """``out/last`` when resuming and it holds a training state (else a note, None)."""
        if not self.resume:
            return None
        if self.writer:
            recover_dir(self.last)
        if (self.last / "train_state.pt").exists():
            return self.last
        if self.writer:
            log.warning(f"{self.out} holds no checkpoint to resume from; training from step 0")
        return None

    MAY_CHANGE = frozenset(
        {
            "steps",
            "total_timesteps",
            "eval_every",
            "eval_episodes",
            "eval_envs",
            "log_every",
            "device",
            "threads",
            "nproc",
            "progress",
            "resume",
            "overwrite",
            "out",
        }
    )
    """What a resumed run may change: its length, its evaluation cadence, where it runs."""
    RECORDED_BESIDE = ("policy_config", "task_resolved")

    def check_resume(self, config: dict[str, Any], may_change=MAY_CHANGE) -> None:
        """Compare a resuming command's settings with the run's ``config.json``: a setting
        that cannot change is refused in one line naming it (nothing is written); the ones
        that may change are taken, and logged."""
        check_resume_settings(self.out, config, may_change, self.RECORDED_BESIDE)

    def check_unfinished(self, done: int, total: int, flag: str) -> None:
        """A resumed run that already reached its length says so, and does nothing."""
        if done >= total:
            raise OutputError(
                f"{self.out}: the run is finished ({done} of {flag} {total}); pass a larger "
                f"{flag} with --resume to go on"
            )

    def load_train_state(self, device: torch.device | str = "cpu") -> dict[str, Any]:
        """The training state saved with ``out/last`` (optimizer, step, history, ...)."""
        path = self.last / "train_state.pt"
        try:
            return torch.load(path, map_location=device, weights_only=False)
        except (RuntimeError, EOFError, OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0].split(". ")[0] if str(err).strip() else ""
            raise OutputError(
                f"{path}: damaged, the run cannot resume from it ({first or type(err).__name__});"
                " start afresh with --overwrite, or into another --out (its weights still load:"
                f" `iltk eval --policy {self.last}`)"
            ) from None

    # ------------------------------------------------------------------- logs
    def write_config(self, config: dict[str, Any]) -> None:
        if not self.writer:
            return
        atomic_write_text(self.out / "config.json", json.dumps(config, indent=2, default=str))

    def open_logs(self, step: int) -> None:
        """Open ``metrics.csv`` (appending after ``step`` when resuming) and TensorBoard."""
        if not self.writer:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(self.out / "tb"))
        path = self.out / "metrics.csv"
        append = self.resume and path.exists()
        if append:
            _drop_rows_after(path, step)  # rows logged after the checkpoint resumed from
        self.csv_file = path.open("a" if append else "w", newline="")
        self.csv = csv.DictWriter(self.csv_file, fieldnames=self.fields, extrasaction="ignore")
        if not append:
            self.csv.writeheader()

    def log(self, kind: str, step: int, row: dict[str, Any], scalars: dict | None = None) -> None:
        """One row of ``metrics.csv`` (kind: train, eval, ...) and its numbers in TensorBoard
        under ``kind/`` (``scalars`` adds values for TensorBoard only)."""
        if not self.writer:
            return
        assert self.csv is not None and self.tb is not None, "open_logs() first"
        self.csv.writerow({**row, "step": step, "kind": kind})
        self.csv_file.flush()
        for key, value in {**row, **(scalars or {})}.items():
            if key not in ("step", "kind") and isinstance(value, (int, float)):
                self.tb.add_scalar(f"{kind}/{key}", value, step)

    def close(self, failed: bool = False) -> None:
        """Close the logs and free the folder; ``failed``: the run stopped on an error, and
        a folder this run started that holds no checkpoint yet is removed."""
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        if self.csv_file is not None:
            self.csv_file.close()
            self.csv_file = None
        if failed and self.fresh and not (self.last.exists() or self.best.exists()):
            # (the user's own empty folder stays, empty)
            remove_outputs(list(self.out.iterdir()) if self.existed else [self.out])
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    # ------------------------------------------------------------ checkpoints
    def save(
        self,
        model,
        name: str,
        extra: dict[str, Any],
        train_state: dict[str, Any] | None = None,
        extra_files: dict[str, bytes] | None = None,
    ) -> Path:
        """Write checkpoint ``out/<name>`` atomically with ``model.save`` (a Policy or
        anything with the same ``save(dir, extra, extra_files)``); ``train_state`` goes
        into the same folder as ``train_state.pt``."""
        if not self.writer:
            return self.out / name
        files = dict(extra_files or {})
        if train_state is not None:
            buffer = io.BytesIO()
            torch.save(train_state, buffer)
            files["train_state.pt"] = buffer.getvalue()
        return model.save(self.out / name, extra, files)

    @contextlib.contextmanager
    def disk_guard(self) -> Iterator[None]:
        """Turn a full disk (or a quota) into one line naming the checkpoint to resume from."""
        try:
            yield
        except (OSError, RuntimeError) as err:
            if not is_disk_error(err):
                raise
            step = checkpoint_step(self.last)
            todo = (
                f"{self.last} holds the last complete checkpoint (step {step}); fix that and "
                "run the same command with --resume"
                if step is not None
                else "no checkpoint was completed; fix that and run the command again"
            )
            raise OutputError(disk_error(err, self.out, todo)) from None

    def write_results(self, results: dict[str, Any]) -> None:
        if not self.writer:
            return
        atomic_write_text(self.out / "results.json", json.dumps(results, indent=2, default=str))

    # ------------------------------------------------------------------ plots
    def plot(
        self,
        name: str,
        series: dict[str, tuple[list, list]],
        *,
        xlabel: str,
        ylabel: str,
        title: str,
        ylim: tuple[float, float] | None = None,
        marks: dict[str, float] | None = None,
        logy: bool = False,
    ) -> Path | None:
        """``plots/<name>.png``: one line per {label: (xs, ys)}, titled with the run's
        name; ``marks`` draws labelled vertical lines (e.g. where fine-tuning started);
        ``logy``: a log scale when every value is positive (a loss's tail stays visible).
        None when there is nothing to plot."""
        series = {k: v for k, v in series.items() if len(v[0])}
        if not series or not self.writer:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = self.out / "plots" / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for label, (xs, ys) in series.items():
            ax.plot(xs, ys, "o-" if len(xs) < 30 else "-", label=label, markersize=3)
        for i, (label, x) in enumerate((marks or {}).items()):
            ax.axvline(x, color="gray", linestyle="--", linewidth=1)
            ax.annotate(  # one line down per mark: close marks do not overwrite each other
                label,
                (x, 1),
                xycoords=("data", "axes fraction"),
                fontsize=7,
                xytext=(3, -10 - 9 * i),
                textcoords="offset points",
            )
        if ylim is not None:
            ax.set_ylim(*ylim)
        values = [y for _, ys in series.values() for y in ys if y is not None]
        if logy and values and min(values) > 0:
            ax.set_yscale("log")
        ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title}: {self.out.name}")
        if len(series) > 1:
            ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        data = io.BytesIO()
        fig.savefig(data, dpi=120, format="png")
        plt.close(fig)
        atomic_write(path, lambda tmp: write_bytes(tmp, data.getvalue()), durable=False)
        return path


def check_resume_settings(
    out: Path,
    config: dict[str, Any],
    may_change,
    recorded_beside=("policy_config", "task_resolved"),
) -> None:
    """``RunFolder.check_resume`` for any run folder with a ``config.json`` (DAgger's too)."""
    path = out / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        if not path.exists():
            return  # no record (an older run): nothing to compare
        raise OutputError(
            f"{path}: unreadable ({err}), so --resume cannot check it resumes the same run; "
            "start afresh with --overwrite, or into another --out"
        ) from None
    new = json.loads(json.dumps(config, default=str))
    keys = [k for k in dict.fromkeys([*saved, *new]) if k not in recorded_beside]

    def shown(key: str) -> str:
        old, now = saved.get(key), new.get(key)
        if isinstance(old, dict) and isinstance(now, dict):
            inner = [k for k in dict.fromkeys([*old, *now]) if old.get(k) != now.get(k)]
            return ", ".join(f"--{key}.{k} {old.get(k)} -> {now.get(k)}" for k in inner)
        return f"--{key} {old} -> {now}"

    def flag(text: str) -> str:
        return text.replace("_", "-")

    fixed = [k for k in keys if k not in may_change and saved.get(k) != new.get(k)]
    if fixed:
        raise OutputError(
            f"{out}: --resume with other settings than the run's: "
            + "; ".join(flag(shown(k)) for k in fixed)
            + f". Resume with the run's own (e.g. --config {path} --resume), or start"
            " afresh with --overwrite or another --out"
        )
    quiet = {"resume", "overwrite", "progress", "out"}
    changed = [k for k in keys if k in may_change and k not in quiet and saved.get(k) != new.get(k)]
    if changed:
        log.warning(f"{out}: resuming with " + "; ".join(flag(shown(k)) for k in changed))


def prepare_run_folder(
    out: Path,
    *,
    resume: bool,
    overwrite: bool,
    outputs: Iterable[str] = RunFolder.OUTPUTS,
    resumable: bool = True,
) -> None:
    """Check the run folder before any work: refuse to mix a new run into an old one
    (``resumable``: whether the command can --resume, which the refusal then offers)."""
    check_output(out, kind="folder", append=True, what="--out")
    earlier = [name for name in outputs if (out / name).exists()]
    if earlier and not (resume or overwrite):
        offer = "pass --resume to continue it, " if resumable else "pass "
        raise OutputError(
            f"{out}: holds an earlier run ({', '.join(earlier)}); {offer}--overwrite to start "
            "afresh (deleting it), or choose another --out"
        )
    remove_leftovers(out)
    if overwrite:
        remove_outputs(out / name for name in earlier)


def _drop_rows_after(csv_path: Path, step: int) -> None:
    """Keep the metrics rows up to ``step`` (a killed run logged past its last checkpoint)."""
    lines = csv_path.read_text().splitlines(keepends=True)
    kept = lines[:1]
    for line in lines[1:]:
        head = line.split(",", 1)[0]
        if head.isdigit() and int(head) <= step and line.endswith("\n"):
            kept.append(line)
    atomic_write_text(csv_path, "".join(kept))


def checkpoint_step(folder: Path) -> int | None:
    """The training step a checkpoint folder was saved at (None when unreadable)."""
    try:
        return int(json.loads((folder / "config.json").read_text())["extra"]["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
