"""Learned rewards as a saved network that `iltk ppo --reward DIR` trains on.

Four reward classes (``RewardConfig.kind``), each an MLP g over the normalized inputs:

- ``s``: r(s) = g(s). Depends on the state alone: it transfers to new dynamics, but a
  reward of states cannot say which way a state was left;
- ``sa``: r(s, a) = g(s, a), with the executed action;
- ``ss``: r(s, s') = g(s, s'), with the state the step led to;
- ``shaped``: AIRL's f(s, s') = g(s) + gamma h(s') - h(s). The potential term h shapes
  without changing which policies are optimal (Ng et al. 1999), so on deterministic
  dynamics the game can put what depends on the dynamics in h and the reward itself in g
  (Fu et al. 2018): g is the disentangled reward, ``rewards(..., part="g")``, and the one a
  fresh learner trains on from a saved checkpoint (``iltk ppo --reward``).

A reward checkpoint is a folder like a policy's: ``config.json`` (``{"reward": "mlp",
"config": {...}}``) and ``model.safetensors`` (weights and the observation statistics it
was trained with), written atomically. Deep MaxEnt IRL writes one (``DIR/reward``); any
``RewardNet`` saved with :meth:`RewardNet.save` works the same way. Checkpoints written
before the reward classes (``state_only`` in their config) load as ``s`` or ``sa``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from iltk.files import write_bytes, write_dir_atomically


@dataclass
class RewardConfig:
    """The shape of a reward network."""

    obs_dim: int
    """Size of the (flattened) observation."""
    action_dim: int = 0
    """Size of the action (used by the ``sa`` class)."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes (empty: linear)."""
    kind: Literal["s", "sa", "ss", "shaped"] = "s"
    """The reward class: r(s), r(s, a), r(s, s') or g(s) + gamma h(s') - h(s)."""
    gamma: float = 0.99
    """The shaping term's discount (``shaped``: the policy player's discount)."""
    inputs: list[int] | None = None
    """The observation values the reward reads (indices; None: all), e.g. only the
    goal-relative ones, so that a reward learned on a few layouts cannot tell them apart
    by where their goals are."""

    def __post_init__(self):
        if self.obs_dim < 1 or self.action_dim < 0 or any(h < 1 for h in self.hidden):
            raise ValueError("need obs_dim >= 1, action_dim >= 0 and hidden sizes >= 1")
        if self.inputs is not None:
            self.inputs = [int(i) for i in self.inputs]
            bad = [i for i in self.inputs if not 0 <= i < self.obs_dim]
            if not self.inputs or bad or len(set(self.inputs)) != len(self.inputs):
                raise ValueError(
                    f"reward inputs must be distinct indices in 0..{self.obs_dim - 1} of the "
                    f"observation, got {self.inputs}"
                )
        if self.kind not in REWARD_KINDS:
            raise ValueError(
                f"reward kind must be one of {', '.join(REWARD_KINDS)}, got {self.kind!r}"
            )
        if self.kind == "sa" and self.action_dim < 1:
            raise ValueError("a state-action reward needs action_dim >= 1")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")

    @property
    def uses_action(self) -> bool:
        return self.kind == "sa"

    @property
    def uses_next(self) -> bool:
        return self.kind in ("ss", "shaped")


REWARD_KINDS = ("s", "sa", "ss", "shaped")


def _mlp(inp: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), nn.Tanh()]
        inp = h
    layers.append(nn.Linear(inp, 1))
    return nn.Sequential(*layers)


class RewardNet(nn.Module):
    """An MLP reward over the normalized observation (and the action, or the next
    observation): ``net`` is g; ``shaped`` adds the potential ``h``."""

    def __init__(self, config: RewardConfig):
        super().__init__()
        self.config = config
        d = config.obs_dim if config.inputs is None else len(config.inputs)
        inp = {"s": d, "sa": d + config.action_dim, "ss": 2 * d, "shaped": d}[config.kind]
        self.net = _mlp(inp, list(config.hidden))
        self.h = _mlp(d, list(config.hidden)) if config.kind == "shaped" else None
        self.register_buffer("obs_mean", torch.zeros(config.obs_dim))
        self.register_buffer("obs_std", torch.ones(config.obs_dim))
        self._inputs = None if config.inputs is None else torch.tensor(config.inputs)

    def set_obs_stats(self, mean, std) -> None:
        self.obs_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32).clamp_min(1e-6))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        """The reward's inputs of full observations: normalized, then its ``inputs`` taken."""
        x = (obs - self.obs_mean) / self.obs_std
        if self._inputs is not None:
            x = x.index_select(-1, self._inputs.to(x.device))
        return x

    def forward(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor | None = None,
        next_obs: torch.Tensor | None = None,
        part: Literal["full", "g"] = "full",
    ) -> torch.Tensor:
        """Rewards (B,) of observations (B, obs_dim), with the actions (B, action_dim) for
        ``sa`` and the next observations (B, obs_dim) for ``ss`` and ``shaped``.
        ``part="g"``: a shaped reward's g(s) alone (the other classes are all g)."""
        kind = self.config.kind
        x = self.normalize(obs)
        if kind == "sa":
            if actions is None:
                raise ValueError("this reward is r(s, a): pass the actions too")
            return self.net(torch.cat([x, actions], -1)).squeeze(-1)
        if kind == "s" or (kind == "shaped" and part == "g"):
            return self.net(x).squeeze(-1)
        if next_obs is None:
            raise ValueError(f"this reward ({kind}) depends on the next state: pass it too")
        x2 = self.normalize(next_obs)
        if kind == "ss":
            return self.net(torch.cat([x, x2], -1)).squeeze(-1)
        g = self.net(x).squeeze(-1)
        return g + self.config.gamma * self.h(x2).squeeze(-1) - self.h(x).squeeze(-1)

    def last_layers(self) -> list[nn.Linear]:
        """The output layers: their weights are the Lagrange multipliers of the features
        the hidden layers compute (what the quadratic penalty of the game acts on)."""
        return [m[-1] for m in (self.net, self.h) if m is not None]

    @torch.no_grad()
    def rewards(
        self,
        obs: np.ndarray,
        actions: np.ndarray | None = None,
        next_obs: np.ndarray | None = None,
        part: Literal["full", "g"] = "full",
    ) -> np.ndarray:
        """numpy in, numpy out (what a training loop feeding from envs wants)."""
        device = self.obs_mean.device

        def t(x):
            return None if x is None else torch.as_tensor(np.asarray(x, np.float32), device=device)

        return self(t(obs), t(actions), t(next_obs), part).double().cpu().numpy()

    def save(self, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the reward checkpoint atomically."""
        payload = {
            "reward": "mlp",
            "config": dataclasses.asdict(self.config),
            **({"extra": extra} if extra else {}),
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

        def build(tmp: Path) -> None:
            write_bytes(tmp / "config.json", json.dumps(payload, indent=2).encode())
            write_bytes(tmp / "model.safetensors", save_safetensors(state))

        return write_dir_atomically(directory, build)


class RewardError(ValueError):
    """A reward folder that is missing, damaged or not a reward (the message says which)."""


def load_reward(directory: str | Path, device: str | torch.device = "cpu") -> RewardNet:
    """Rebuild a saved reward network on ``device``."""
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise RewardError(
            f"{directory}: not a reward checkpoint (no config.json); pass the reward/ folder "
            "a reward was saved to (e.g. by `iltk irl`)"
        )
    try:
        payload = json.loads(cfg_path.read_text())
        if payload.get("reward") != "mlp":
            raise RewardError(f"{cfg_path}: not a reward config (a policy checkpoint?)")
        config = dict(payload["config"])
        if "state_only" in config:  # a checkpoint from before the reward classes
            config["kind"] = "s" if config.pop("state_only") else "sa"
        net = RewardNet(RewardConfig(**config))
        net.load_state_dict(load_file(str(directory / "model.safetensors")))
    except RewardError:
        raise
    except Exception as err:  # JSON, safetensors and shape errors: one line each
        raise RewardError(f"{directory}: damaged reward checkpoint ({err})") from None
    return net.to(device).eval()
