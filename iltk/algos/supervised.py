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

import dataclasses
import logging
import math
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from iltk import interrupts
from iltk.algos.settings import TrainConfig
from iltk.data.dataset import DemoDataset
from iltk.data.format import DatasetError
from iltk.data.reader import DemoFile
from iltk.distributed import Dist, setup
from iltk.envs import env_shapes, make_vector_env
from iltk.evaluate import evaluate_policy
from iltk.policies import (
    Policy,
    build_config,
    load_policy,
    make_policy,
    policy_entry,
    resolve_device,
)
from iltk.training import (
    AdaptiveThreads,
    Optimization,
    RunFolder,
    RunningMean,
    seed_everything,
)

log = logging.getLogger("iltk")


def get_batch(ds: DemoDataset, spec: dict, idx: torch.Tensor) -> dict:
    if spec["kind"] == "step":
        return ds.batch_steps(idx)
    if spec["kind"] == "window":
        return ds.batch_windows(idx, spec["seq_len"], spec.get("frame_stack", 1))
    if spec["kind"] == "chunk":
        return ds.batch_chunks(idx, spec["chunk"])
    if spec["kind"] == "history_chunk":
        return ds.batch_history_chunks(idx, spec["n_obs"], spec["horizon"])
    raise ValueError(f"unknown batch kind {spec['kind']!r}")


def dataset_env_kwargs(ds: DemoDataset, task: str) -> dict:
    if ds.env_args.get("env_name") == task:
        return dict(ds.env_args.get("env_kwargs") or {})
    return {}


class Trainer:
    """Holds the state of one training run (used by ``iltk train`` and by DAgger rounds)."""

    def __init__(self, cfg: TrainConfig, policy: Policy | None = None, dist: Dist | None = None):
        self.cfg = cfg
        self.dist = dist or Dist()
        self.device = resolve_device(cfg.device)
        self.threads = AdaptiveThreads(cfg.threads)
        seed_everything(cfg.seed)
        # held-out demos: --valid-fraction, else the file's own mask/valid (as documented)
        with DemoFile(cfg.dataset, validate="none") as f:
            file_masks = set(f.masks)
            n_demos = len(f.demos)
        if cfg.valid_fraction > 0 and n_demos - max(1, round(cfg.valid_fraction * n_demos)) < 1:
            raise ValueError(
                f"--valid-fraction {cfg.valid_fraction} holds out all {n_demos} demos of "
                f"{cfg.dataset}, leaving none to train on; use a smaller fraction "
                + (
                    f"(at most {(n_demos - 1) / n_demos:.2f})"
                    if n_demos > 1
                    else "(0: a single demo)"
                )
            )
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
                log.warning(
                    f"the dataset's env {self.task!r} is not a gymnasium id here; training "
                    "without evaluation rollouts (pass --task to evaluate in another env)"
                )
                self.task = None
        samples = len(self.ds.pool)
        if cfg.batch_size > max(samples, 256):
            raise ValueError(
                f"--batch-size {cfg.batch_size} is larger than the {samples} training samples of "
                f"{cfg.dataset} (a batch draws them with replacement, so most of it would "
                f"repeat); use at most {max(samples, 256)}"
            )
        self.env_kwargs = dataset_env_kwargs(self.ds, self.task) if self.task else {}
        low = high = []
        if self.task:
            state_dim, action_dim, low, high = env_shapes(self.task, self.env_kwargs)
            self.ds.check_compatible(state_dim, action_dim, self.task)
            self.ds.check_action_bounds(low, high, self.task)
        if policy is None and cfg.init is not None:
            policy = load_policy(cfg.init, self.device)
        if policy is None:
            pcfg = dataclasses.asdict(cfg.policy_config(cfg.algo))
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
        self.optim = Optimization(
            self.policy.parameters(),
            lr=cfg.lr if cfg.lr is not None else policy_entry(self.policy.name).default_lr,
            total_steps=cfg.steps,
            warmup_steps=cfg.warmup_steps,
            schedule=cfg.lr_schedule,
            weight_decay=cfg.weight_decay,
            grad_clip=cfg.max_grad_norm,
            device=self.device,
        )
        # each rank draws its own batches (rank 0 the single-process ones); --batch-size is
        # the global batch, split over the ranks
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + self.dist.rank)
        self.batch_size = cfg.batch_size // self.dist.world
        self.model: torch.nn.Module = self.policy
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.policy, device_ids=ids)
        self.step = 0
        self.history: dict[str, list] = {"train": [], "eval": []}
        self.best_score = -math.inf
        self.eval_envs = None

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: dict | None = None) -> dict[str, torch.Tensor | float]:
        """One gradient step on ``batch`` (default: one sampled from the dataset); the
        logged values stay tensors (read them at log time)."""
        interrupts.check()  # a Ctrl-C a callback swallowed still stops training
        self.policy.train()
        self.threads.step()
        if batch is None:
            idx = self.ds.sample_indices(self.batch_size, self.gen)
            batch = get_batch(self.ds, self.spec, idx)
        with self.optim.autocast():
            loss, info = self.model(batch)  # through forward: DDP averages the gradients
        info.update(self.optim.step(loss))
        self.step += 1
        self.policy.after_step(self.step)
        return info

    def train_state(self) -> dict:
        """What ``--resume`` restores besides the weights."""
        return {
            **self.optim.state_dict(),
            "step": self.step,
            "history": self.history,
            "best_score": self.best_score,
            "generator": self.gen.get_state(),
        }

    def load_train_state(self, state: dict) -> None:
        self.optim.load_state_dict(state)
        self.step = state["step"]
        self.history = state["history"]
        self.best_score = state["best_score"]
        generator = state["generator"]
        self.gen.set_state(generator if self.device.type == "cuda" else generator.cpu())

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


METRICS = ["loss", "lr", "grad_norm", "valid_loss", "success_rate", "mean_return", "time_s"]


def train(cfg: TrainConfig) -> dict:
    """Run a whole training job; returns the results dict (also in OUT/results.json).

    Under torchrun (``iltk.distributed``) every rank runs this: rank 0 checks the run
    folder first and alone evaluates, logs and writes; the others train beside it."""
    dist, device = setup(cfg.device)
    try:
        return _train(dataclasses.replace(cfg, device=device), dist)
    finally:
        dist.close()


def _train(cfg: TrainConfig, dist: Dist) -> dict:
    if cfg.batch_size % dist.world:
        raise ValueError(
            f"--batch-size {cfg.batch_size} (the global batch) must divide by the "
            f"{dist.world} processes"
        )
    run = None
    if dist.main:  # refusals, --overwrite and crash recovery happen once, before the others
        run = RunFolder(cfg.out, METRICS, resume=cfg.resume, overwrite=cfg.overwrite)
    dist.barrier()
    if run is None:
        run = RunFolder(cfg.out, METRICS, resume=cfg.resume, overwrite=False, writer=False)
    try:  # a refused or failed start frees the run folder
        resume_from = run.resume_point()
        if resume_from:
            run.check_resume(dataclasses.asdict(cfg))
        policy = load_policy(resume_from, resolve_device(cfg.device)) if resume_from else None
        trainer = Trainer(cfg, policy, dist)
        if resume_from:
            trainer.load_train_state(run.load_train_state(trainer.device))
            run.check_unfinished(trainer.step, cfg.steps, "--steps")
        resolved = dataclasses.asdict(cfg)
        resolved["policy_config"] = dataclasses.asdict(trainer.policy.config)
        resolved["task_resolved"] = trainer.task
        run.write_config(resolved)
        run.open_logs(trainer.step)
    except BaseException:
        run.close(failed=True)
        raise
    t0 = time.perf_counter()
    extra = {"task": trainer.task, "env_kwargs": trainer.env_kwargs, "dataset": str(cfg.dataset)}

    def checkpoint(row: dict):
        score = row.get("success_rate")
        if score is None:  # no rollouts: the best checkpoint follows the (valid) loss
            loss = row.get("valid_loss")
            loss = loss if loss is not None else row.get("train_loss")
            score = -loss if loss is not None else -math.inf
        if score >= trainer.best_score:
            trainer.best_score = score
            run.save(trainer.policy, "best", {**extra, "step": trainer.step, "score": score})
        # last/ (weights, config and optimizer state of one step) is swapped in as a whole,
        # after best/: a kill at any moment leaves a complete checkpoint to --resume from
        run.save(trainer.policy, "last", {**extra, "step": trainer.step}, trainer.train_state())

    def do_eval():
        row = trainer.evaluate()
        row["train_loss"] = (
            trainer.history["train"][-1]["loss"] if trainer.history["train"] else None
        )
        trainer.history["eval"].append(row)
        run.log("eval", trainer.step, {**row, "time_s": time.perf_counter() - t0})
        checkpoint(row)
        return row

    bar = tqdm(
        total=cfg.steps, initial=trainer.step, desc=f"train {cfg.algo}", disable=not cfg.progress
    )
    last_eval = None
    finished = False
    losses = RunningMean()
    try:
        with run.disk_guard():
            while trainer.step < cfg.steps:
                info = trainer.train_step()
                losses.add(info["loss"])
                bar.update(1)
                if trainer.step % cfg.log_every == 0 or trainer.step == cfg.steps:
                    # the one device-to-host sync of a log period (the loss: every rank's)
                    scalars = {k: float(v) for k, v in info.items()}
                    row = {
                        "loss": dist.mean(losses.pop()),
                        "lr": scalars["lr"],
                        "grad_norm": scalars.get("grad_norm"),
                    }
                    trainer.history["train"].append({"step": trainer.step, **row})
                    run.log(
                        "train",
                        trainer.step,
                        {**row, "time_s": time.perf_counter() - t0},
                        scalars,
                    )
                    success = (last_eval or {}).get("success_rate")
                    bar.set_postfix(
                        loss=f"{row['loss']:.4f}",
                        success="-" if success is None else f"{success:.0%}",
                        refresh=False,  # drawn at the bar's own pace (every 30 s into a log)
                    )
                at_eval = cfg.eval_every and trainer.step % cfg.eval_every == 0
                if at_eval and trainer.step < cfg.steps and dist.main:
                    last_eval = do_eval()  # the other ranks wait at their next step
            if dist.main:
                last_eval = do_eval()
        finished = True
    finally:
        bar.close()
        run.close(failed=not finished)
        trainer.close()
    # the same weights on every rank, or DDP went wrong: each rank's checksum is kept
    checksums = dist.gather(
        float(sum(p.detach().double().sum().item() for p in trainer.policy.parameters()))
    )
    dist.barrier()
    plots = [p for p in _plots(run, trainer.history) if p is not None]
    elapsed = time.perf_counter() - t0
    results = {
        "algo": trainer.policy.name,
        "steps": trainer.step,
        "final": last_eval,
        "best_score": trainer.best_score,
        "train_time_s": elapsed,
        "samples_per_s": trainer.step * cfg.batch_size / max(elapsed, 1e-9),
        "threads": trainer.threads.count,
        "plots": [str(p) for p in plots],
        "device": str(trainer.device),
        "processes": dist.world,
        "rank_checksums": checksums,
    }
    run.write_results(results)
    return results


def _plots(run: RunFolder, history: dict) -> list:
    train_rows = history["train"]
    valid = [r for r in history["eval"] if r.get("valid_loss") is not None]
    evals = [r for r in history["eval"] if r.get("success_rate") is not None]
    return [
        run.plot(
            "loss",
            {
                "train": ([r["step"] for r in train_rows], [r["loss"] for r in train_rows]),
                "valid": ([r["step"] for r in valid], [r["valid_loss"] for r in valid]),
            },
            xlabel="step",
            ylabel="loss",
            title="training loss",
            logy=True,
        ),
        run.plot(
            "success",
            {"success": ([r["step"] for r in evals], [r["success_rate"] for r in evals])},
            xlabel="step",
            ylabel="success rate",
            title="evaluation success",
            ylim=(-0.02, 1.02),
        ),
    ]


__all__ = ["TrainConfig", "Trainer", "train", "get_batch", "DatasetError"]
