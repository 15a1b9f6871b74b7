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
