"""Policy configs and the policy registry, importable without torch.

Every policy is a dataclass config plus an ``nn.Module``; the configs live here (as
LeRobot keeps ``configuration_*.py`` apart from ``modeling_*.py``) so that the command
line can list and document every policy's options without importing torch. A policy
registers ONCE, by name, with :func:`register_policy`: its config class, where its module
lives (``"package.module:Class"``, imported on first use, as gymnasium's ``entry_point``)
and its default learning rate. `iltk train --algo`, the interactive rounds and the CLI's
options all follow the registry.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

FROM_DATA = {"from_data": True}
"""Field metadata of the config fields filled in from the dataset (shapes, keys, bounds):
they are saved with a checkpoint but are not options a user sets."""


@dataclass
class PolicyConfig:
    """Fields every policy has. Shapes and statistics are filled in from the dataset."""

    state_dim: int = field(default=0, metadata=FROM_DATA)
    """Size of the concatenated low-dim observation (set from the data)."""
    action_dim: int = field(default=0, metadata=FROM_DATA)
    """Size of the action (set from the data)."""
    lowdim_keys: list[str] = field(default_factory=lambda: ["state"], metadata=FROM_DATA)
    """Observation keys concatenated into the state vector, in order (set from the data)."""
    image_shapes: dict[str, list[int]] = field(default_factory=dict, metadata=FROM_DATA)
    """Image observation keys and their (H, W, C) shapes (set from the data)."""
    image_feature_dim: int = 64
    """Features per camera of the convolutional image encoder."""
    action_low: list[float] = field(default_factory=list, metadata=FROM_DATA)
    """Lower action bounds; actions are clipped to them when acting (empty: no clipping)."""
    action_high: list[float] = field(default_factory=list, metadata=FROM_DATA)
    """Upper action bounds."""

    def __post_init__(self):
        if self.state_dim < 0 or self.action_dim < 0:
            raise ValueError("state_dim and action_dim must be non-negative")


@dataclass(frozen=True)
class PolicyEntry:
    """One registered policy."""

    name: str
    config_cls: type[PolicyConfig]
    entry_point: str
    """``"package.module:Class"`` of the ``Policy`` subclass (imported on first use)."""
    default_lr: float
    summary: str
    supervised: bool = True
    """Trained by `iltk train` (else by its own command, e.g. `iltk ppo`)."""

    @property
    def option_name(self) -> str:
        """The attribute holding this policy's options in the train settings (bc_rnn)."""
        return self.name.replace("-", "_")


POLICY_REGISTRY: dict[str, PolicyEntry] = {}


def register_policy(
    name: str,
    *,
    config: type[PolicyConfig],
    entry_point: str,
    default_lr: float = 1e-3,
    summary: str = "",
    supervised: bool = True,
) -> PolicyEntry:
    """Make a policy buildable, trainable and loadable by ``name`` (the one registration).

    Policies registered after :mod:`iltk.algos.settings` was imported can be built, saved
    and loaded, but have no options group in `iltk train` (register them before it).
    """
    if name in POLICY_REGISTRY:
        raise ValueError(f"policy {name!r} is registered twice")
    if ":" not in entry_point:
        raise ValueError(f"entry_point must be 'module:Class', got {entry_point!r}")
    entry = PolicyEntry(
        name, config, entry_point, default_lr, summary or (config.__doc__ or ""), supervised
    )
    POLICY_REGISTRY[name] = entry
    return entry


def policy_entry(name: str) -> PolicyEntry:
    if name not in POLICY_REGISTRY:
        raise ValueError(f"unknown policy {name!r}; registered: {sorted(POLICY_REGISTRY)}")
    return POLICY_REGISTRY[name]


def build_config(name: str, values: dict[str, Any]) -> PolicyConfig:
    """The ``name`` policy's config from a dict (unknown fields are an error)."""
    cls = policy_entry(name).config_cls
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {name} config fields: {sorted(unknown)}")
    return cls(**values)


HEADS = ("deterministic", "gaussian", "gmm")


@dataclass
class HeadConfig(PolicyConfig):
    """The action-head settings BC and BC-RNN share."""

    head: str = "deterministic"
    """Action head: deterministic, gaussian or gmm."""
    loss: str = "mse"
    """Loss of the deterministic head: mse or l1."""
    gmm_modes: int = 5
    """Mixture components of the GMM head."""
    gmm_min_std: float = 0.05
    """Minimum std of the GMM components, in normalized action units (added to the softplus
    scales, as robomimic; its 1e-4 lets the likelihood collapse onto deterministic scripted
    labels)."""
    stochastic_eval: bool = False
    """Sample the GMM mode at evaluation, as robomimic's low-noise evaluation (default: the
    likeliest mode's mean, which flips between modes less)."""

    def __post_init__(self):
        super().__post_init__()
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.gmm_modes < 1:
            raise ValueError("gmm_modes must be >= 1")
        if not (math.isfinite(self.gmm_min_std) and self.gmm_min_std > 0):
            raise ValueError(f"gmm_min_std must be > 0, got {self.gmm_min_std}")
        if self.loss not in ("mse", "l1"):
            raise ValueError(f"loss must be mse or l1, got {self.loss!r}")


@dataclass
class BCConfig(HeadConfig):
    """MLP behaviour cloning."""

    hidden: list[int] = field(default_factory=lambda: [256, 256, 256])
    """Hidden layer sizes of the MLP."""
    dropout: float = 0.0
    """Dropout after each hidden layer."""

    def __post_init__(self):
        super().__post_init__()
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class BCRNNConfig(HeadConfig):
    """Recurrent behaviour cloning over windows of observations."""

    head: str = "gmm"
    """Action head: deterministic, gaussian or gmm (robomimic's BC-RNN uses gmm)."""
    rnn_type: str = "lstm"
    """lstm or gru."""
    rnn_hidden: int = 400
    """Hidden units per recurrent layer."""
    rnn_layers: int = 2
    """Recurrent layers."""
    seq_len: int = 10
    """Training window length."""
    hidden_reset_every: int | None = None
    """At evaluation the hidden state is carried from step to step, reset at every episode
    start and, as robomimic does, every this many steps (default: seq_len, the horizon it
    was trained on; 0: never within an episode: carried over a whole episode the state
    drifts out of what training saw)."""

    def __post_init__(self):
        super().__post_init__()
        if self.rnn_type not in ("lstm", "gru"):
            raise ValueError(f"rnn_type must be lstm or gru, got {self.rnn_type!r}")
        if self.seq_len < 1:
            raise ValueError("seq_len must be >= 1")
        if self.rnn_hidden < 1 or self.rnn_layers < 1:
            raise ValueError(
                f"rnn_hidden and rnn_layers must be >= 1, got {self.rnn_hidden}, {self.rnn_layers}"
            )
        if self.hidden_reset_every is not None and self.hidden_reset_every < 0:
            raise ValueError("hidden_reset_every must be >= 0")

    @property
    def reset_period(self) -> int:
        return self.seq_len if self.hidden_reset_every is None else self.hidden_reset_every


@dataclass
class ACTConfig(PolicyConfig):
    """Action chunking with transformers."""

    chunk_size: int = 20
    """K: actions predicted per inference."""
    n_action_steps: int = 1
    """Open-loop execution: actions of a chunk executed before predicting again (1: a
    fresh chunk every step, its first action executed; ignored when temporal ensembling
    is on)."""
    temporal_ensemble: bool = False
    """Predict every step and average all predictions for the current step (ACT's
    temporal ensembling; off by default: it lags behind a fresh chunk every step, which
    succeeded more often)."""
    ensemble_m: float = 0.01
    """Temporal-ensemble weights exp(-m*i), i=0 the OLDEST prediction (m<0 favours new)."""
    d_model: int = 256
    """Transformer width."""
    n_heads: int = 4
    """Attention heads."""
    enc_layers: int = 2
    """Transformer encoder layers over the observation tokens."""
    dec_layers: int = 1
    """Transformer decoder layers."""
    dim_feedforward: int = 1024
    """Feed-forward width."""
    dropout: float = 0.1
    """Dropout in the transformer."""
    use_vae: bool = True
    """Train with the CVAE latent (z = 0 at inference)."""
    latent_dim: int = 32
    """Size of the CVAE latent."""
    kl_weight: float = 10.0
    """Weight of the KL term."""

    def __post_init__(self):
        super().__post_init__()
        if self.chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps must be in [1, chunk_size = {self.chunk_size}], "
                f"got {self.n_action_steps}"
            )
        for name in ("d_model", "n_heads", "enc_layers", "dec_layers", "dim_feedforward"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.use_vae and self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.d_model % self.n_heads:
            raise ValueError("d_model must be divisible by n_heads")


OBJECTIVES = ("diffusion", "flow", "regression")
FLOW_INITS = ("noise", "zero", "mean")


@dataclass
class DiffusionConfig(PolicyConfig):
    """A generative action-chunk policy: a 1-D temporal U-Net with FiLM conditioning on the
    last N_OBS_STEPS observations, trained by DDPM denoising (Diffusion Policy, Chi et
    al., 2023) or flow matching on the same network."""

    objective: str = "diffusion"
    """diffusion: DDPM with NOISE_STEPS noise levels, DDIM sampling in SAMPLING_STEPS;
    flow: flow matching (linear path, velocity target), SAMPLING_STEPS Euler steps;
    regression: the same network fed no noise and trained with MSE on the actions (the
    baseline of the "generative or not" comparison)."""
    n_obs_steps: int = 2
    """Observation horizon: the policy sees the last N observations (repeated at the
    start of an episode)."""
    horizon: int = 16
    """Prediction horizon: actions predicted per inference, from N_OBS_STEPS - 1 steps in
    the past."""
    n_action_steps: int = 8
    """Actions of each prediction executed before predicting again (receding horizon);
    counted from the current step."""
    temporal_ensemble: bool = False
    """Predict every step and average the predictions for the current step (as ACT's)."""
    ensemble_m: float = 0.01
    """Temporal-ensemble weights exp(-m*i), i=0 the oldest prediction."""
    rtc_steps: int = 0
    """Real-time chunking: each new chunk starts with K actions fixed to the K the current
    chunk planned next (what a robot executes while the chunk is generated), the rest
    inpainted around them, so consecutive chunks join without a jump; needs K <=
    horizon - n_obs_steps + 1 - n_action_steps (0: off, plain receding horizon)."""
    prefix_training: int = 0
    """Train the network to continue a given prefix: each training chunk fixes its first
    actions (between none and K, at random) to their clean values, marked by an extra
    input channel and left out of the loss; real-time chunking then gives the network its
    fixed prefix clean instead of re-noising it at every step (0: off)."""
    down_dims: list[int] = field(default_factory=lambda: [32, 64, 128])
    """U-Net channel widths per level: the default is sized for a CPU (1.4M parameters);
    on a GPU, Chi et al.'s state policies use 256 512 1024, and LeRobot's default is
    the wider 512 1024 2048."""
    kernel_size: int = 5
    """Temporal convolution kernel."""
    n_groups: int = 8
    """GroupNorm groups."""
    step_embed_dim: int = 128
    """Size of the noise-level (or flow time) embedding."""
    noise_steps: int = 100
    """DDPM training noise levels (squared-cosine schedule)."""
    sampling_steps: int = 10
    """DDIM steps (diffusion) or Euler steps (flow) at inference."""
    action_scaling: str = "bounds"
    """How actions enter the network: bounds (the action space's [low, high] mapped to
    [-1, 1], as Chi et al.'s and LeRobot's min-max scaling; needs finite bounds) or zscore
    (the dataset's mean and std, as the other policies)."""
    clip_sample: float = 1.0
    """DDIM clips its clean-action estimates to +-this, in the scaled units (0: no clip;
    with zscore scaling, 3 is a fitting value)."""
    flow_init: str = "noise"
    """Flow sampling: noise (z ~ N(0, I)), zero (z = 0: no stochasticity at inference) or
    mean (the mean of FLOW_MEAN_SAMPLES samples)."""
    flow_mean_samples: int = 8
    """Samples averaged by flow_init mean."""
    ema_decay: float = 0.999
    """Most decay of the EMA of the weights that acts (warmed up as diffusers' EMAModel:
    decay = min(ema_decay, 1 - (1 + step)^-0.75)); 0: act with the trained weights."""

    def __post_init__(self):
        super().__post_init__()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.action_scaling not in ("bounds", "zscore"):
            raise ValueError(
                f"action_scaling must be bounds or zscore, got {self.action_scaling!r}"
            )
        if self.flow_init not in FLOW_INITS:
            raise ValueError(f"flow_init must be one of {FLOW_INITS}, got {self.flow_init!r}")
        for name in ("n_obs_steps", "horizon", "kernel_size", "n_groups", "step_embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_obs_steps > self.horizon:
            raise ValueError(
                f"n_obs_steps ({self.n_obs_steps}) must not exceed horizon ({self.horizon})"
            )
        if not 1 <= self.n_action_steps <= self.chunk_size:
            raise ValueError(
                f"n_action_steps must be in [1, {self.chunk_size}] (the horizon {self.horizon}"
                f" less the {self.n_obs_steps - 1} past steps it predicts), got "
                f"{self.n_action_steps}: the action horizon is longer than the prediction"
            )
        room = self.chunk_size - self.n_action_steps
        if not 0 <= self.rtc_steps <= room:
            raise ValueError(
                f"rtc_steps must be in [0, {room}] (the actions a chunk plans beyond its "
                f"{self.n_action_steps} executed ones), got {self.rtc_steps}"
            )
        if self.noise_steps < 1 or self.sampling_steps < 1:
            raise ValueError(
                f"noise_steps and sampling_steps must be >= 1, got {self.noise_steps} and "
                f"{self.sampling_steps}"
            )
        if self.objective == "diffusion" and self.sampling_steps > self.noise_steps:
            raise ValueError(
                f"sampling_steps ({self.sampling_steps}) cannot exceed noise_steps "
                f"({self.noise_steps})"
            )
        if not self.down_dims or any(d < 1 or d % self.n_groups for d in self.down_dims):
            raise ValueError(
                f"down_dims must be widths divisible by n_groups = {self.n_groups}, got "
                f"{self.down_dims}"
            )
        levels = len(self.down_dims) - 1
        if self.horizon % (2**levels):
            raise ValueError(
                f"horizon ({self.horizon}) must be divisible by 2^{levels} (the U-Net halves "
                f"it at each of its {levels} downsamplings)"
            )
        if not 0 <= self.prefix_training <= self.chunk_size:
            raise ValueError(
                f"prefix_training must be in [0, {self.chunk_size}], got {self.prefix_training}"
            )
        if self.flow_mean_samples < 1:
            raise ValueError(f"flow_mean_samples must be >= 1, got {self.flow_mean_samples}")
        if not (math.isfinite(self.ema_decay) and 0.0 <= self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not (math.isfinite(self.clip_sample) and self.clip_sample >= 0):
            raise ValueError(f"clip_sample must be >= 0, got {self.clip_sample}")

    @property
    def chunk_size(self) -> int:
        """Actions of a prediction from the current step on (what execution draws from)."""
        return self.horizon - self.n_obs_steps + 1


@dataclass
class ActorCriticConfig(PolicyConfig):
    """A diagonal-Gaussian actor and a value critic, two MLPs (PPO's policy)."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes of the actor and of the critic (SB3's MlpPolicy: 64, 64)."""
    activation: str = "tanh"
    """tanh or relu."""
    log_std_init: float = 0.0
    """Initial log standard deviation of the actions (state-independent, learned)."""
    obs_clip: float = 10.0
    """Normalized observations are clipped to +-obs_clip (as SB3's VecNormalize)."""

    def __post_init__(self):
        super().__post_init__()
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be >= 1, got {self.hidden}")
        if self.activation not in ("tanh", "relu"):
            raise ValueError(f"activation must be tanh or relu, got {self.activation!r}")
        if not (math.isfinite(self.log_std_init) and math.isfinite(self.obs_clip)):
            raise ValueError("log_std_init and obs_clip must be finite")
        if self.obs_clip <= 0:
            raise ValueError(f"obs_clip must be > 0, got {self.obs_clip}")
        if self.image_shapes:
            raise ValueError("actor-critic acts on state observations; it takes no images")


@dataclass
class OnBaseConfig(PolicyConfig):
    """A policy built on a saved one (fine-tuning): the base and a bounded exploration std."""

    base: str = "bc"
    """The registered policy it starts from."""
    base_config: dict = field(default_factory=dict)
    """That policy's config (as saved in its checkpoint)."""
    log_std_init: float = -2.0
    """Initial log std of the exploration noise (actions are in [-1, 1])."""
    min_log_std: float = -3.0
    """The std never goes below exp(min_log_std) (DPPO keeps a minimum exploration std)."""
    max_log_std: float = -0.5
    """...nor above exp(max_log_std)."""
    obs_clip: float = 10.0
    """Normalized inputs are clipped to +-obs_clip (where PPO normalizes them)."""

    def __post_init__(self):
        super().__post_init__()
        if not self.min_log_std <= self.log_std_init <= self.max_log_std:
            raise ValueError(
                f"need min_log_std <= log_std_init <= max_log_std, got {self.min_log_std}, "
                f"{self.log_std_init}, {self.max_log_std}"
            )
        if any(h < 1 for h in self.hidden_sizes()):
            raise ValueError(f"hidden layer sizes must be >= 1, got {self.hidden_sizes()}")

    def hidden_sizes(self) -> list[int]:
        return []


@dataclass
class FinetuneConfig(OnBaseConfig):
    """A behaviour-cloned MLP as PPO's actor: its action is the Gaussian's mean, with a
    learnable, bounded, state-independent std, and a value critic beside it (PPO's running
    normalization is off for it: the base normalizes its input)."""

    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer sizes of the critic (tanh), on the base's normalized state."""

    def hidden_sizes(self) -> list[int]:
        return self.critic_hidden


@dataclass
class ResidualConfig(OnBaseConfig):
    """A frozen policy of any kind plus a per-step Gaussian residual trained with PPO
    (ResiP, Ankile et al.): action = base action + residual(state, base action)."""

    base: str = "act"
    """The registered policy underneath (frozen)."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden layer sizes of the residual actor and of the critic (tanh)."""
    log_std_init: float = -2.5
    """Initial log std of the residual's exploration noise."""
    min_log_std: float = -4.0
    """Lower bound of the log std."""
    max_log_std: float = -1.0
    """Upper bound of the log std."""

    def hidden_sizes(self) -> list[int]:
        return self.hidden


register_policy(
    "bc",
    config=BCConfig,
    entry_point="iltk.policies.bc:BCPolicy",
    default_lr=1e-3,
    summary="MLP behaviour cloning (deterministic, Gaussian or GMM head)",
)
register_policy(
    "bc-rnn",
    config=BCRNNConfig,
    entry_point="iltk.policies.bc:BCRNNPolicy",
    default_lr=1e-3,
    summary="LSTM/GRU behaviour cloning over windows",
)
register_policy(
    "act",
    config=ACTConfig,
    entry_point="iltk.policies.act:ACTPolicy",
    default_lr=3e-4,
    summary="action-chunking transformer (CVAE; a fresh chunk every step, or temporal ensembling)",
)
register_policy(
    "diffusion",
    config=DiffusionConfig,
    entry_point="iltk.policies.diffusion:DiffusionPolicy",
    default_lr=1e-4,
    summary="Diffusion Policy / flow matching: a conditional 1-D U-Net over action chunks",
)
register_policy(
    "actor-critic",
    config=ActorCriticConfig,
    entry_point="iltk.policies.actor_critic:ActorCritic",
    default_lr=3e-4,
    summary="Gaussian actor + value critic with running observation normalization (PPO)",
    supervised=False,
)
register_policy(
    "finetune",
    config=FinetuneConfig,
    entry_point="iltk.policies.tuned:FinetunePolicy",
    default_lr=3e-5,
    summary="a BC policy fine-tuned with PPO (its mean, a bounded learned std, a critic)",
    supervised=False,
)
register_policy(
    "residual",
    config=ResidualConfig,
    entry_point="iltk.policies.tuned:ResidualPolicy",
    default_lr=3e-4,
    summary="a frozen policy (any kind) plus a per-step Gaussian residual trained with PPO",
    supervised=False,
)
