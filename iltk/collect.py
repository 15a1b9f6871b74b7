"""Collection: the task's scripted expert (or a policy checkpoint) through the control loop
into an episode file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from iltk.algos.settings import CollectConfig, check_collect_numbers
from iltk.controllers import DartNoise, ExpertController, PolicyController
from iltk.data import DemoWriter, make_env_args
from iltk.envs import make_env, make_expert, make_vector_env
from iltk.files import check_output
from iltk.rollout import Episode, run_episodes


@dataclass
class CollectResult:
    path: Path
    saved: int
    attempted: int
    successes: int
    mean_return: float = float("nan")
    task: str = ""
    source: str = "scripted"


def collect(cfg: CollectConfig, *, progress: bool = True) -> CollectResult:
    """`iltk collect` as a library call: the same settings, checked the same way (the
    observation mode, image size, start spread, action mode and expert side become the env's
    keywords; those that a task does not take are refused)."""
    import dataclasses

    from iltk.envs import PANDA_TASK_IDS, TASK_IDS
    from iltk.envs.panda import ACTION_MODES

    if cfg.task is None:
        task = None
        if cfg.policy is not None:
            from iltk.policies import load_checkpoint

            task = load_checkpoint(cfg.policy, "cpu")[1].get("task")
        cfg = dataclasses.replace(cfg, task=task or "iltk/Push-v0")
    if cfg.policy is not None and cfg.dart_noise > 0:
        raise ValueError("--dart-noise labels a scripted expert's clean actions; not with --policy")
    env_kwargs: dict = {}
    if cfg.task in TASK_IDS:  # the MuJoCo tasks (tabular ones observe a state index)
        env_kwargs = {"obs_mode": cfg.obs_mode, "image_size": cfg.image_size}
        if cfg.init_spread != 1.0:
            env_kwargs["init_spread"] = cfg.init_spread
    elif cfg.init_spread != 1.0:
        raise ValueError("--init-spread applies to the MuJoCo iltk tasks only")
    elif cfg.success_only:
        raise ValueError(
            f"--success-only needs a task with a success test (the MuJoCo iltk tasks); "
            f"{cfg.task}'s episodes have none"
        )
    if cfg.action_mode not in ACTION_MODES:
        raise ValueError(
            f"--action-mode must be one of {', '.join(ACTION_MODES)} (cartesian: end-effector "
            f"velocity + gripper; joint: joint velocities + gripper), got {cfg.action_mode!r}"
        )
    if cfg.action_mode != "cartesian":
        if cfg.task not in PANDA_TASK_IDS:
            raise ValueError(
                f"--action-mode applies to the Panda tasks ({', '.join(PANDA_TASK_IDS)})"
            )
        env_kwargs["action_mode"] = cfg.action_mode
    if cfg.expert_side != "random":
        from iltk.envs.point_maze import EXPERT_SIDES

        if cfg.task != "iltk/PointMaze-v0":
            raise ValueError("--expert-side applies to iltk/PointMaze-v0 only")
        if cfg.expert_side not in EXPERT_SIDES:
            raise ValueError(
                f"--expert-side must be one of {', '.join(EXPERT_SIDES)} (random: a side "
                f"drawn per episode; start: the start's side), got {cfg.expert_side!r}"
            )
        env_kwargs["expert_side"] = cfg.expert_side
    return collect_demos(
        cfg.task,
        cfg.out,
        cfg.episodes,
        num_envs=cfg.num_envs,
        seed=cfg.seed,
        success_only=cfg.success_only,
        dart_noise=cfg.dart_noise,
        env_kwargs=env_kwargs,
        overwrite=cfg.overwrite,
        progress=progress,
        policy=cfg.policy,
    )


def collect_demos(
    task: str,
    out: str | Path,
    episodes: int,
    *,
    num_envs: int = 1,
    seed: int = 0,
    success_only: bool = False,
    dart_noise: float = 0.0,
    env_kwargs: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
    max_attempts_factor: float = 3.0,
    policy: str | Path | None = None,
) -> CollectResult:
    """Run the scripted expert (or the ``policy`` checkpoint: its actions are the labels,
    its env settings the defaults) and save ``episodes`` demos to ``out``.

    With ``success_only`` only successful episodes are saved and collection continues
    (up to ``max_attempts_factor * episodes`` attempts) until ``episodes`` are saved.
    With ``dart_noise`` > 0 the executed action is the expert's plus N(0, sigma^2) noise and
    the recorded label (``actions``) is the clean expert action.
    """
    env_kwargs = dict(env_kwargs or {})
    check_collect_numbers(episodes, num_envs, dart_noise)
    check_output(out, append=True, what="--out")
    actor = None
    if policy is not None:
        from iltk.evaluate import policy_for_task

        actor, task, saved_kwargs = policy_for_task(Path(policy), task)
        env_kwargs = {**saved_kwargs, **env_kwargs}
    probe = make_env(task, **env_kwargs)
    try:
        if actor is None:
            make_expert(probe)  # fails, before any file is touched, for envs without an expert
        base = probe.unwrapped  # MuJoCo tasks store their model; tabular MDPs have none
        model_xml = base.model_xml() if hasattr(base, "model_xml") else ""
        control_freq = getattr(base, "control_freq", None)
    finally:
        probe.close()
    # the writer (and its lock) before the envs: a second writer is refused before any work
    writer = DemoWriter(
        out,
        make_env_args(task, env_kwargs, control_freq),
        model_file=model_xml,
        overwrite=overwrite,
    )
    try:
        envs = make_vector_env(task, num_envs, **env_kwargs)
    except BaseException:
        writer.close()
        raise
    if actor is not None:
        from iltk.policies import PolicyRunner

        controller = PolicyController(PolicyRunner(actor, num_envs))
    else:
        controller = ExpertController()
    if dart_noise > 0:
        controller = DartNoise(controller, dart_noise, seed=seed)
    source = "policy" if actor is not None else "dart" if dart_noise > 0 else "scripted"
    attrs = {"dart_noise": dart_noise} if actor is None else {"policy": str(policy)}
    saved = attempted = successes = 0
    returns: list[float] = []
    bar = tqdm(total=episodes, desc=f"collect {task}", unit="ep", disable=not progress)

    def on_episode(ep: Episode):
        nonlocal saved, successes
        successes += ep.success
        returns.append(ep.episode_return)
        if success_only and not ep.success:
            return
        if saved >= episodes:
            return
        writer.check()  # a failed save (full disk) stops collection at once
        writer.save(ep, source=source, attrs=attrs)
        saved += 1
        bar.update(1)

    try:
        next_seed = seed
        max_attempts = int(max_attempts_factor * episodes) if success_only else episodes
        while saved < episodes and attempted < max_attempts:
            todo = min(episodes - saved, max_attempts - attempted)
            run_episodes(envs, controller, todo, seed=next_seed, on_episode=on_episode)
            attempted += todo
            next_seed += todo
        writer.flush()
    finally:
        bar.close()
        envs.close()
        writer.close()
    mean_return = float(sum(returns) / len(returns)) if returns else float("nan")
    return CollectResult(Path(out), saved, attempted, successes, mean_return, task, source)
