"""`iltk ppo`: a PPO run (``iltk.rl.ppo.PPO``) in a run folder, with evaluations and checkpoints.

The algorithm is ``iltk.rl``; this module is the run around it, which fine-tuning
(``iltk.algos.finetune``) and deep IRL (``iltk.algos.irl.deep``) start with their own
policy, reward source and callbacks: the task checked before anything is written, the run
folder (resume, overwrite), periodic evaluations of the mean action on unseen seeds,
``best/`` (by evaluation success, then return) and ``last/`` with the training state,
metrics, TensorBoard and plots. Observations are normalized with running statistics that
the checkpoint keeps (the policy's buffers), so it acts as trained wherever it is loaded.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from iltk.algos.settings import PPOConfig
from iltk.envs import make_vector_env
from iltk.evaluate import evaluate_policy
from iltk.policies import load_policy, make_policy, resolve_device
from iltk.policies.configs import ActorCriticConfig
from iltk.rl import numpy_update
from iltk.rl.ppo import PPO
from iltk.rl.rewards import EnvReward, RewardSource, SavedReward
from iltk.training import RunFolder, seed_everything

EVAL_SEED = 1_000_000  # evaluation episodes never share a seed with training episodes

METRICS = [
    "warmup",
    "bc_loss",
    "bc_weight",
    "kl_to_start",
    "ep_return",
    "ep_length",
    "success",
    "pg_loss",
    "v_loss",
    "entropy",
    "approx_kl",
    "kl",
    "clip_frac",
    "beta",
    "explained_var",
    "lr",
    "fps",
    "collect_s",
    "update_s",
    "learned_reward",
    "eval_return",
    "eval_success",
    "time_s",
]


def _cxx_compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


def _check_task(envs: gym.vector.VectorEnv, task: str) -> None:
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"{task}: PPO here needs a continuous (Box) action space, got {space}")
    if not np.all(np.isfinite(space.low)) or not np.all(np.isfinite(space.high)):
        raise ValueError(f"{task}: the action space must be bounded, got {space}")


def _state_keys(envs) -> list[str]:
    return state_keys(envs.single_observation_space)


def state_keys(space: gym.Space) -> list[str]:
    """The observation keys PPO reads, in the order it concatenates them: a dict's
    non-image entries, or ``state``."""
    if isinstance(space, gym.spaces.Dict):
        keys = [k for k, s in space.spaces.items() if s.dtype != np.uint8]
        if not keys:
            raise ValueError("PPO here trains on state observations; this env gives images only")
        return keys
    if space.dtype == np.uint8:
        raise ValueError("PPO here trains on state observations; this env gives images only")
    return ["state"]


def _obs_dim(envs, keys) -> int:
    """Size of the flattened state observation (the keys' values concatenated)."""
    space = envs.single_observation_space
    if isinstance(space, gym.spaces.Dict):
        return sum(int(np.prod(space.spaces[k].shape)) for k in keys)
    return int(np.prod(space.shape))


def train_ppo(
    cfg: PPOConfig,
    *,
    policy=None,
    env_kwargs: dict | None = None,
    reward: RewardSource | None = None,
    callbacks=(),
    aux_losses=(),
    critic_lr: float | None = None,
    episode_seeds=None,
    choose_best: bool = True,
    run_config: dict | None = None,
    resumable: bool = True,
) -> dict:
    """Run PPO; returns the results dict (also in OUT/results.json).

    ``policy``: start from this policy instead of a fresh actor-critic (fine-tuning); it
    is evaluated once before any update (the start of the curves). ``env_kwargs``: how the
    task's envs are made (e.g. the demonstrations' ``init_spread``). ``reward``: the
    reward source (default: ``--reward DIR``'s saved reward, else the env's).
    ``callbacks`` (``iltk.rl.ppo.Callback``; their ``metrics`` and ``outputs`` join the
    run folder's), ``aux_losses``, ``critic_lr``, ``episode_seeds``: as ``PPO`` takes them.
    ``choose_best=False``: no ``best/`` (a learner that must not see the env's reward,
    IRL's, is not judged by it); only ``last/`` is written. ``run_config``: what
    config.json records of the command (default: ``cfg``), with the policy's config.
    ``resumable=False``: the command cannot --resume (its refusals do not offer it).
    """
    torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.ppo.compile and device.type == "cpu" and not _cxx_compiler():
        raise ValueError(
            "--ppo.compile: torch.compile needs a C++ compiler on the CPU (g++ or clang++, or"
            " set CXX); install one or run without --ppo.compile"
        )
    if reward is None:
        reward = (
            SavedReward(cfg.reward, cfg.task, cfg.reward_part)
            if cfg.reward is not None
            else EnvReward()
        )
    env_kwargs = dict(env_kwargs or {})
    initial = policy
    callbacks = list(callbacks)
    # the task and the backend are checked before the run folder is touched
    envs = make_vector_env(
        cfg.task, cfg.ppo.num_envs, asynchronous=cfg.ppo.async_envs, **env_kwargs
    )
    try:
        _check_task(envs, cfg.task)
        keys = _state_keys(envs)
        state_dim = _obs_dim(envs, keys)
        low = envs.single_action_space.low.astype(np.float32)
        high = envs.single_action_space.high.astype(np.float32)
        reward.prepare(state_dim, len(low), gym.spec(cfg.task).max_episode_steps)
        seed_everything(cfg.seed)
        if policy is None:
            policy = make_policy(
                "actor-critic",
                ActorCriticConfig(
                    state_dim=state_dim,
                    action_dim=len(low),
                    lowdim_keys=keys,
                    action_low=low.tolist(),
                    action_high=high.tolist(),
                    hidden=list(cfg.hidden),
                    activation=cfg.activation,
                    log_std_init=cfg.log_std_init,
                ),
            )
        if cfg.ppo.update_backend == "numpy":
            why = numpy_update.why_not(
                device,
                policy,
                compile=cfg.ppo.compile,
                aux_losses=aux_losses,
                critic_lr=critic_lr,
                lr=cfg.ppo.lr,
            )
            if why:
                raise ValueError(
                    f"--ppo.update-backend numpy cannot run this run's updates: {why}; use"
                    " --ppo.update-backend torch"
                )
        run = RunFolder(
            cfg.out,
            list(dict.fromkeys(METRICS + [m for c in [reward, *callbacks] for m in c.metrics])),
            resume=cfg.resume,
            overwrite=cfg.overwrite,
            resumable=resumable,
            outputs=tuple(
                dict.fromkeys(RunFolder.OUTPUTS + tuple(o for c in callbacks for o in c.outputs))
            ),
        )
    except BaseException:
        envs.close()
        raise
    eval_envs = None
    finished = False
    try:
        resume_from = run.resume_point()
        recorded = run_config if run_config is not None else dataclasses.asdict(cfg)
        if resume_from:
            run.check_resume(recorded)
        policy = (load_policy(resume_from, device) if resume_from else policy).to(device)
        ppo = PPO(
            cfg,
            envs,
            policy,
            keys=keys,
            device=device,
            reward=reward,
            callbacks=callbacks,
            aux_losses=aux_losses,
            critic_lr=critic_lr,
            episode_seeds=episode_seeds,
        )
        state = {"history": [], "best_score": None}
        if resume_from:
            saved = run.load_train_state(device)
            ppo.load_state_dict(saved)
            for key in state:
                state[key] = saved.get(key, state[key])
            run.check_unfinished(ppo.env_steps, cfg.total_timesteps, "--total-timesteps")
        run.write_config({**recorded, "policy_config": dataclasses.asdict(policy.config)})
        run.open_logs(ppo.env_steps)

        def checkpoint(score):
            ppo.sync_policy_stats()
            extra = {"task": cfg.task, "env_kwargs": env_kwargs, "step": ppo.env_steps}
            for cb in callbacks:
                cb.on_checkpoint(cfg.out)
            better = score is not None and (
                state["best_score"] is None or score >= state["best_score"]
            )
            if better:
                state["best_score"] = score
                run.save(policy, "best", {**extra, "score": score})
            run.save(policy, "last", extra, {**ppo.state_dict(), **state})

        def evaluate() -> dict:
            nonlocal eval_envs
            ppo.sync_policy_stats()
            if eval_envs is None:
                eval_envs = make_vector_env(cfg.task, 1, asynchronous=False, **env_kwargs)
            res = evaluate_policy(
                policy, cfg.task, cfg.eval_episodes, seed=EVAL_SEED, envs=eval_envs
            )
            return {"eval_return": res.mean_return, "eval_success": res.success_rate}

        bar = tqdm(
            total=cfg.total_timesteps,
            initial=min(ppo.env_steps, cfg.total_timesteps),
            unit="step",
            desc=f"ppo {cfg.task}",
            disable=not cfg.progress,
        )
        t_start = time.perf_counter()
        n_before = len(state["history"])
        last_eval = ppo.env_steps
        last_row: dict = {}
        with run.disk_guard():
            if not resume_from:
                for cb in callbacks:
                    cb.on_train_start(ppo)
            if initial is not None and not resume_from and cfg.eval_episodes:
                ev = evaluate()  # where fine-tuning starts: step 0 of the curves
                state["history"].append({"step": 0, "eval": True, "start": True, **ev})
                run.log("eval", 0, {**ev, "time_s": 0.0})
                last_row.update(ev)
                state["start"] = ev
            while ppo.env_steps < cfg.total_timesteps:
                row, _ = ppo.iteration()
                row["time_s"] = time.perf_counter() - t_start
                last_row.update({k: v for k, v in row.items() if k.startswith("ep_")})
                state["history"].append({"step": ppo.env_steps, **row})
                run.log("train", ppo.env_steps, row)
                bar.update(min(cfg.ppo.rollout_size, cfg.total_timesteps - bar.n))
                bar.set_postfix(
                    fps=f"{row['fps']:.0f}",
                    ret="-" if "ep_return" not in last_row else f"{last_row['ep_return']:.1f}",
                    refresh=False,  # drawn at the bar's own pace (every 30 s into a log)
                )
                due = cfg.eval_every and ppo.env_steps - last_eval >= cfg.eval_every
                if (due or ppo.env_steps >= cfg.total_timesteps) and cfg.eval_episodes:
                    last_eval = ppo.env_steps
                    ev = evaluate()
                    state["history"].append({"step": ppo.env_steps, "eval": True, **ev})
                    run.log("eval", ppo.env_steps, {**ev, "time_s": row["time_s"]})
                    last_row.update(ev)
                    score = ev["eval_success"] * 1e6 + ev["eval_return"]
                    checkpoint(score if choose_best else None)
                elif due or ppo.env_steps >= cfg.total_timesteps:
                    checkpoint(None)
        bar.close()
        finished = True
    finally:
        run.close(failed=not finished)
        envs.close()
        if eval_envs is not None:
            eval_envs.close()
    plots = [p for p in _plots(run, state["history"]) if p is not None]
    elapsed = time.perf_counter() - t_start
    results = {
        "task": cfg.task,
        "env_steps": ppo.env_steps,
        "final": {k: last_row.get(k) for k in ("ep_return", "eval_return", "eval_success")},
        "start": state.get("start"),  # the starting policy's evaluation (fine-tuning)
        "train_time_s": elapsed,
        # where the time went (this call): collecting rollouts, and PPO's updates
        "collect_s": sum(h.get("collect_s", 0.0) for h in state["history"][n_before:]),
        "update_s": sum(h.get("update_s", 0.0) for h in state["history"][n_before:]),
        "plots": [str(p) for p in plots],
        "device": str(device),
        "update_backend": ppo.updater.name,
    }
    run.write_results(results)
    return results


def _plots(run: RunFolder, history: list[dict]) -> list[Path | None]:
    train = [r for r in history if not r.get("eval") and "ep_return" in r]
    evals = [r for r in history if r.get("eval")]
    # fine-tuning: where the starting policy was evaluated, and where the actor began to move
    marks = {"start policy": 0} if any(r.get("start") for r in history) else None
    title = "fine-tuning" if marks else "PPO"
    warm = [r["step"] for r in history if r.get("warmup") == 1.0]
    if marks and warm and any(r.get("warmup") == 0.0 for r in history):
        marks["critic warm-up ends"] = max(warm)  # (never marked where it did not end)
    return [
        run.plot(
            "return",
            {
                "training episodes": ([r["step"] for r in train], [r["ep_return"] for r in train]),
                "evaluation (mean action)": (
                    [r["step"] for r in evals],
                    [r["eval_return"] for r in evals],
                ),
            },
            xlabel="environment steps",
            ylabel="episode return",
            title=f"{title} return",
            marks=marks,
        ),
        run.plot(
            "success",
            {
                "training episodes": ([r["step"] for r in train], [r["success"] for r in train]),
                "evaluation": ([r["step"] for r in evals], [r["eval_success"] for r in evals]),
            },
            xlabel="environment steps",
            ylabel="success rate",
            title=f"{title} success",
            ylim=(-0.02, 1.02),
            marks=marks,
        ),
    ]
