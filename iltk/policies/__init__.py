"""Policies (contract 2): registered by name, saved as config.json + model.safetensors."""

from iltk.policies import act as _act  # noqa: F401  (registers "act")
from iltk.policies import bc as _bc  # noqa: F401  (registers "bc", "bc-rnn")
from iltk.policies.base import (
    POLICIES,
    CheckpointError,
    Policy,
    PolicyConfig,
    build_config,
    load_checkpoint,
    load_policy,
    make_policy,
    register_policy,
    resolve_device,
)
from iltk.policies.runners import PolicyRunner, TemporalEnsembler

__all__ = [
    "POLICIES",
    "CheckpointError",
    "Policy",
    "PolicyConfig",
    "PolicyRunner",
    "TemporalEnsembler",
    "build_config",
    "load_checkpoint",
    "load_policy",
    "make_policy",
    "register_policy",
    "resolve_device",
]
