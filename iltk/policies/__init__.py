"""Policies (contract 2): registered by name, saved as config.json + model.safetensors.

The registry and the configs (``iltk.policies.configs``) import without torch; the torch
parts (``Policy``, ``load_policy``, runners, ...) are imported on first use, so that
``iltk --help`` and the config modules stay light."""

import importlib

from iltk.policies.configs import (
    POLICY_REGISTRY,
    PolicyConfig,
    build_config,
    policy_entry,
    register_policy,
)

_LAZY = {
    "CheckpointError": "iltk.policies.base",
    "Policy": "iltk.policies.base",
    "load_checkpoint": "iltk.policies.base",
    "load_policy": "iltk.policies.base",
    "make_policy": "iltk.policies.base",
    "policy_class": "iltk.policies.base",
    "resolve_device": "iltk.policies.base",
    "PolicyRunner": "iltk.policies.runners",
    "TemporalEnsembler": "iltk.policies.runners",
    "set_chunk_execution": "iltk.policies.runners",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'iltk.policies' has no attribute {name!r}")


__all__ = [
    "POLICY_REGISTRY",
    "PolicyConfig",
    "build_config",
    "policy_entry",
    "register_policy",
    *_LAZY,
]
