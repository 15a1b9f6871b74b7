"""The policy contract: config dataclass + nn.Module + registry.

A policy is an ``nn.Module`` built from a dataclass config. ``save(dir)`` writes
``config.json``, ``model.safetensors`` (weights, normalization buffers included) and
``normalization.safetensors`` (the statistics it was trained with, for inspection);
``load_policy(dir, device)`` rebuilds it anywhere. Training calls the module,
``policy(batch) -> (loss, info)`` (``forward`` returns ``loss(batch)``);
acting goes through a :class:`~iltk.policies.runners.PolicyRunner`.

Policies know nothing of HDF5 or MuJoCo: they see dicts of tensors.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from iltk.files import write_bytes, write_dir_atomically
from iltk.policies.configs import (
    POLICY_REGISTRY,
    PolicyConfig,
    build_config,
    policy_entry,
)


def policy_class(name: str) -> type[Policy]:
    """The ``Policy`` subclass registered as ``name`` (its module imported on first use)."""
    entry = policy_entry(name)
    module, _, attr = entry.entry_point.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Policy)):
        raise TypeError(f"{entry.entry_point} (policy {name!r}) is not a Policy subclass")
    cls.name = name
    return cls


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
    ``predict_chunk(obs, *, prefix=None, prefix_mask=None, generator=None)`` (chunk: a
    chunked policy whose config has ``n_obs_steps`` > 1 gets each observation leaf with
    that many steps, oldest first; ``prefix`` fixes a chunk's first actions, for
    real-time chunking, where the policy can inpaint), all on raw-in, real-units-out
    tensors.
    """

    name: ClassVar[str] = ""  # set from the registry (iltk/policies/configs.py)
    kind: ClassVar[str] = "step"

    def __init__(self, config: PolicyConfig):
        super().__init__()
        self.config = config
        self.normalizer = Normalizer(config.state_dim, config.action_dim)

    def batch_spec(self) -> dict[str, Any]:
        """How the trainer should sample, in the words ``kind`` uses: {"kind": "step"},
        {"kind": "window", "seq_len": L}, {"kind": "chunk", "chunk": K} or
        {"kind": "history_chunk", "n_obs": N, "horizon": H}."""
        return {"kind": "step"}

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of a batch, and detached scalar tensors to log ("loss", ...).

        The logged values stay tensors on the training device: reading them (a
        device-to-host sync) is left to log time, not done every step.
        """
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called by the trainer after each optimizer step (``step``: steps taken so far):
        where a policy keeps more than its trained weights (an EMA), it moves them here."""

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss: trainers call the module (``policy(batch)``), not ``loss``
        directly, so that a ``DistributedDataParallel`` wrapper sees the forward pass."""
        return self.loss(batch)

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
    """A fresh ``name`` policy built from ``config``."""
    return policy_class(name)(config)


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
    if name is None and "reward" in payload:
        raise CheckpointError(
            f"{directory}: a learned reward, not a policy; train a policy on it with "
            f"`iltk ppo --reward {directory}`, or pass a policy checkpoint (e.g. the run's "
            "policy/ or last/)"
        )
    if name not in POLICY_REGISTRY:
        raise CheckpointError(
            f"{cfg_path}: unknown policy {name!r}; registered: {sorted(POLICY_REGISTRY)}"
        )
    shape = [k for k in ("state_dim", "action_dim") if k not in (payload["config"] or {})]
    if shape:
        raise CheckpointError(
            f"{cfg_path}: the {name} config lacks {', '.join(shape)}, the sizes the weights "
            "were built for; the file is damaged: use another checkpoint (best/ or last/ of "
            "the run) or train again"
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
    """auto (CUDA when present), cpu, cuda or cuda:N, mps; anything else is one line."""
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", str(device)):
        raise ValueError(f"--device {device}: unknown; use auto, cpu, cuda (or cuda:N) or mps")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device")
    return torch.device(device)
