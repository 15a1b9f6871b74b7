"""Settings of the training commands, importable without torch.

`iltk --help` and every subcommand's `--help` are built from these dataclasses, so they
live apart from the algorithms (which import torch): ``TrainConfig`` (`iltk train`),
``RoundConfig`` / ``DaggerConfig`` / ``DartConfig`` (`iltk dagger`, `iltk dart`),
``PPOConfig`` (`iltk ppo`), ``FinetuneSettings`` (`iltk finetune`) and ``IRLConfig``
(`iltk irl`); ``CollectConfig`` (`iltk collect`, and ``iltk.collect.collect``),
``EvalConfig`` (`iltk eval`, and ``iltk.evaluate.evaluate_checkpoint``). Settings
are composed, never inherited and taken away: the optimizer settings and the per-policy
options are declared once (``OptimSettings``, ``PolicyOptions``) and shared by `iltk
train` and the learner of the interactive rounds; what every RL run shares is
``RunSettings``, the base of the three RL commands' settings;
``PPOSettings`` is the one PPO group (``--ppo.*``) of the three RL commands, beside the
reward player's (``RewardPlayerSettings``) and the tabular passes' (``TabularIRLSettings``).
``PolicyOptions`` has one group per registered policy (``iltk.policies.configs``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from iltk.policies.configs import POLICY_REGISTRY, PolicyConfig, policy_entry

SUPERVISED = [e for e in POLICY_REGISTRY.values() if e.supervised]
"""The policies `iltk train` trains (the others have their own commands)."""

PolicyName = Literal[tuple(e.name for e in SUPERVISED)]  # type: ignore[valid-type]
"""The name of a policy `iltk train` trains (bc, bc-rnn, act, ...)."""

POLICY_HELP = "; ".join(f"{e.name}: {e.summary}" for e in SUPERVISED)
"""One line per registered policy, for the help of the fields naming one."""


def check_collect_numbers(episodes: int, num_envs: int, dart_noise: float) -> None:
    """The numbers of a collection (``CollectConfig`` and ``collect_demos`` alike)."""
    if episodes < 1:
        raise ValueError(f"--episodes must be at least 1, got {episodes}")
    if num_envs < 1:
        raise ValueError(f"--num-envs must be at least 1, got {num_envs}")
    if not (math.isfinite(dart_noise) and 0.0 <= dart_noise <= 10.0):
        raise ValueError(f"--dart-noise must be a noise std in [0, 10] (0: none), got {dart_noise}")


@dataclass
class CollectConfig:
    """Record scripted-expert demonstrations of a task into an episode file.

    Runs the task's expert through the control loop in parallel envs, with an optional
    DART noise level (the executed action is noisy, the recorded label is clean). Appends
    when OUT exists (numbering continues; the settings must match the file's) unless
    --overwrite. A second writer of OUT is refused; a full disk stops at the first failed
    save with every saved episode kept.
    """

    task: str | None = None
    """Task id (iltk/<Name>-v<N>, see `iltk tasks`; default: iltk/Push-v0, or with --policy
    the checkpoint's task)."""
    episodes: int = 100
    """Number of episodes to save."""
    policy: Path | None = None
    """Record this policy checkpoint's episodes instead of the scripted expert's (e.g. a
    PPO expert on a gymnasium task with no scripted one: `iltk ppo --task Hopper-v5`); its
    actions are the labels."""
    out: Path = Path("datasets/demos.hdf5")
    """Episode file to write (HDF5)."""
    num_envs: int = 1
    """Parallel environments (subprocesses when > 1)."""
    seed: int = 0
    """Episode k is reset with seed SEED + k."""
    success_only: bool = False
    """Save only successful episodes (collects until EPISODES are saved, at most 3x tries)."""
    dart_noise: float = 0.0
    """DART: std of Gaussian noise added to the executed action (labels stay clean)."""
    obs_mode: str = "state"
    """Observation mode of iltk tasks: state, pixels or state+pixels."""
    image_size: int = 84
    """Camera image side for pixel observations."""
    init_spread: float = 1.0
    """How widely iltk tasks spread their start layouts: 1 = the full ranges, 0 = one fixed
    layout (recorded in the file, so training evaluates and the viewer replays on the same)."""
    action_mode: str = "cartesian"
    """Panda tasks: cartesian (end-effector velocity + gripper) or joint (7 joint velocities
    + gripper)."""
    expert_side: str = "random"
    """PointMaze: the side its expert goes round the wall, random (drawn per episode:
    bimodal demos) or start (the start's side: one mode per state)."""
    overwrite: bool = False
    """Replace OUT instead of appending to it."""

    def __post_init__(self):
        check_collect_numbers(self.episodes, self.num_envs, self.dart_noise)
        if not (math.isfinite(self.init_spread) and 0.0 <= self.init_spread <= 1.0):
            raise ValueError(f"--init-spread must be in [0, 1], got {self.init_spread}")


@dataclass
class ChunkExecution:
    """How a chunked policy (act, or a residual on one) acts; unset: as its checkpoint says."""

    temporal_ensemble: bool | None = None
    """Predict every step and average every prediction made for the step (ACT's temporal
    ensembling)."""
    n_action_steps: int | None = None
    """Execute this many actions of each chunk open-loop, then predict again (1: a fresh
    chunk every step, its first action executed); implies no temporal ensembling."""
    ensemble_m: float | None = None
    """Temporal-ensemble weights exp(-m*i), i = 0 the oldest prediction."""

    def given(self) -> dict:
        """The settings given, for ``iltk.policies.set_chunk_execution``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class EvalConfig:
    """Evaluate a policy checkpoint: success rate with a 95% interval, mean return and
    episode length, per-episode JSON, and optionally a video."""

    policy: Path
    """The policy: a checkpoint folder (e.g. runs/NAME/best)."""
    task: str | None = None
    """Task id (default: the task the policy was trained for)."""
    episodes: int = 100
    """Episodes to run; episode k uses seed SEED + k."""
    seed: int = 100_000
    """First episode seed (training data used 0.., so the default is unseen)."""
    num_envs: int = 2
    """Parallel environments."""
    device: str = "auto"
    """auto, cpu or cuda."""
    threads: int = 1
    """torch threads on the CPU."""
    video: Path | None = None
    """Also render the first two episodes to this mp4."""
    json: Path | None = None
    """Where the results go, per episode, as JSON (default: POLICY/eval.json)."""
    chunk: ChunkExecution = field(default_factory=ChunkExecution)
    """Chunked policies: how chunks are executed (default: as the checkpoint says)."""

    def __post_init__(self):
        for name in ("episodes", "num_envs", "threads"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} must be at least 1, got {getattr(self, name)}")

    def results_path(self) -> Path:
        return self.json or self.policy / "eval.json"


@dataclass
class OptimSettings:
    """The optimizer of supervised training: AdamW, linear warm-up, then cosine or constant."""

    batch_size: int = 256
    """Samples (or windows, or chunks) per step (`iltk train --nproc N`: the global batch,
    split over the processes)."""
    lr: float | None = None
    """Peak learning rate (default: the policy's own: 1e-3 for bc and bc-rnn, 3e-4 for act)."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Learning-rate schedule after the linear warm-up."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip (0: none)."""
    device: str = "auto"
    """auto (CUDA when present), cpu or cuda."""
    threads: int = 0
    """torch threads on the CPU; 0: the cores no other process is using, measured at the
    start and every 5 s (every core when the machine is idle, one when another job runs
    beside, which more threads would thrash)."""

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: auto), got {self.threads}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    def optim_settings(self) -> dict:
        """These settings as keyword arguments (to pass them on to another config)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(OptimSettings)}


def _policy_options() -> type:
    """One options group per registered policy: ``bc``, ``bc_rnn``, ``act``, ..."""

    def policy_config(self, algo: str) -> PolicyConfig:
        """The options of policy ``algo``."""
        return getattr(self, policy_entry(algo).option_name)

    def policy_options(self) -> dict:
        """Every policy's options as keyword arguments (to pass them on to another config)."""
        return {e.option_name: getattr(self, e.option_name) for e in SUPERVISED}

    fields = [
        (
            entry.option_name,
            entry.config_cls,
            field(
                default_factory=entry.config_cls,
                metadata={"help": f"Settings of --algo {entry.name}: {entry.summary}."},
            ),
        )
        for entry in SUPERVISED
    ]
    return dataclasses.make_dataclass(
        "PolicyOptions",
        fields,
        namespace={
            "__doc__": "The options of every registered policy, one group each.",
            "__module__": __name__,
            "policy_config": policy_config,
            "policy_options": policy_options,
        },
    )


PolicyOptions = _policy_options()


@dataclass
class TrainConfig(PolicyOptions, OptimSettings):
    """Train a policy by supervised imitation on an episode file."""

    algo: PolicyName = field(
        default="bc", metadata={"help": f"Policy to train ({POLICY_HELP}); its options: --ALGO.*."}
    )
    dataset: Path = Path("datasets/demos.hdf5")
    """Episode file to train on."""
    task: str | None = None
    """Env for evaluation rollouts (default: the dataset's env). 'none' disables rollouts."""
    out: Path = Path("runs/train")
    """Run folder."""
    steps: int = 20000
    """Gradient steps."""
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
    nproc: int = 1
    """Data-parallel processes on this machine (DDP under torchrun: gloo on the CPU, one
    GPU each on CUDA); --batch-size is then the global batch, split over them. Under your
    own `torchrun --nproc_per_node N -m iltk train ...` leave it at 1."""

    def __post_init__(self):
        super().__post_init__()
        if self.nproc < 1:
            raise ValueError(f"nproc must be >= 1, got {self.nproc}")
        if self.batch_size % self.nproc:
            raise ValueError(
                f"batch_size {self.batch_size} (the global batch) must divide by nproc {self.nproc}"
            )
        if not policy_entry(self.algo).supervised:  # an unknown name: one clear error too
            raise ValueError(f"{self.algo} is not trained by imitation (see its own command)")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError("valid_fraction must be in [0, 1)")
        for name in ("eval_every", "eval_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("eval_envs", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("intervention_weight", "uncorrected_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: pick one")


@dataclass
class LearnerSettings(PolicyOptions, OptimSettings):
    """How the learner is trained each round: `iltk train`'s optimizer and policy options."""

    steps_per_round: int = 2000
    """Gradient steps per round."""
    warm_start: bool = True
    """Continue from the previous round's policy (else retrain from scratch)."""

    def __post_init__(self):
        super().__post_init__()
        if self.steps_per_round < 1:
            raise ValueError(f"steps_per_round must be >= 1, got {self.steps_per_round}")


@dataclass
class RoundConfig:
    """Settings every interactive run (DAgger, HG-DAgger, DART) shares."""

    task: str = "iltk/Push-v0"
    """Task id."""
    rounds: int = 5
    """Interactive rounds after round 0."""
    episodes_per_round: int = 10
    """Episodes collected per round."""
    initial_demos: int = 10
    """Expert demonstrations of round 0."""
    eval_episodes: int = 20
    """Evaluation episodes per round (unseen seeds)."""
    num_envs: int = 2
    """Parallel environments."""
    init_spread: float = 1.0
    """iltk tasks: how widely episodes' start layouts are spread (1: the task's full
    ranges, 0: one fixed layout; narrow starts are where policies fail by drifting)."""
    action_mode: str = "cartesian"
    """Panda tasks: cartesian (end-effector velocity + gripper) or joint (joint velocities
    + gripper)."""
    seed: int = 0
    """Seed of everything."""
    out: Path = Path("runs/interactive")
    """Run folder: data.hdf5, round_<k>/ checkpoints, rounds.json/csv, success_vs_labels.png."""
    algo: PolicyName = field(
        default="bc",
        metadata={
            "help": f"Policy trained each round ({POLICY_HELP}); its options: --learner.ALGO.*."
        },
    )
    learner: LearnerSettings = field(default_factory=LearnerSettings)
    """How the policy is trained each round."""
    overwrite: bool = False
    """Start afresh in an OUT that holds an earlier run (its data and checkpoints are deleted)."""

    def __post_init__(self):
        if self.rounds < 0 or self.episodes_per_round < 1 or self.initial_demos < 1:
            raise ValueError("need rounds >= 0, episodes_per_round >= 1 and initial_demos >= 1")
        if self.eval_episodes < 0 or self.num_envs < 1:
            raise ValueError("need eval_episodes >= 0 and num_envs >= 1")
        if not 0.0 <= self.init_spread <= 1.0:
            raise ValueError(f"init_spread must be in [0, 1], got {self.init_spread}")
        if self.action_mode not in ("cartesian", "joint"):
            raise ValueError(
                f"action_mode must be cartesian or joint (Panda tasks), got {self.action_mode!r}"
            )

    @property
    def env_kwargs(self) -> dict:
        """Keyword arguments of the task's envs (none at the defaults, so any gymnasium id works)."""
        kwargs = {} if self.init_spread == 1.0 else {"init_spread": self.init_spread}
        if self.action_mode != "cartesian":
            kwargs["action_mode"] = self.action_mode
        return kwargs


@dataclass
class DaggerConfig(RoundConfig):
    """Interactive imitation with a scripted supervisor: DAgger or HG-DAgger."""

    rounds: int = 10
    """Interactive rounds after round 0."""
    out: Path = Path("runs/dagger")
    """Run folder: data.hdf5, round_<k>/ checkpoints, rounds.json/csv, success_vs_labels.png."""
    expert: Literal["scripted"] = "scripted"
    """Who labels: the task's scripted expert (at the gamepad: `iltk correct`)."""
    variant: Literal["dagger", "hg-dagger"] = "dagger"
    """dagger (expert labels every visited state) or hg-dagger (expert takes over when the
    policy strays; only interventions are aggregated)."""
    beta_schedule: Literal["linear", "exponential", "constant"] = "exponential"
    """DAgger's probability that the expert acts in round k: linear 1 - k/rounds,
    exponential beta^k, constant beta (keeping the expert in helps where the learner's
    failing rollouts are long)."""
    beta: float = 0.5
    """Base of the exponential schedule, or the constant value."""
    takeover: float = 0.3
    """HG-DAgger gate: RMS action disagreement above which the expert takes over."""
    handback: float = 0.1
    """HG-DAgger gate: disagreement below which control returns to the policy..."""
    hold: int = 5
    """...after this many consecutive steps."""
    aggregate: Literal["interventions", "all"] = "interventions"
    """HG-DAgger: train on the intervention steps only, or on every step."""
    intervention_weight: float = 1.0
    """HG-DAgger: weight of intervention steps (IWR-style up-weighting when > 1)."""
    resume: bool = False
    """Continue from the last completed round (a round cut short is collected again; its
    episodes already in data.hdf5 are dropped first); a larger --rounds goes on further."""

    def __post_init__(self):
        super().__post_init__()
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: pick one")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError("beta must be in [0, 1]")


@dataclass
class DartConfig(RoundConfig):
    """DART with a scripted supervisor."""

    out: Path = Path("runs/dart")
    """Run folder: data.hdf5, round_<k>/ checkpoints, rounds.json/csv, success_vs_labels.png."""
    init_noise: float = 0.0
    """Noise std of round 0 (0: clean demonstrations)."""
    scale: float = 1.0
    """Multiplier of the estimated covariance (Laskey et al. scale it by alpha / T)."""
    max_std: float = 1.0
    """Cap on the noise std per action dimension (keeps the supervisor able to succeed)."""

    def __post_init__(self):
        super().__post_init__()
        for name, low in (("init_noise", 0.0), ("scale", 0.0), ("max_std", 0.0)):
            value = getattr(self, name)
            if not math.isfinite(value) or value < low or (name != "init_noise" and value == 0):
                raise ValueError(
                    f"{name} must be a finite number {'>= 0' if name == 'init_noise' else '> 0'}"
                    f", got {value}"
                )


def _positive(obj, *names) -> None:
    for name in names:
        value = getattr(obj, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value}")


def _non_negative(obj, *names) -> None:
    for name in names:
        value = getattr(obj, name)
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value}")


def _check_run(obj) -> None:
    """What every RL run's settings share: the evaluation cadence, resume vs overwrite."""
    for name in ("eval_every", "eval_episodes"):
        if getattr(obj, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(obj, name)}")
    if getattr(obj, "resume", False) and obj.overwrite:
        raise ValueError("resume and overwrite exclude each other: pick one")


def _at_least_one(obj, *names) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(obj, name)}")


@dataclass
class PPOSettings:
    """PPO's own settings (SB3's names), the same group in `iltk ppo`, `iltk finetune` and
    `iltk irl` (--ppo.*)."""

    num_envs: int = 1
    """Parallel environments."""
    async_envs: bool = False
    """Step the envs in subprocesses (pays off when an env step costs more than the
    inter-process round trip, e.g. 8 Hopper envs on 8 cores; not on 2 cores)."""
    n_steps: int = 2048
    """Steps per env in each rollout (the rollout is n_steps * num_envs steps)."""
    batch_size: int = 64
    """Minibatch size of the updates."""
    n_epochs: int = 10
    """Passes over each rollout."""
    lr: float = 3e-4
    """Adam's learning rate (the actor's, where the critic has its own)."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """constant (SB3's default) or linear to 0 over the run (CleanRL's anneal)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE's lambda (1: Monte-Carlo returns minus the baseline, 0: one-step TD)."""
    objective: Literal["clip", "kl-penalty"] = "clip"
    """clip: the clipped surrogate; kl-penalty: the surrogate minus beta * KL(new || old)
    with beta adapted after every policy update (halved when the KL measured on the whole
    batch is below kl_target / 1.5, doubled when above 1.5 kl_target)."""
    clip_range: float = 0.2
    """clip objective: the ratio is clipped to [1 - clip_range, 1 + clip_range]."""
    clip_range_vf: float | None = None
    """Clip the value update to this distance from the rollout's values (unset: no clip)."""
    kl_target: float = 0.01
    """kl-penalty objective: the KL per update it aims at (d_targ)."""
    kl_beta: float = 1.0
    """kl-penalty objective: the initial penalty coefficient beta."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip."""
    target_kl: float | None = None
    """Stop a rollout's epochs early once the approximate KL exceeds 1.5 * target_kl
    (SB3's rule; unset: never)."""
    normalize_obs: bool = True
    """Running observation normalization (saved with the checkpoint)."""
    normalize_reward: bool = True
    """Scale rewards by the running std of the discounted return (as SB3's VecNormalize)."""
    normalize_advantage: bool = True
    """Standardize the advantages of each minibatch."""
    update_backend: Literal["torch", "numpy"] = "torch"
    """Who takes the minibatch steps. torch: autograd on the loss and torch's AdamW.
    numpy: the same loss's gradients written out and Adam over one flat array (for a fresh
    actor-critic on the CPU, where small networks' steps are bound by torch's per-operator
    cost; held to the torch update by the tests)."""
    compile: bool = False
    """torch.compile each whole minibatch step (the loss's gradients through torch.func, the
    gradient clip and Adam as one generated function); the critic warm-up and a
    --ppo.target-kl stop stay eager. Needs a C++ compiler on the CPU, and compiles for
    tens of seconds at the start (cached for later runs)."""

    def __post_init__(self):
        _at_least_one(self, "num_envs", "n_steps", "batch_size", "n_epochs")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        _positive(self, "clip_range", "kl_target", "kl_beta", "max_grad_norm")
        _positive(self, "clip_range_vf", "target_kl")
        _non_negative(self, "ent_coef", "vf_coef")
        if self.batch_size > self.rollout_size:
            raise ValueError(
                f"batch_size {self.batch_size} is larger than a rollout ({self.n_steps} steps x "
                f"{self.num_envs} envs = {self.rollout_size}): lower --ppo.batch-size or raise "
                "--ppo.n-steps"
            )

    @property
    def rollout_size(self) -> int:
        return self.n_steps * self.num_envs


@dataclass
class RunSettings:
    """What the settings of every RL run share (`iltk ppo`, `iltk finetune`, `iltk irl`):
    its evaluations, seed, device, and how its folder is taken."""

    eval_every: int = 20_000
    """Environment steps between evaluations (0: only at the end; fine-tuning also
    evaluates at the start)."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic actions, unseen seeds)."""
    seed: int = 0
    """Seed of the weights, the sampling and the episodes."""
    device: str = "cpu"
    """The torch device: cpu (fastest for these small networks), cuda or auto."""
    threads: int = 1
    """torch threads on the CPU (1 is fastest for 64-unit networks)."""
    resume: bool = False
    """Continue from OUT/last (unfinished episodes restart)."""
    overwrite: bool = False
    """Start afresh in an OUT that holds an earlier run (its checkpoints and logs are deleted)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        _at_least_one(self, "threads")
        _check_run(self)

    def run_settings(self) -> dict:
        """These shared settings as keywords (for the PPO run another command starts)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(RunSettings)}


@dataclass
class PPOConfig(RunSettings):
    """Train a policy with PPO (Schulman et al. 2017) and GAE on a task's reward."""

    task: str = "iltk/Reach-v0"
    """Task id: an iltk task (its dense reward) or any gymnasium id with a Box action space
    (Pendulum-v1, Reacher-v5, Hopper-v5, ...)."""
    total_timesteps: int = 200_000
    """Environment steps to train for (over all envs)."""
    out: Path = Path("runs/ppo")
    """Run folder: config.json, best/ and last/ checkpoints, metrics.csv, tb/, plots/."""
    ppo: PPOSettings = field(default_factory=PPOSettings)
    """PPO's settings."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the actor and of the critic."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Activation of the actor and of the critic."""
    log_std_init: float = 0.0
    """Initial log std of the actions."""
    reward: Path | None = None
    """Train on a learned reward (a reward checkpoint folder, e.g. `iltk irl`'s DIR/reward)
    instead of the env's; the env's return is still logged and evaluated."""
    reward_part: Literal["g", "full"] = "g"
    """A shaped learned reward (--reward.kind shaped in `iltk irl`): train on its g(s),
    the reward disentangled from the dynamics, or on the full g(s) + gamma h(s') - h(s)
    the game used (the same optimal policies on the same dynamics)."""

    def __post_init__(self):
        super().__post_init__()
        _at_least_one(self, "total_timesteps")


@dataclass
class RewardPlayerSettings:
    """The reward player of deep IRL (--reward.*)."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the reward network."""
    kind: Literal["s", "sa", "ss", "shaped"] = "s"
    """The reward class: s r(s) (transfers to new dynamics), sa r(s, a), ss r(s, s'), or
    shaped, AIRL's g(s) + gamma h(s') - h(s) (g, the reward disentangled from the
    dynamics, is what `iltk ppo --reward` then trains on)."""
    lr: float = 1e-3
    """Adam's learning rate."""
    updates: int = 50
    """Minibatch steps after each PPO update."""
    batch: int = 512
    """Demonstration and policy samples per step (each)."""
    l2: float = 0.01
    """Penalty on the squared rewards of both sample sets (keeps the game bounded)."""
    aula: float = 0.0
    """Quadratic penalty on the output layers' weights, the Lagrange multipliers of the
    features (an augmented Lagrangian: for the misspecified case, where no policy matches
    the demonstrations' moments; 0: off)."""
    grad_penalty: float = 10.0
    """Weight of the gradient penalty (|grad r| - 1)^2 between demo and policy samples
    (WGAN-GP's): keeps the reward 1-Lipschitz, a slope towards the demonstrations rather
    than a step (0: off)."""
    replay: int = 5
    """Compare with the states of the last REPLAY rollouts (past policies too, which
    steadies the game)."""
    inputs: list[int] | None = None
    """Indices of the observation values the reward reads (default: all; each task's
    module docstring lists its values in order, e.g. `python -m pydoc iltk.envs.reach`).
    E.g. only goal-relative values (Reach-v1's target - eef: 9 10 11): a reward that cannot
    see where a layout's goal is cannot tell the demonstrations' layouts from new ones,
    so it can be learned and used on fresh starts."""
    starts: Literal["demos", "fresh"] = "demos"
    """Where the policy's training episodes start. demos: from the demonstrations' starts
    (their reset seeds, cycled), so that both sides of the game share goals and layouts;
    fresh: new starts. Evaluations always use unseen starts."""

    def __post_init__(self):
        _at_least_one(self, "updates", "batch", "replay")
        _positive(self, "lr")
        _non_negative(self, "l2", "grad_penalty", "aula")


@dataclass
class TabularIRLSettings:
    """Exact MaxEnt IRL on a tabular task (--tabular.*)."""

    horizon: int | None = None
    """The horizon (default: the task's)."""
    discount: float = 1.0
    """The discount of the visitations."""
    model: Literal["linear", "mlp"] = "linear"
    """The reward model over the state features (solver exact)."""
    solver: Literal["exact", "game"] = "exact"
    """exact: MaxEnt IRL's passes on the reward model; game: the MuJoCo tasks' game with
    every expectation exact, the deep reward player (--reward.*: its class, network, step
    size, penalties) against the policy player --game names (dual: soft value iteration's
    best response; primal: one mirror-descent step of the policy per move). One
    iteration is one move of the reward player."""
    max_iter: int = 1000
    """Iteration limit (stops earlier when the visitations match)."""
    tolerance: float = 1e-3
    """Stop when max |visitation - expert visitation| is below this."""
    lr_decay: float = 0.05
    """Solver game: the reward player's step at move k is --reward.lr / (1 + lr_decay k),
    so the two players settle on the equilibrium instead of circling it (0: constant)."""

    def __post_init__(self):
        _at_least_one(self, "max_iter")
        _positive(self, "tolerance")
        _non_negative(self, "lr_decay")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")


@dataclass
class IRLConfig(RunSettings):
    """Learn a reward from demonstrations alone (MaxEnt IRL) and a policy that is soft-optimal for it.

    MuJoCo and gymnasium tasks: IRL as a game. The reward player, an MLP of the class
    --reward.kind (r(s), r(s, a), r(s, s') or AIRL's shaped g(s) + gamma h(s') - h(s)) on
    the task's observations, raises the reward of the demonstrations' steps against those
    of the policy's recent rollouts (the MaxEnt IRL gradient, E_demo[grad r] - E_policy[grad r]),
    with an L2 and a gradient penalty on the rewards; the policy player is PPO with an
    entropy bonus on the current reward, started as behaviour cloning of the same
    demonstrations (--warm-start none: at random). --game primal moves the reward after
    every PPO update (GAIL's schedule, the default), dual after a best response of
    --best-response updates (MaxEnt IRL's). An episode that ends before the time limit is
    its final state held to it, on both sides, so that ending neither pays nor costs.
    Tabular tasks (iltk/ObjectWorld-v0, iltk/RandomMDP-v0): exact MaxEnt IRL (soft value
    iteration and visitation passes, --tabular.*; --tabular.solver game: the game above
    with exact expectations). The env's reward is never used for
    learning (only for the logged evaluations)."""

    dataset: Path = Path("datasets/demos.hdf5")
    """Episode file of demonstrations."""
    task: str | None = None
    """Task id (default: the dataset's)."""
    demos: int = 0
    """Use the first DEMOS episodes of the file (0: all)."""
    out: Path = Path("runs/irl")
    """Run folder: reward/ (for `iltk ppo --reward`), policy/ (for `iltk eval`), last/,
    metrics.csv, tb/, plots/ (with the learned reward as a heatmap)."""
    total_timesteps: int = 300_000
    """Environment steps of the policy player (MuJoCo tasks)."""
    ppo: PPOSettings = field(default_factory=lambda: PPOSettings(ent_coef=0.01))
    """The policy player's PPO (an entropy bonus: a soft best response to the reward)."""
    reward: RewardPlayerSettings = field(default_factory=RewardPlayerSettings)
    """The reward player (MuJoCo tasks)."""
    game: Literal["primal", "dual"] = "primal"
    """How the game is solved (MuJoCo tasks). primal: both players no-regret, the reward
    moves after every PPO update (GAIL's schedule); dual: the policy plays a best response,
    BEST_RESPONSE PPO updates on the fixed reward warm-started from the last policy,
    before each move of the reward (MaxEnt IRL's schedule)."""
    best_response: int = 5
    """dual: PPO updates (rollouts) per move of the reward player."""
    warm_start: Literal["none", "bc"] = "bc"
    """bc: the policy player starts as behaviour cloning of the same demonstrations
    (BC_STEPS Adam steps on PPO's actor); none: at random."""
    bc_steps: int = 10_000
    """warm_start bc: minibatch steps of the fit."""
    critic_warmup: int = 5
    """Rollouts that train PPO's critic alone before its actor moves (after a warm start,
    a fresh critic's first advantages would otherwise undo the fit; 0: none)."""
    init_policy: Path | None = None
    """Start the policy player from this BC checkpoint (`iltk train --algo bc`, an MLP on
    states) instead of a fresh actor: it is fine-tuned as `iltk finetune` does (its own
    normalization kept, a bounded learned std from exp(-2), a fresh 256-256 critic at lr
    1e-3 warmed up for --critic-warmup rollouts, and, where --ppo.lr and
    --ppo.clip-range are left at their defaults, fine-tuning's 3e-5 and 0.05);
    --warm-start is then not used."""
    init_reward: Path | None = None
    """Start the reward player where an earlier `iltk irl` run on this task left it (that
    run's folder: its network, optimizer and replay from OUT/last), e.g. the reward of a
    game against a scratch policy, which has seen exploring rollouts, going on against a
    policy player started from BC (--init-policy). --reward.kind, --reward.hidden and
    --reward.inputs must be that run's."""
    bc_weight: float = 0.0
    """Weight of a behaviour-cloning term (squared error of the actor's mean on the
    demonstrations) in the policy player's loss, as GAIL + BC and DAPG add one (0: none)."""
    bc_decay: float = 1.0
    """The BC term's weight is multiplied by this after every rollout (1: constant)."""
    tabular: TabularIRLSettings = field(default_factory=TabularIRLSettings)
    """Tabular tasks' exact MaxEnt IRL."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the policy player's actor and critic."""
    resume: bool = False
    """MuJoCo tasks: continue from OUT/last, the reward player's state with it (tabular
    runs take seconds and have nothing to resume)."""

    def __post_init__(self):
        super().__post_init__()
        _at_least_one(self, "total_timesteps", "best_response", "bc_steps")
        if self.critic_warmup < 0:
            raise ValueError(f"critic_warmup must be >= 0, got {self.critic_warmup}")
        if self.demos < 0:
            raise ValueError(f"demos must be >= 0, got {self.demos}")
        if not (self.bc_weight >= 0 and math.isfinite(self.bc_weight)):
            raise ValueError(f"bc_weight must be a finite number >= 0, got {self.bc_weight}")
        if not 0 < self.bc_decay <= 1:
            raise ValueError(f"bc_decay must be in (0, 1], got {self.bc_decay}")

    def ppo_config(self, task: str) -> PPOConfig:
        """The policy player's PPO run (from --init-policy: fine-tuning's step and clip
        where the command left IRL's, and the checkpoint's own normalization)."""
        ppo = self.ppo
        if self.init_policy is not None:
            default, tuned = PPOSettings(), _finetune_ppo()
            ppo = dataclasses.replace(
                ppo,
                normalize_obs=False,
                lr=tuned.lr if ppo.lr == default.lr else ppo.lr,
                clip_range=tuned.clip_range
                if ppo.clip_range == default.clip_range
                else ppo.clip_range,
            )
        return PPOConfig(
            task=task,
            total_timesteps=self.total_timesteps,
            out=self.out,
            ppo=ppo,
            hidden=list(self.hidden),
            **self.run_settings(),
        )


def _finetune_ppo() -> PPOSettings:
    # a small actor step and clip (the start is already good); a fine-tuned MLP keeps the
    # normalization it was trained with (a residual gets PPO's own: see iltk.algos.finetune)
    return PPOSettings(lr=3e-5, clip_range=0.05)


@dataclass
class FinetuneSettings(RunSettings):
    """Fine-tune a behaviour-cloned policy with PPO on the task's reward.

    The actor starts as the BC policy (its normalization kept): its action is the mean of a
    Gaussian with a learned std bounded to [exp(min_log_std), exp(max_log_std)]. BC-RNN and
    ACT policies (or any, with --mode residual) stay frozen, chunk execution and hidden
    state included, under a per-step Gaussian residual whose last layer starts at zero. A
    fresh critic is first warmed up for CRITIC_WARMUP_ROLLOUTS rollouts with the actor frozen (a
    random critic's advantages would otherwise undo the BC policy in the first updates),
    then both train, the actor at a small learning rate and clip (DPPO's recipe: actor 1e-5
    to 1e-4, critic 1e-3, clip 0.01 to 0.1). The policy is evaluated before any update: the
    curves and metrics.csv start there."""

    policy: Path = Path("runs/bc/best")
    """The BC checkpoint to start from (bc, bc-rnn or act)."""
    task: str | None = None
    """Task id (default: the checkpoint's)."""
    total_timesteps: int = 500_000
    """Environment steps (the warm-up's included)."""
    out: Path = Path("runs/finetune")
    """Run folder: best/ and last/ (ordinary checkpoints), metrics.csv, tb/, plots/."""
    ppo: PPOSettings = field(default_factory=_finetune_ppo)
    """PPO's settings (--ppo.lr is the actor's learning rate; --ppo.normalize-obs applies
    to a residual only: a fine-tuned MLP keeps the normalization it was trained with)."""
    reward_type: Literal["sparse", "dense"] = "sparse"
    """sparse: 1 at success (the task's own measure), else 0; dense: the env's reward.
    (--reward DIR trains on a learned reward instead.)"""
    reward: Path | None = None
    """Train on a learned reward (a reward checkpoint folder, e.g. `iltk irl`'s DIR/reward)."""
    critic_lr: float = 1e-3
    """The critic's learning rate."""
    critic_warmup_rollouts: int = 5
    """Rollouts that train the critic alone before the actor moves."""
    log_std_init: float = -2.0
    """Initial log std of the exploration noise (actions in [-1, 1]: std 0.14)."""
    min_log_std: float = -3.0
    """Lower bound of the log std (a minimum exploration)."""
    max_log_std: float = -0.5
    """Upper bound of the log std."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer sizes of the critic (and of a residual's actor)."""
    kl_bc: float = 0.0
    """Weight of the KL penalty towards the starting policy (its mean under the current
    std; for a residual, towards a zero residual). 0: off."""
    bc_weight: float = 0.0
    """DAPG's behaviour-cloning term: this weight times bc_decay^k on the BC loss of a
    minibatch of demonstrations at rollout k (MLP policies). 0: off."""
    bc_decay: float = 0.95
    """Per-rollout decay of bc_weight."""
    bc_batch_size: int = 256
    """Demonstration samples per minibatch of the BC term."""
    dataset: Path | None = None
    """The demonstrations of the BC term (default: the checkpoint's own dataset)."""
    mode: Literal["auto", "whole", "residual"] = "auto"
    """whole: the BC network itself is fine-tuned (bc policies; a GMM head as a Gaussian at
    its most likely component's mean); residual: the BC policy stays frozen under a
    per-step Gaussian residual; auto: whole for bc, residual for bc-rnn and act (their
    hidden state and chunk execution stay as trained)."""
    chunk: ChunkExecution = field(default_factory=ChunkExecution)
    """An act policy: how its chunks are executed under the residual (default: as its
    checkpoint says); the fine-tuned checkpoint keeps it."""
    eval_episodes: int = 50
    """Episodes per evaluation (deterministic actions, unseen seeds)."""

    def __post_init__(self):
        super().__post_init__()
        _at_least_one(self, "total_timesteps", "bc_batch_size")
        if self.critic_warmup_rollouts < 0:
            raise ValueError(
                f"critic_warmup_rollouts must be >= 0, got {self.critic_warmup_rollouts}"
            )
        if not (math.isfinite(self.critic_lr) and 0 < self.critic_lr <= 1):
            raise ValueError(f"critic_lr must be in (0, 1], got {self.critic_lr}")
        if not self.min_log_std <= self.log_std_init <= self.max_log_std:
            raise ValueError("need min_log_std <= log_std_init <= max_log_std")
        _non_negative(self, "kl_bc", "bc_weight")
        if not 0.0 < self.bc_decay <= 1.0:
            raise ValueError(f"bc_decay must be in (0, 1], got {self.bc_decay}")

    def ppo_config(self, task: str, *, normalize_obs: bool) -> PPOConfig:
        """The PPO run of this fine-tuning."""
        return PPOConfig(
            task=task,
            total_timesteps=self.total_timesteps,
            out=self.out,
            ppo=dataclasses.replace(self.ppo, normalize_obs=normalize_obs),
            log_std_init=self.log_std_init,
            reward=self.reward,
            **self.run_settings(),
        )


RECORDED_BESIDE = ("policy_config", "task_resolved")
"""What a run's config.json records beside the command's settings (not settings)."""


def config_from_dict(cls: type, data: dict, *, where: str = "config.json"):
    """The settings ``cls`` (a dataclass of this module, nested groups included) from the
    dict a run's config.json holds; a key that is no setting of ``cls`` is an error (the
    file of another command), a missing one keeps its default."""
    import typing

    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names - set(RECORDED_BESIDE))
    if unknown:
        shown = ", ".join(map(repr, unknown[:3])) + (
            f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        )
        raise ValueError(
            f"{where}: {shown} {'is not a setting' if len(unknown) == 1 else 'are not settings'}"
            " of this command: the config.json of another command (or of an older iltk)?"
        )
    kwargs = {}
    for name in names & set(data):
        value, hint = data[name], hints[name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = config_from_dict(hint, value, where=f"{where}: {name}")
        elif value is not None and Path in (typing.get_args(hint) or (hint,)):
            value = Path(value)
        elif isinstance(value, list) and typing.get_origin(hint) is tuple:
            value = tuple(value)
        if not _fits(value, hint):
            raise ValueError(f"{where}: {name} = {value!r}, but it takes {_type_name(hint)}")
        kwargs[name] = value
    return cls(**kwargs)


def _fits(value, hint) -> bool:
    """Whether a value read from JSON is of a plain setting's type (numbers, text, flags,
    choices, optional ones); other kinds are left to the settings' own checks."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in args
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _type_name(hint) -> str:
    import typing

    if typing.get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(hint)))
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")
