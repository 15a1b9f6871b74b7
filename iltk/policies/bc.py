"""Behaviour cloning policies: ``bc`` (MLP) and ``bc-rnn`` (LSTM / GRU over windows).

Pomerleau 1989 (ALVINN) for BC; Mandlekar et al. 2021 ("What Matters in Learning from
Offline Human Demonstrations", robomimic) for BC-RNN and the GMM head, whose defaults
(2 layers, hidden 400, sequence length 10, 5 modes) are ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from iltk.policies.base import Policy, PolicyConfig, register_policy
from iltk.policies.nets import ObsEncoder, make_head, mlp

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
    scales, as robomimic). robomimic's 1e-4 lets the likelihood collapse onto deterministic
    scripted labels (an earlier PointMaze, 100 demos, 5000 steps: 2% success with the
    likeliest mode, 28% sampling the mode, against 95% at 0.05)."""
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


@register_policy("bc")
class BCPolicy(Policy):
    config_cls = BCConfig
    kind = "step"

    def __init__(self, config: BCConfig):
        super().__init__(config)
        self.encoder = ObsEncoder(config, self.normalizer)
        self.trunk = mlp(self.encoder.out_dim, config.hidden, None, dropout=config.dropout)
        inp = config.hidden[-1] if config.hidden else self.encoder.out_dim
        self.head = make_head(
            config.head,
            inp,
            config.action_dim,
            modes=config.gmm_modes,
            min_std=config.gmm_min_std,
            loss=config.loss,
        )

    def loss(self, batch):
        h = self.trunk(self.encoder(batch["obs"]))
        nll = self.head.nll(h, self.normalizer.actions(batch["actions"]))
        w = batch.get("weights")
        loss = (nll * w).sum() / w.sum().clamp_min(1e-8) if w is not None else nll.mean()
        return loss, {"loss": loss.detach()}

    @torch.no_grad()
    def predict(self, obs):
        h = self.trunk(self.encoder(obs))
        a = self.head.act(h, deterministic=not self.config.stochastic_eval)
        return self.normalizer.unactions(a)


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
    was trained on; 0: never within an episode). Carried over a whole PointMaze episode it
    drifted out of what training saw: 0% success against 100% with the reset (30 episodes)."""

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


@register_policy("bc-rnn")
class BCRNNPolicy(Policy):
    config_cls = BCRNNConfig
    kind = "recurrent"

    def __init__(self, config: BCRNNConfig):
        super().__init__(config)
        self.encoder = ObsEncoder(config, self.normalizer)
        rnn = nn.LSTM if config.rnn_type == "lstm" else nn.GRU
        self.rnn = rnn(self.encoder.out_dim, config.rnn_hidden, config.rnn_layers, batch_first=True)
        self.head = make_head(
            config.head,
            config.rnn_hidden,
            config.action_dim,
            modes=config.gmm_modes,
            min_std=config.gmm_min_std,
            loss=config.loss,
        )

    def batch_spec(self):
        return {"kind": "window", "seq_len": self.config.seq_len}

    def loss(self, batch):
        feats = self.encoder(batch["obs"])  # (B, L, F)
        out, _ = self.rnn(feats)
        nll = self.head.nll(out, self.normalizer.actions(batch["actions"]))  # (B, L)
        w = batch["weights"] * batch["mask"]
        loss = (nll * w).sum() / w.sum().clamp_min(1e-8)
        return loss, {"loss": loss.detach()}

    def init_hidden(self, n: int):
        shape = (self.config.rnn_layers, n, self.config.rnn_hidden)
        zeros = torch.zeros(shape, device=self.device)
        return (zeros, zeros.clone()) if self.config.rnn_type == "lstm" else zeros

    @staticmethod
    def reset_hidden(hidden, env_ids):
        if isinstance(hidden, tuple):
            for h in hidden:
                h[:, env_ids] = 0
        else:
            hidden[:, env_ids] = 0
        return hidden

    @torch.no_grad()
    def predict_step(self, obs, hidden):
        feats = self.encoder(obs).unsqueeze(1)  # (N, 1, F)
        out, hidden = self.rnn(feats, hidden)
        a = self.head.act(out[:, 0], deterministic=not self.config.stochastic_eval)
        return self.normalizer.unactions(a), hidden
