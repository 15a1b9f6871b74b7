"""Policy contract (contract 2 of DESIGN.md): config dataclass + nn.Module + registry.

A policy is an ``nn.Module`` built from a dataclass config. ``save(dir)`` writes
``config.json``, ``model.safetensors`` (weights, normalization buffers included) and
``normalization.safetensors`` (the statistics it was trained with, for inspection);
``load_policy(dir, device)`` rebuilds it anywhere. Training calls ``policy.loss(batch)``;
acting goes through a :class:`~iltk.policies.runners.PolicyRunner`.

Policies know nothing of HDF5 or MuJoCo: they see dicts of tensors.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn
from tyro.conf import Suppress

from iltk.files import write_bytes, write_dir_atomically

POLICIES: dict[str, type[Policy]] = {}


def register_policy(name: str):
    """Class decorator: ``@register_policy("bc")`` makes the policy buildable by name."""

    def wrap(cls):
        if name in POLICIES:
            raise ValueError(f"policy {name!r} is registered twice")
        cls.name = name
        POLICIES[name] = cls
        return cls

    return wrap


@dataclass
class PolicyConfig:
    """Fields every policy has. Shapes and statistics are filled in from the dataset."""

    # Suppress: set from the data, not options of `iltk train`
    state_dim: Suppress[int] = 0
    """Size of the concatenated low-dim observation (set from the data)."""
    action_dim: Suppress[int] = 0
    """Size of the action (set from the data)."""
    lowdim_keys: Suppress[list[str]] = field(default_factory=lambda: ["state"])
    """Observation keys concatenated into the state vector, in order (set from the data)."""
    image_shapes: Suppress[dict[str, list[int]]] = field(default_factory=dict)
    """Image observation keys and their (H, W, C) shapes (set from the data)."""
    image_feature_dim: int = 64
    """Features per camera of the convolutional image encoder."""
    action_low: Suppress[list[float]] = field(default_factory=list)
    """Lower action bounds; actions are clipped to them when acting (empty: no clipping)."""
    action_high: Suppress[list[float]] = field(default_factory=list)
    """Upper action bounds."""

    def __post_init__(self):
        if self.state_dim < 0 or self.action_dim < 0:
            raise ValueError("state_dim and action_dim must be non-negative")


class Normalizer(nn.Module):
    """z-scores the state and the actions with statistics kept as buffers (saved with weights)."""

    def __init__(self, state_dim: int, action_dim: int, min_std: float = 1e-2):
        super().__init__()
        self.min_std = min_std
        self.register_buffer("state_mean", torch.zeros(state_dim))
        self.register_buffer("state_std", torch.ones(state_dim))
        self.register_buffer("action_mean", torch.zeros(action_dim))
        self.register_buffer("action_std", torch.ones(action_dim))

    def set_stats(self, stats: dict[str, dict[str, np.ndarray]]) -> None:
        def t(x):
            return torch.as_tensor(np.asarray(x), dtype=torch.float32)

        if "state" in stats and self.state_mean.numel():
            self.state_mean.copy_(t(stats["state"]["mean"]))
            self.state_std.copy_(t(stats["state"]["std"]).clamp_min(self.min_std))
        self.action_mean.copy_(t(stats["actions"]["mean"]))
        self.action_std.copy_(t(stats["actions"]["std"]).clamp_min(self.min_std))

    def state(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.state_mean) / self.state_std

    def actions(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.action_mean) / self.action_std

    def unactions(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.action_std + self.action_mean


class Policy(nn.Module):
    """Base class: holds the config and the normalizer, saves and loads.

    Subclasses set ``config_cls`` and ``kind`` ("step", "recurrent" or "chunk") and
    implement ``loss(batch)`` and the prediction method of their kind:
    ``predict(obs)`` (step), ``predict_step(obs, hidden)`` (recurrent) or
    ``predict_chunk(obs)`` (chunk), all on normalized-in, real-units-out tensors.
    """

    name: ClassVar[str] = ""
    config_cls: ClassVar[type[PolicyConfig]] = PolicyConfig
    kind: ClassVar[str] = "step"

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        self.normalizer = Normalizer(config.state_dim, config.action_dim)

    def batch_spec(self) -> dict[str, Any]:
        """How the trainer should sample, in the words ``kind`` uses: {"kind": "step"},
        {"kind": "window", "seq_len": L} or {"kind": "chunk", "chunk": K}."""
        return {"kind": "step"}

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of a batch, and detached scalar tensors to log ("loss", ...).

        The logged values stay tensors on the training device: reading them (a
        device-to-host sync) is left to log time, not done every step.
        """
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def save(
        self,
        directory: str | Path,
        extra: dict[str, Any] | None = None,
        extra_files: dict[str, bytes] | None = None,
    ) -> Path:
        """Write the checkpoint folder atomically (a kill leaves the old or the new one).

        Args:
            directory: the checkpoint folder (replaced as a whole).
            extra: JSON-able facts stored under ``config.json``'s "extra" (task, step, ...).
            extra_files: {file name: contents} for more files of the same checkpoint (the
                trainer's optimizer state), written into the same atomic folder.
        """
        payload = {
            "policy": self.name,
            "config": dataclasses.asdict(self.config),
            **({"extra": extra} if extra else {}),
        }
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        norm = {k: v.detach().cpu().contiguous() for k, v in self.normalizer.state_dict().items()}

        def build(tmp: Path) -> None:
            # serialized in memory, written with plain writes: a full disk is one OSError
            write_bytes(tmp / "config.json", json.dumps(payload, indent=2).encode())
            write_bytes(tmp / "model.safetensors", save_safetensors(state))
            write_bytes(tmp / "normalization.safetensors", save_safetensors(norm))
            for name, data in (extra_files or {}).items():
                write_bytes(tmp / name, data)

        return write_dir_atomically(directory, build)


def make_policy(name: str, config: PolicyConfig) -> Policy:
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; registered: {sorted(POLICIES)}")
    return POLICIES[name](config)


def build_config(name: str, values: dict[str, Any]) -> PolicyConfig:
    cls = POLICIES[name].config_cls
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {name} config fields: {sorted(unknown)}")
    return cls(**values)


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or damaged (the message says which)."""


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a checkpoint folder, with clear errors."""
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not directory.exists():
        raise CheckpointError(f"{directory}: no such checkpoint folder")
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{directory}: not a policy checkpoint (no config.json); pass a checkpoint folder "
            "such as runs/NAME/best or runs/NAME/last"
        )
    try:
        payload = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(
            f"{cfg_path}: damaged, not valid JSON ({err}); use another checkpoint "
            "(best/ or last/ of the run) or train again"
        ) from None
    if not isinstance(payload, dict) or "config" not in payload:
        raise CheckpointError(f"{cfg_path}: not an iltk policy config (no 'config' entry)")
    return payload


def load_checkpoint(
    directory: str | Path, device: str | torch.device = "cpu"
) -> tuple[Policy, dict[str, Any]]:
    """Rebuild a saved policy on ``device``; returns it with the checkpoint's "extra" facts
    (task, env_kwargs, step, ...)."""
    directory = Path(directory)
    payload = read_checkpoint_config(directory)
    cfg_path = directory / "config.json"
    name = payload.get("policy")
    if name not in POLICIES:
        raise CheckpointError(
            f"{cfg_path}: unknown policy {name!r}; registered: {sorted(POLICIES)}"
        )
    try:
        config = build_config(name, payload["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{cfg_path}: invalid {name} config ({err})") from None
    policy = make_policy(name, config)
    weights_path = directory / "model.safetensors"
    if not weights_path.is_file():
        raise CheckpointError(f"{directory}: no model.safetensors; the checkpoint is incomplete")
    try:
        weights = load_file(str(weights_path), device=str(torch.device(device)))
    except Exception as err:  # safetensors raises its own error type for damaged files
        raise CheckpointError(
            f"{weights_path}: damaged or truncated ({err}); use another checkpoint "
            "(best/ or last/ of the run) or train again"
        ) from None
    try:
        policy.load_state_dict(weights)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(
            f"{weights_path}: the weights do not fit the {name} config in config.json ({first})"
        ) from None
    policy.to(device)
    policy.eval()
    extra = payload.get("extra") or {}
    return policy, extra if isinstance(extra, dict) else {}


def load_policy(directory: str | Path, device: str | torch.device = "cpu") -> Policy:
    """Rebuild a saved policy on ``device`` (``directory`` holds config.json + model.safetensors)."""
    return load_checkpoint(directory, device)[0]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(device)
