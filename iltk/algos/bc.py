"""Supervised policy training: BC (MLP), BC-RNN and ACT from an episode file.

Behaviour cloning (Pomerleau 1989) minimizes the policy's loss on expert (obs, action)
pairs; BC-RNN (Mandlekar et al. 2021) on windows; ACT (Zhao et al. 2023) on action
chunks. One loop serves all three: the policy says how it wants its batches
(``batch_spec``) and the on-device dataset gathers them by index arithmetic.

Outputs in ``out``: ``config.json`` (the resolved settings), ``last/`` and ``best/``
(checkpoints; ``last/train_state.pt`` resumes), ``metrics.csv``, TensorBoard logs in
``tb/``, ``plots/loss.png`` and ``plots/success.png``, and ``results.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from iltk.data.dataset import DemoDataset
from iltk.data.format import DatasetError
from iltk.data.reader import DemoFile
from iltk.envs import env_shapes, make_vector_env
from iltk.evaluate import evaluate_policy
from iltk.files import (
    OutputError,
    atomic_write_text,
    check_output,
    disk_error,
    is_disk_error,
    recover_dir,
    remove_leftovers,
    remove_outputs,
)
from iltk.policies import Policy, build_config, load_policy, make_policy, resolve_device
from iltk.policies.act import ACTConfig
from iltk.policies.bc import BCConfig, BCRNNConfig

ALGOS = ("bc", "bc-rnn", "act")
DEFAULT_LR = {"bc": 1e-3, "bc-rnn": 1e-3, "act": 3e-4}


@dataclass
class TrainConfig:
    """Train a policy by supervised imitation on an episode file."""

    algo: Literal["bc", "bc-rnn", "act"] = "bc"
    """Policy to train: bc (MLP), bc-rnn (LSTM/GRU) or act (chunked transformer)."""
    dataset: Path = Path("datasets/demos.hdf5")
    """Episode file to train on."""
    task: str | None = None
    """Env for evaluation rollouts (default: the dataset's env). 'none' disables rollouts."""
    out: Path = Path("runs/train")
    """Run folder."""
    steps: int = 20000
    """Gradient steps (MLP BC on the scripted tasks needs many: on Lift with 100 demos a 2x256
    MLP after 5k steps succeeded 36% of the time, a 3x256 one after 20k steps 100%)."""
    batch_size: int = 256
    """Samples (or windows, or chunks) per step."""
    lr: float | None = None
    """Peak learning rate (default: 1e-3 for bc and bc-rnn, 3e-4 for act)."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Learning-rate schedule after the linear warm-up."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0: none)."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda."""
    seed: int = 0
    """Seed of weights, sampling and the split."""
    obs_keys: list[str] = field(default_factory=list)
    """Observation keys to train on (default: all in the file)."""
    valid_fraction: float = 0.0
    """Hold out this fraction of demos (0: train on the file's mask/train and validate on its
    mask/valid when it has them, e.g. after `iltk dataset split`; else train on every demo)."""
    intervention_weight: float = 1.0
    """Weight of steps flagged as human interventions (IWR-style; 1 = uniform)."""
    uncorrected_weight: float = 1.0
    """Weight of steps of hg-dagger episodes where the policy was in control (0: train on
    the interventions only, as HG-DAgger does)."""
    init: Path | None = None
    """Warm start from this checkpoint (its policy type wins over --algo)."""
    eval_every: int = 1000
    """Steps between evaluations (0: only at the end)."""
    eval_episodes: int = 20
    """Rollouts per evaluation (0: none; the best checkpoint then follows valid loss)."""
    eval_envs: int = 2
    """Parallel envs for evaluation rollouts."""
    log_every: int = 50
    """Steps between log lines."""
    resume: bool = False
    """Continue from OUT/last when it exists."""
    overwrite: bool = False
    """Start afresh in an OUT that holds an earlier run (its checkpoints and logs are deleted)."""
    progress: bool = True
    """Show a progress bar."""
    bc: BCConfig = field(default_factory=BCConfig)
    """Settings of --algo bc."""
    bc_rnn: BCRNNConfig = field(default_factory=BCRNNConfig)
    """Settings of --algo bc-rnn."""
    act: ACTConfig = field(default_factory=ACTConfig)
    """Settings of --algo act."""

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"algo must be one of {ALGOS}, got {self.algo!r}")
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError("valid_fraction must be in [0, 1)")
        if self.lr is not None and not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        for name in ("warmup_steps", "eval_every", "eval_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("eval_envs", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("weight_decay", "grad_clip", "intervention_weight", "uncorrected_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: pick one")

    def policy_config(self):
        return {"bc": self.bc, "bc-rnn": self.bc_rnn, "act": self.act}[self.algo]


def get_batch(ds: DemoDataset, spec: dict, idx: torch.Tensor) -> dict:
    if spec["kind"] == "step":
        return ds.batch_steps(idx)
    if spec["kind"] == "window":
        return ds.batch_windows(idx, spec["seq_len"], spec.get("frame_stack", 1))
    if spec["kind"] == "chunk":
        return ds.batch_chunks(idx, spec["chunk"])
    raise ValueError(f"unknown batch kind {spec['kind']!r}")


def lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(cfg.warmup_steps, 1)
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return f


def dataset_env_kwargs(ds: DemoDataset, task: str) -> dict:
    if ds.env_args.get("env_name") == task:
        return dict(ds.env_args.get("env_kwargs") or {})
    return {}


class Trainer:
    """Holds the state of one training run (used by ``iltk train`` and by DAgger rounds)."""

    def __init__(self, cfg: TrainConfig, policy: Policy | None = None):
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        # held-out demos: --valid-fraction, else the file's own mask/valid (as documented)
        with DemoFile(cfg.dataset, validate="none") as f:
            file_masks = set(f.masks)
        use_masks = cfg.valid_fraction == 0 and {"train", "valid"} <= file_masks
        split = "train" if cfg.valid_fraction > 0 or use_masks or "train" in file_masks else "all"
        self.ds = DemoDataset(
            cfg.dataset,
            obs_keys=cfg.obs_keys or None,
            device=self.device,
            split=split,
            valid_fraction=cfg.valid_fraction,
            seed=cfg.seed,
            intervention_weight=cfg.intervention_weight,
            uncorrected_weight=cfg.uncorrected_weight,
        )
        self.valid_ds = None
        if cfg.valid_fraction > 0 or use_masks:
            self.valid_ds = DemoDataset(
                cfg.dataset,
                obs_keys=cfg.obs_keys or None,
                device=self.device,
                split="valid",
                valid_fraction=cfg.valid_fraction,
                seed=cfg.seed,
            )
        self.task = cfg.task if cfg.task is not None else self.ds.env_args.get("env_name")
        if self.task in ("none", ""):
            self.task = None
        if cfg.task is None and self.task is not None:
            import gymnasium as gym

            from iltk.envs import register_tasks

            register_tasks()
            if self.task not in gym.registry:
                # e.g. a robomimic file recorded in robosuite: train without rollouts
                print(
                    f"note: the dataset's env {self.task!r} is not a gymnasium id here; training "
                    "without evaluation rollouts (pass --task to evaluate in another env)"
                )
                self.task = None
        self.env_kwargs = dataset_env_kwargs(self.ds, self.task) if self.task else {}
        low = high = []
        if self.task:
            state_dim, action_dim, low, high = env_shapes(self.task, self.env_kwargs)
            self.ds.check_compatible(state_dim, action_dim, self.task)
            self.ds.check_action_bounds(low, high, self.task)
        if policy is None and cfg.init is not None:
            policy = load_policy(cfg.init, self.device)
        if policy is None:
            pcfg = dataclasses.asdict(cfg.policy_config())
            pcfg.update(
                state_dim=self.ds.state_dim,
                action_dim=self.ds.action_dim,
                lowdim_keys=self.ds.lowdim_keys,
                image_shapes={k: list(v) for k, v in self.ds.image_shapes.items()},
                action_low=low,
                action_high=high,
            )
            policy = make_policy(cfg.algo, build_config(cfg.algo, pcfg))
            policy.normalizer.set_stats(self.ds.stats.stats)
        else:
            self.ds.check_compatible(
                policy.config.state_dim, policy.config.action_dim, "the policy"
            )
        self.policy = policy.to(self.device)
        self.spec = self.policy.batch_spec()
        lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[self.policy.name]
        self.opt = torch.optim.AdamW(self.policy.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.step = 0
        self.history: dict[str, list] = {"train": [], "eval": []}
        self.best_score = -math.inf
        self.eval_envs = None

    # ------------------------------------------------------------------ steps
    def train_step(self) -> dict[str, float]:
        self.policy.train()
        idx = self.ds.sample_indices(self.cfg.batch_size, self.gen)
        batch = get_batch(self.ds, self.spec, idx)
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        ):
            loss, info = self.policy.loss(batch)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            info["grad_norm"] = torch.nn.utils.clip_grad_norm_(
                self.policy.parameters(), self.cfg.grad_clip
            ).detach()
        self.opt.step()
        self.sched.step()
        self.step += 1
        info["lr"] = self.sched.get_last_lr()[0]
        return info

    @torch.no_grad()
    def valid_loss(self) -> float | None:
        if self.valid_ds is None:
            return None
        self.policy.eval()
        gen = torch.Generator(device=self.device).manual_seed(12345)
        losses = []
        for _ in range(4):
            idx = self.valid_ds.sample_indices(self.cfg.batch_size, gen)
            losses.append(self.policy.loss(get_batch(self.valid_ds, self.spec, idx))[0].item())
        return float(np.mean(losses))

    def evaluate(self) -> dict:
        row = {"step": self.step, "valid_loss": self.valid_loss()}
        if self.task and self.cfg.eval_episodes > 0:
            if self.eval_envs is None:
                self.eval_envs = make_vector_env(self.task, self.cfg.eval_envs, **self.env_kwargs)
            self.policy.eval()
            res = evaluate_policy(
                self.policy, self.task, self.cfg.eval_episodes, envs=self.eval_envs
            )
            row.update(
                success_rate=res.success_rate,
                mean_return=res.mean_return,
                mean_length=res.mean_length,
            )
        return row

    def close(self):
        if self.eval_envs is not None:
            self.eval_envs.close()
            self.eval_envs = None


def _save_plots(out: Path, history: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    paths = []
    tr = history["train"]
    if tr:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in tr], [r["loss"] for r in tr], label="train")
        ev = [r for r in history["eval"] if r.get("valid_loss") is not None]
        if ev:
            ax.plot([r["step"] for r in ev], [r["valid_loss"] for r in ev], "o-", label="valid")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title("training loss")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(plots / "loss.png", dpi=120)
        plt.close(fig)
        paths.append(plots / "loss.png")
    ev = [r for r in history["eval"] if r.get("success_rate") is not None]
    if ev:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in ev], [r["success_rate"] for r in ev], "o-")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("step")
        ax.set_ylabel("success rate")
        ax.set_title("evaluation success")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(plots / "success.png", dpi=120)
        plt.close(fig)
        paths.append(plots / "success.png")
    return paths


def train(cfg: TrainConfig) -> dict:
    """Run a whole training job; returns the results dict (also in OUT/results.json)."""
    out = cfg.out
    prepare_run_folder(out, resume=cfg.resume, overwrite=cfg.overwrite)
    resume_dir = out / "last"
    policy = None
    if cfg.resume:
        recover_dir(resume_dir)
        if (resume_dir / "train_state.pt").exists():
            policy = load_policy(resume_dir, resolve_device(cfg.device))
        else:
            print(f"note: {out} holds no checkpoint to resume from; training from step 0")
    trainer = Trainer(cfg, policy)
    if policy is not None:
        state = torch.load(
            resume_dir / "train_state.pt", map_location=trainer.device, weights_only=False
        )
        trainer.opt.load_state_dict(state["optimizer"])
        trainer.sched.load_state_dict(state["scheduler"])
        trainer.step = state["step"]
        trainer.history = state["history"]
        trainer.best_score = state["best_score"]
        trainer.gen.set_state(
            state["generator"].to(trainer.gen.device)
            if trainer.device.type != "cuda"
            else state["generator"]
        )
    resolved = dataclasses.asdict(cfg)
    resolved["policy_config"] = dataclasses.asdict(trainer.policy.config)
    resolved["task_resolved"] = trainer.task
    atomic_write_text(out / "config.json", json.dumps(resolved, indent=2, default=str))

    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(str(out / "tb"))
    csv_path = out / "metrics.csv"
    new_csv = not csv_path.exists() or not cfg.resume
    if not new_csv:
        _drop_rows_after(csv_path, trainer.step)  # logged after the checkpoint resumed from
    csv_file = csv_path.open("w" if new_csv else "a", newline="")
    fields = [
        "step",
        "kind",
        "loss",
        "lr",
        "grad_norm",
        "valid_loss",
        "success_rate",
        "mean_return",
        "time_s",
    ]
    writer = csv.DictWriter(csv_file, fieldnames=fields, extrasaction="ignore")
    if new_csv:
        writer.writeheader()
    t0 = time.perf_counter()

    def checkpoint(row: dict | None):
        extra = {
            "step": trainer.step,
            "task": trainer.task,
            "env_kwargs": trainer.env_kwargs,
            "dataset": str(cfg.dataset),
        }
        if row is not None:
            score = row.get("success_rate")
            if score is None:
                loss = row.get("valid_loss")
                if loss is None:
                    loss = row.get("train_loss")  # None before the first log line
                score = -loss if loss is not None else -math.inf
            if score >= trainer.best_score:
                trainer.best_score = score
                trainer.policy.save(out / "best", {**extra, "score": score})
        # last/ (weights, config and optimizer state of one step) is swapped in as a whole,
        # after best/: a kill at any moment leaves a complete checkpoint to --resume from
        state = {
            "optimizer": trainer.opt.state_dict(),
            "scheduler": trainer.sched.state_dict(),
            "step": trainer.step,
            "history": trainer.history,
            "best_score": trainer.best_score,
            "generator": trainer.gen.get_state(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        trainer.policy.save(out / "last", extra, {"train_state.pt": buffer.getvalue()})

    def do_eval():
        row = trainer.evaluate()
        row["train_loss"] = (
            trainer.history["train"][-1]["loss"] if trainer.history["train"] else None
        )
        trainer.history["eval"].append(row)
        for k in ("valid_loss", "success_rate", "mean_return"):
            if row.get(k) is not None:
                tb.add_scalar(f"eval/{k}", row[k], trainer.step)
        writer.writerow({**row, "kind": "eval", "time_s": time.perf_counter() - t0})
        csv_file.flush()
        checkpoint(row)
        return row

    bar = tqdm(
        total=cfg.steps, initial=trainer.step, desc=f"train {cfg.algo}", disable=not cfg.progress
    )
    last_eval = None
    try:
        running = []
        while trainer.step < cfg.steps:
            info = trainer.train_step()
            running.append(info["loss"])
            bar.update(1)
            if trainer.step % cfg.log_every == 0 or trainer.step == cfg.steps:
                # the one device-to-host sync of a log period (losses stay on the device)
                scalars = {k: float(v) for k, v in info.items()}
                row = {
                    "step": trainer.step,
                    "loss": float(torch.stack(running).float().mean()),
                    "lr": scalars["lr"],
                    "grad_norm": scalars.get("grad_norm"),
                }
                running = []
                trainer.history["train"].append(row)
                for k, v in scalars.items():
                    tb.add_scalar(f"train/{k}", v, trainer.step)
                writer.writerow({**row, "kind": "train", "time_s": time.perf_counter() - t0})
                bar.set_postfix(
                    loss=f"{row['loss']:.4f}",
                    success="-"
                    if last_eval is None or last_eval.get("success_rate") is None
                    else f"{last_eval['success_rate']:.0%}",
                )
            if cfg.eval_every and trainer.step % cfg.eval_every == 0 and trainer.step < cfg.steps:
                last_eval = do_eval()
        last_eval = do_eval()
    except (OSError, RuntimeError) as err:
        if not is_disk_error(err):
            raise
        step = _checkpoint_step(out / "last")
        todo = (
            f"{out / 'last'} holds the last complete checkpoint (step {step}); fix that and "
            "run the same command with --resume"
            if step is not None
            else "no checkpoint was completed; fix that and run the command again"
        )
        raise OutputError(disk_error(err, out, todo)) from None
    finally:
        bar.close()
        tb.close()
        csv_file.close()
        trainer.close()
    plots = _save_plots(out, trainer.history)
    results = {
        "algo": trainer.policy.name,
        "steps": trainer.step,
        "final": last_eval,
        "best_score": trainer.best_score,
        "train_time_s": time.perf_counter() - t0,
        "samples_per_s": trainer.step * cfg.batch_size / max(time.perf_counter() - t0, 1e-9),
        "plots": [str(p) for p in plots],
        "device": str(trainer.device),
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str))
    return results


RUN_OUTPUTS = ("config.json", "last", "best", "metrics.csv", "results.json", "tb", "plots")


def prepare_run_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Check the run folder before any work: refuse to mix a new run into an old one."""
    check_output(out, kind="folder", append=True, what="--out")
    earlier = [name for name in RUN_OUTPUTS if (out / name).exists()]
    if earlier and not (resume or overwrite):
        raise OutputError(
            f"{out}: holds an earlier run ({', '.join(earlier)}); pass --resume to continue "
            "it, --overwrite to start afresh (deleting it), or choose another --out"
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


def _checkpoint_step(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "config.json").read_text())["extra"]["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = ["ALGOS", "TrainConfig", "Trainer", "train", "get_batch", "DatasetError"]
