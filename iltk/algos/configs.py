"""Settings of the training commands, importable without torch.

`iltk --help` and every subcommand's `--help` are built from these dataclasses, so they
live apart from the algorithms (which import torch): ``TrainConfig`` (`iltk train`),
``RoundConfig`` / ``DaggerConfig`` / ``DartConfig`` (`iltk dagger`, `iltk dart`),
``PPOConfig`` (`iltk ppo`) and ``IRLConfig`` (`iltk irl`, PPO's settings plus its own). The
optimizer settings and the per-policy options are declared once (``OptimSettings``,
``PolicyOptions``) and shared by `iltk train` and the learner of the interactive rounds.
``PolicyOptions`` has one group per registered policy (``iltk.policies.configs``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from iltk.policies.configs import POLICY_REGISTRY, PolicyConfig, policy_entry

NOT_AN_OPTION = {"option": False}
"""Field metadata: a setting the command line does not offer (e.g. one a subclass rules out)."""

SUPERVISED = [e for e in POLICY_REGISTRY.values() if e.supervised]
"""The policies `iltk train` trains (the others have their own commands)."""

PolicyName = Literal[tuple(e.name for e in SUPERVISED)]  # type: ignore[valid-type]
"""The name of a policy `iltk train` trains (bc, bc-rnn, act, ...)."""

POLICY_HELP = "; ".join(f"{e.name}: {e.summary}" for e in SUPERVISED)
"""One line per registered policy, for the help of the fields naming one."""


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
class OptimSettings:
    """The optimizer of supervised training: AdamW, linear warm-up, then cosine or constant."""

    batch_size: int = 256
    """Samples (or windows, or chunks) per step; with --nproc the global batch, split over the
    processes."""
    lr: float | None = None
    """Peak learning rate (default: the policy's own: 1e-3 for bc and bc-rnn, 3e-4 for act)."""
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

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        for name in ("weight_decay", "grad_clip"):
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
    """Gradient steps (MLP BC on the scripted tasks needs many: on Lift with 100 demos a 2x256
    MLP after 5k steps succeeded 36% of the time, a 3x256 one after 20k steps 100%)."""
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
    exponential beta^k, constant beta. Keeping the expert in helps where the learner's failing
    rollouts are long: on Push (3 seeds, 6 rounds of 10 episodes) constant 0.5 reached 90%
    success at 6.0k labels, 0.5^k 75% at 7.4k (fewer labels went into failed episodes)."""
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

    def __post_init__(self):
        super().__post_init__()
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


@dataclass
class PPOConfig:
    """Train a policy with PPO (Schulman et al. 2017) and GAE on a task's reward."""

    task: str = "iltk/Reach-v0"
    """Task id: an iltk task (its dense reward) or any gymnasium id with a Box action space
    (Pendulum-v1, Reacher-v5, Hopper-v5, ...)."""
    steps: int = 200_000
    """Environment steps to train for (over all envs)."""
    out: Path = Path("runs/ppo")
    """Run folder: config.json, best/ and last/ checkpoints, metrics.csv, tb/, plots/."""
    num_envs: int = 1
    """Parallel environments."""
    async_envs: bool = False
    """Step the envs in subprocesses (pays off when an env step costs more than the
    inter-process round trip, e.g. 8 Hopper envs on 8 cores; not on 2 cores)."""
    n_steps: int = 2048
    """Steps per env in each rollout (the batch is n_steps * num_envs)."""
    batch_size: int = 64
    """Minibatch size of the updates."""
    epochs: int = 10
    """Passes over each rollout."""
    lr: float = 3e-4
    """Adam's learning rate."""
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
    clip: float = 0.2
    """clip objective: the ratio is clipped to [1 - clip, 1 + clip]."""
    clip_vf: float | None = None
    """Clip the value update to this distance from the rollout's values (None: no clip)."""
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
    (SB3's rule; None: never)."""
    normalize_obs: bool = True
    """Running observation normalization (saved with the checkpoint)."""
    normalize_reward: bool = True
    """Scale rewards by the running std of the discounted return (as SB3's VecNormalize)."""
    normalize_advantage: bool = True
    """Standardize the advantages of each minibatch."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the actor and of the critic."""
    activation: Literal["tanh", "relu"] = "tanh"
    """Activation of the actor and of the critic."""
    log_std_init: float = 0.0
    """Initial log std of the actions."""
    reward: Path | None = None
    """Train on a learned reward (a reward checkpoint folder, e.g. `iltk irl`'s DIR/reward)
    instead of the env's; the env's return is still logged and evaluated."""
    eval_every: int = 20_000
    """Environment steps between evaluations (0: only at the end)."""
    eval_episodes: int = 10
    """Episodes per evaluation (deterministic actions, unseen seeds)."""
    seed: int = 0
    """Seed of the weights, the sampling and the episodes."""
    device: str = "cpu"
    """cpu (fastest for these small networks), cuda or auto."""
    threads: int = 1
    """torch threads on the CPU (1 is fastest for 64-unit networks)."""
    compile: bool = False
    """torch.compile torch's minibatch loss (its forward and backward): a 64-sample step
    of the 64-unit networks takes 0.67-0.73 ms against 0.90 eager, after a compile of 10-60 s.
    It runs the torch update; on the CPU the default numpy update is faster still (see
    --update-backend), so it is worth it on a GPU or for policies the numpy update does
    not cover. Needs a C++ compiler."""
    update_backend: Literal["auto", "numpy", "torch"] = "auto"
    """Who runs the minibatch updates. numpy: the loss's gradients written out and Adam
    over one flat array (iltk/algos/ppo_numpy.py, checked against autograd in the tests):
    on the CPU a 64-sample step of the 64-unit networks takes 0.17 ms against torch's
    0.92 (0.67 compiled); it covers a fresh actor-critic on the CPU. torch: autograd and
    torch.optim (CUDA, --compile, fine-tuned policies, regularizers). auto: numpy where it
    covers the run, else torch."""
    resume: bool = False
    """Continue from OUT/last (unfinished episodes restart)."""
    overwrite: bool = False
    """Start afresh in an OUT that holds an earlier run (its checkpoints and logs are deleted)."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self):
        for name in ("steps", "num_envs", "n_steps", "batch_size", "epochs", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "eval_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise ValueError(f"lr must be in (0, 1], got {self.lr}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("clip", "kl_target", "kl_beta", "max_grad_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        for name in ("ent_coef", "vf_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("clip_vf", "target_kl"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: pick one")

    @property
    def rollout_size(self) -> int:
        return self.n_steps * self.num_envs


@dataclass
class IRLConfig(PPOConfig):
    """Learn a reward from demonstrations alone (MaxEnt IRL) and a policy that is soft-optimal for it.

    MuJoCo tasks: IRL as a game. The reward player, an MLP r(s) (or r(s, a)) on the task's
    observations, raises the reward of the demonstrations' states against those of the
    policy's recent rollouts (the MaxEnt IRL gradient, E_demo[grad r] - E_policy[grad r]),
    with an L2 and a gradient penalty on the rewards; the policy player is PPO with an
    entropy bonus on the current reward. An episode that ends before the time limit is
    its final state held to it, on both sides, so that ending neither pays nor costs. Tabular tasks
    (iltk/ObjectWorld-v0, iltk/RandomMDP-v0): exact MaxEnt IRL (soft value iteration and
    visitation passes). The env's reward is never used for learning (only for the logged
    evaluations)."""

    task: str | None = None
    """Task id (default: the dataset's)."""
    reward: Path | None = field(default=None, metadata=NOT_AN_OPTION)
    resume: bool = field(default=False, metadata=NOT_AN_OPTION)
    dataset: Path = Path("datasets/demos.hdf5")
    """Episode file of demonstrations."""
    demos: int = 0
    """Use the first DEMOS episodes of the file (0: all)."""
    out: Path = Path("runs/irl")
    """Run folder: reward/ (for `iltk ppo --reward`), policy/ (for `iltk eval`), last/,
    metrics.csv, tb/, plots/ (with the learned reward as a heatmap)."""
    steps: int = 300_000
    """Environment steps of the policy player (MuJoCo tasks)."""
    ent_coef: float = 0.01
    """Entropy bonus of the policy player (a soft best response to the reward)."""
    reward_hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the reward network (MuJoCo tasks)."""
    state_only: bool = True
    """Learn r(s) (transfers to new dynamics); --no-state-only learns r(s, a)."""
    reward_lr: float = 1e-3
    """Adam's learning rate of the reward player."""
    reward_updates: int = 50
    """Reward minibatch steps after each PPO update (10 at lr 3e-4 left Reach's reward a
    ramp after 100k steps)."""
    reward_batch: int = 512
    """Demonstration and policy samples per reward step (each)."""
    reward_l2: float = 0.01
    """Penalty on the squared rewards of both sample sets (keeps the game bounded)."""
    reward_grad_penalty: float = 10.0
    """Weight of the gradient penalty (|grad r| - 1)^2 between demo and policy samples
    (WGAN-GP's): keeps the reward 1-Lipschitz, a slope towards the demonstrations rather
    than a step (0: off)."""
    starts: Literal["demos", "mixed", "fresh"] = "demos"
    """Where the policy's training episodes start. demos: from the demonstrations' starts
    (their reset seeds, cycled), so that both sides of the game share goals and layouts;
    mixed: every other episode so, the rest fresh (the reward player compares only the
    former, the policy learns from all, so it also acts where no demonstration went; but
    the reward is never pushed down where only fresh episodes go, and on Reach a fresh PPO
    on a mixed run's reward did not learn: benchmarks/RESULTS.md); fresh: every episode
    fresh. Evaluations always use unseen starts."""
    replay: int = 5
    """The reward player compares with the states of the last REPLAY rollouts (past
    policies too, which steadies the game)."""
    horizon: int | None = None
    """Tabular tasks: the horizon (default: the task's)."""
    discount: float = 1.0
    """Tabular tasks: the discount of the visitations."""
    model: Literal["linear", "mlp"] = "linear"
    """Tabular tasks: the reward model over the state features."""
    max_iter: int = 1000
    """Tabular tasks: iteration limit (stops earlier when the visitations match)."""
    tolerance: float = 1e-3
    """Tabular tasks: stop when max |visitation - expert visitation| is below this."""

    def __post_init__(self):
        super().__post_init__()
        if self.reward is not None:
            raise ValueError("--reward is for `iltk ppo`; `iltk irl` learns the reward")
        if self.demos < 0:
            raise ValueError(f"demos must be >= 0, got {self.demos}")
        for name in ("reward_updates", "reward_batch", "replay", "max_iter"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("reward_lr", "tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        for name in ("reward_l2", "reward_grad_penalty"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.resume:
            raise ValueError(
                "`iltk irl` does not resume yet (the reward player's state is not saved "
                "with last/): run it again with --overwrite"
            )


@dataclass
class FinetuneSettings(PPOConfig):
    """Fine-tune a behaviour-cloned policy with PPO on the task's reward.

    The actor starts as the BC policy (its normalization kept): its action is the mean of a
    Gaussian with a learned std bounded to [exp(min_log_std), exp(max_log_std)]. BC-RNN and
    ACT policies (or any, with --residual True) stay frozen, chunk execution and hidden
    state included, under a per-step Gaussian residual whose last layer starts at zero. A
    fresh critic is first warmed up for CRITIC_WARMUP rollouts with the actor frozen (a
    random critic's advantages would otherwise undo the BC policy in the first updates),
    then both train, the actor at a small learning rate and clip (DPPO's recipe: actor 1e-5
    to 1e-4, critic 1e-3, clip 0.01 to 0.1). The policy is evaluated before any update: the
    curves and metrics.csv start there."""

    policy: Path = Path("runs/bc/best")
    """The BC checkpoint to start from (an MLP `bc` policy)."""
    task: str | None = None
    """Task id (default: the checkpoint's)."""
    steps: int = 500_000
    """Environment steps (the warm-up's included)."""
    out: Path = Path("runs/finetune")
    """Run folder: best/ and last/ (ordinary checkpoints), metrics.csv, tb/, plots/."""
    reward_type: Literal["sparse", "dense"] = "sparse"
    """sparse: 1 at success (the task's own measure), else 0; dense: the env's reward.
    (--reward DIR trains on a learned reward instead.)"""
    lr: float = 3e-5
    """The actor's learning rate."""
    critic_lr: float = 1e-3
    """The critic's learning rate."""
    critic_warmup: int = 5
    """Rollouts that train the critic alone before the actor moves."""
    clip: float = 0.05
    """The ratio's clip (small: the start is already good)."""
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
    residual: bool | None = None
    """Keep the BC policy frozen and train a per-step Gaussian residual on top. Unset: a
    residual for bc-rnn and act policies (their hidden state and chunk execution stay as
    trained); an MLP bc policy is fine-tuned itself (a GMM head as a Gaussian at its most
    likely component's mean: on Push it gained more than a residual on the whole mixture,
    benchmarks/RESULTS.md). True on a bc policy: leave it whole under the residual."""
    chunk: ChunkExecution = field(default_factory=ChunkExecution)
    """An act policy: how its chunks are executed under the residual (default: as its
    checkpoint says); the fine-tuned checkpoint keeps it."""
    normalize_obs: bool = field(default=False, metadata=NOT_AN_OPTION)
    hidden: list[int] = field(default_factory=lambda: [64, 64], metadata=NOT_AN_OPTION)
    activation: Literal["tanh", "relu"] = field(default="tanh", metadata=NOT_AN_OPTION)
    eval_every: int = 20_000
    """Environment steps between evaluations (0: only at the start and the end)."""
    eval_episodes: int = 50
    """Episodes per evaluation (deterministic actions, unseen seeds)."""

    def __post_init__(self):
        super().__post_init__()
        if self.critic_warmup < 0:
            raise ValueError(f"critic_warmup must be >= 0, got {self.critic_warmup}")
        if not (math.isfinite(self.critic_lr) and 0 < self.critic_lr <= 1):
            raise ValueError(f"critic_lr must be in (0, 1], got {self.critic_lr}")
        if not self.min_log_std <= self.log_std_init <= self.max_log_std:
            raise ValueError("need min_log_std <= log_std_init <= max_log_std")
        for name in ("kl_bc", "bc_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0.0 < self.bc_decay <= 1.0:
            raise ValueError(f"bc_decay must be in (0, 1], got {self.bc_decay}")
        if self.bc_batch_size < 1:
            raise ValueError(f"bc_batch_size must be >= 1, got {self.bc_batch_size}")
