"""Learned rewards: r(s) or r(s, a) as a saved network that `iltk ppo --reward DIR` trains on.

A reward checkpoint is a folder like a policy's: ``config.json`` (``{"reward": "mlp",
"config": {...}}``) and ``model.safetensors`` (weights and the observation statistics it
was trained with), written atomically. Deep MaxEnt IRL writes one (``DIR/reward``); any
``RewardNet`` saved with :meth:`RewardNet.save` works the same way.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """Size of the action (0, or ``state_only``: r(s))."""
    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer sizes (empty: linear)."""
    state_only: bool = True
    """r(s) instead of r(s, a)."""

    def __post_init__(self):
        if self.obs_dim < 1 or self.action_dim < 0 or any(h < 1 for h in self.hidden):
            raise ValueError("need obs_dim >= 1, action_dim >= 0 and hidden sizes >= 1")
        if not self.state_only and self.action_dim < 1:
            raise ValueError("a state-action reward needs action_dim >= 1")


class RewardNet(nn.Module):
    """An MLP reward over the normalized observation (and the action)."""

    def __init__(self, config: RewardConfig):
        super().__init__()
        self.config = config
        inp = config.obs_dim + (0 if config.state_only else config.action_dim)
        layers: list[nn.Module] = []
        for h in config.hidden:
            layers += [nn.Linear(inp, h), nn.Tanh()]
            inp = h
        layers.append(nn.Linear(inp, 1))
        self.net = nn.Sequential(*layers)
        self.register_buffer("obs_mean", torch.zeros(config.obs_dim))
        self.register_buffer("obs_std", torch.ones(config.obs_dim))

    def set_obs_stats(self, mean, std) -> None:
        self.obs_mean.copy_(torch.as_tensor(np.asarray(mean), dtype=torch.float32))
        self.obs_std.copy_(torch.as_tensor(np.asarray(std), dtype=torch.float32).clamp_min(1e-6))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """Rewards (B,) of observations (B, obs_dim) (and actions (B, action_dim))."""
        x = (obs - self.obs_mean) / self.obs_std
        if not self.config.state_only:
            if actions is None:
                raise ValueError("this reward is r(s, a): pass the actions too")
            x = torch.cat([x, actions], -1)
        return self.net(x).squeeze(-1)

    @torch.no_grad()
    def rewards(self, obs: np.ndarray, actions: np.ndarray | None = None) -> np.ndarray:
        """numpy in, numpy out (what a training loop feeding from envs wants)."""
        device = self.obs_mean.device
        o = torch.as_tensor(np.asarray(obs, np.float32), device=device)
        a = (
            None
            if actions is None
            else torch.as_tensor(np.asarray(actions, np.float32), device=device)
        )
        return self(o, a).double().cpu().numpy()

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
        net = RewardNet(RewardConfig(**payload["config"]))
        net.load_state_dict(load_file(str(directory / "model.safetensors")))
    except RewardError:
        raise
    except Exception as err:  # JSON, safetensors and shape errors: one line each
        raise RewardError(f"{directory}: damaged reward checkpoint ({err})") from None
    return net.to(device).eval()
