"""Acting: runners that own a policy's per-episode state across vectorized envs.

``runner.reset(env_ids)`` starts new episodes in those envs (``None``: all);
``runner.act(obs)`` takes the env's batched observation (numpy array or dict) and returns
(N, A) numpy actions. The runner owns the RNN hidden state, the open-loop action queue and
the temporal-ensemble buffer, per env.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from iltk.policies.base import Policy


class TemporalEnsembler:
    """ACT's temporal ensembling for N envs.

    Each step a chunk of K predictions (for steps t..t+K-1) is added; the action for step t
    averages every stored prediction for t with weights exp(-m*i), where i = 0 is the
    OLDEST prediction (Zhao et al. 2023, m = 0.01). m > 0 favours older predictions,
    m < 0 newer ones.
    """

    def __init__(self, num_envs: int, chunk: int, action_dim: int, m: float):
        self.n, self.k, self.a, self.m = num_envs, chunk, action_dim, float(m)
        # hist[:, j] is the chunk predicted j steps ago (j = 0 newest)
        self.hist = np.zeros((num_envs, chunk, chunk, action_dim), dtype=np.float64)
        self.count = np.zeros(num_envs, dtype=np.int64)

    def reset(self, env_ids=None) -> None:
        ids = slice(None) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        self.hist[ids] = 0.0
        self.count[ids] = 0

    def update(self, chunks: np.ndarray) -> np.ndarray:
        """Add this step's (N, K, A) chunks; return the (N, A) ensembled actions."""
        self.hist = np.roll(self.hist, 1, axis=1)
        self.hist[:, 0] = chunks
        self.count = np.minimum(self.count + 1, self.k)
        out = np.empty((self.n, self.a))
        for e in range(self.n):
            valid = self.count[e]
            ages = np.arange(valid)  # j: predicted j steps ago, its element j is for now
            preds = self.hist[e, ages, ages]  # (valid, A), newest first
            i = valid - 1 - ages  # i = 0 for the oldest prediction
            w = np.exp(-self.m * i)
            out[e] = (w[:, None] * preds).sum(0) / w.sum()
        return out


def set_chunk_execution(
    policy: Policy,
    *,
    temporal_ensemble: bool | None = None,
    n_action_steps: int | None = None,
    ensemble_m: float | None = None,
) -> Policy:
    """Change how a chunked policy acts, in its config (so a checkpoint saved from it keeps
    the change): temporal ensembling, or ``n_action_steps`` actions of each chunk executed
    open-loop (1: a fresh chunk every step, its first action executed). A residual policy
    on a chunked base changes its base. ``None`` keeps a setting; with no setting given
    the policy is returned as it is, whatever its kind.

    Raises ValueError for a policy that predicts no chunks, or a setting its config
    refuses (n_action_steps beyond the chunk)."""
    changes = {
        k: v
        for k, v in dict(
            temporal_ensemble=temporal_ensemble,
            n_action_steps=n_action_steps,
            ensemble_m=ensemble_m,
        ).items()
        if v is not None
    }
    if not changes:
        return policy
    if n_action_steps is not None and temporal_ensemble is None:
        changes["temporal_ensemble"] = False  # an open-loop length means no ensembling
    chunked = policy.base if policy.kind == "residual" else policy
    if chunked.kind != "chunk":
        raise ValueError(
            f"{', '.join(sorted(changes))}: the policy ({type(policy).name}) predicts no "
            "action chunks; these settings are for chunked policies (act, diffusion)"
        )
    chunked.config = dataclasses.replace(chunked.config, **changes)  # validates again
    if chunked is not policy:  # what the residual's checkpoint saves of its base
        policy.config.base_config = dataclasses.asdict(chunked.config)
    return policy


def obs_to_tensors(obs: Any, policy: Policy, device: torch.device) -> dict[str, torch.Tensor]:
    """Env observation (array or dict) -> the policy's {"state", <image keys>} tensors."""
    cfg = policy.config
    if not isinstance(obs, dict):
        arr = np.asarray(obs)
        obs = {"pixels": arr} if arr.dtype == np.uint8 and arr.ndim == 4 else {"state": arr}
    out = {}
    if cfg.state_dim:
        missing = [k for k in cfg.lowdim_keys if k not in obs]
        if missing:
            raise KeyError(
                f"observation lacks keys {missing} the policy was trained on ({cfg.lowdim_keys})"
            )
        state = np.concatenate(
            [np.asarray(obs[k], np.float32).reshape(len(obs[k]), -1) for k in cfg.lowdim_keys], 1
        )
        if state.shape[1] != cfg.state_dim:
            raise ValueError(
                f"observation has {state.shape[1]} state dims but the policy was trained on {cfg.state_dim}"
            )
        out["state"] = torch.as_tensor(state, device=device)
    for k in cfg.image_shapes:
        out[k] = torch.as_tensor(np.asarray(obs[k]), device=device)
    return out


class PolicyRunner:
    """Runs a policy in N envs: ``reset(env_ids)`` and ``act(obs) -> (N, A)``.

    Args:
        policy: a trained policy.
        num_envs: number of envs acted for at once.
        temporal_ensemble / n_action_steps / ensemble_m: override the chunk policy's
            execution settings.
        seed: seeds the noise a generative chunk policy samples from.
    """

    def __init__(
        self,
        policy: Policy,
        num_envs: int = 1,
        *,
        temporal_ensemble: bool | None = None,
        n_action_steps: int | None = None,
        ensemble_m: float | None = None,
        seed: int = 0,
    ):
        self.policy = policy.eval()
        self.n = num_envs
        self.device = policy.device
        cfg = policy.config
        self.low = np.asarray(cfg.action_low, np.float32) if cfg.action_low else None
        self.high = np.asarray(cfg.action_high, np.float32) if cfg.action_high else None
        if policy.kind == "recurrent":
            self.hidden = policy.init_hidden(num_envs)
            self.reset_period = getattr(cfg, "reset_period", 0)
            self.steps = np.zeros(num_envs, np.int64)  # steps since the hidden state was reset
        if policy.kind == "residual":  # the frozen base acts through its own runner
            self.base_runner = PolicyRunner(
                policy.base,
                num_envs,
                temporal_ensemble=temporal_ensemble,
                n_action_steps=n_action_steps,
                ensemble_m=ensemble_m,
            )
        if policy.kind == "chunk":
            self.ensemble = (
                cfg.temporal_ensemble if temporal_ensemble is None else temporal_ensemble
            )
            self.n_action_steps = n_action_steps or cfg.n_action_steps
            m = cfg.ensemble_m if ensemble_m is None else ensemble_m
            self.ensembler = TemporalEnsembler(num_envs, cfg.chunk_size, cfg.action_dim, m)
            self.queue = np.zeros((num_envs, cfg.chunk_size, cfg.action_dim), np.float32)
            self.queue_pos = np.full(num_envs, self.n_action_steps)
            # real-time chunking: a new chunk starts with the next RTC actions the old planned
            self.rtc = 0 if self.ensemble else getattr(cfg, "rtc_steps", 0)
            if self.n_action_steps + self.rtc > cfg.chunk_size:
                raise ValueError(
                    f"n_action_steps {self.n_action_steps} + rtc_steps {self.rtc} exceed the "
                    f"{cfg.chunk_size} actions of a chunk"
                )
            self.n_obs = getattr(cfg, "n_obs_steps", 1)  # observations the policy sees
            self.history: dict[str, torch.Tensor] | None = None
            self.fresh = np.ones(num_envs, bool)  # envs whose history starts at this step
            self.generator = torch.Generator(self.device).manual_seed(seed)
            # the change of the executed action from one step to the next, max over its
            # dims: at a seam (the first generated action of a new chunk after the last
            # of the old one) and at every other step of an episode
            self.seam_changes: list[float] = []
            self.inner_changes: list[float] = []
            self.seam_at = np.zeros(num_envs, np.int64)  # the queue position of the seam
            self.last = np.full((num_envs, cfg.action_dim), np.nan, np.float32)

    def reset(self, env_ids=None) -> None:
        ids = np.arange(self.n) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        if self.policy.kind == "recurrent":
            self.hidden = self.policy.reset_hidden(
                self.hidden, torch.as_tensor(ids, device=self.device)
            )
            self.steps[ids] = 0
        if self.policy.kind == "residual":
            self.base_runner.reset(ids)
        if self.policy.kind == "chunk":
            self.ensembler.reset(ids)
            self.queue_pos[ids] = self.n_action_steps
            self.fresh[ids] = True
            self.last[ids] = np.nan  # no seam into an episode's first chunk

    @torch.no_grad()
    def act(self, obs) -> np.ndarray:
        t = obs_to_tensors(obs, self.policy, self.device)
        kind = self.policy.kind
        if kind == "step":
            actions = self.policy.predict(t).float().cpu().numpy()
        elif kind == "residual":
            base = torch.as_tensor(self.base_runner.act(obs), device=self.device)
            actions = self.policy.act_on(t["state"], base).float().cpu().numpy()
        elif kind == "recurrent":
            if self.reset_period:
                due = np.flatnonzero((self.steps > 0) & (self.steps % self.reset_period == 0))
                if due.size:
                    self.reset(due)
            a, self.hidden = self.policy.predict_step(t, self.hidden)
            self.steps += 1
            actions = a.float().cpu().numpy()
        else:
            t = self._with_history(t)
            if self.ensemble:
                chunks = self._predict(t, np.ones(self.n, bool))
                actions = self.ensembler.update(chunks)
            else:
                need = self.queue_pos >= self.n_action_steps
                if need.any():
                    self._refill(t, need)
                actions = self.queue[np.arange(self.n), self.queue_pos]
                self._track_changes(actions)
                self.queue_pos += 1
        actions = np.asarray(actions, dtype=np.float32)
        if self.low is not None:
            actions = np.clip(actions, self.low, self.high)
        return actions

    # ----------------------------------------------------------- chunked policies
    def _with_history(self, t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This step's observation appended to each env's last ``n_obs`` (an episode's
        first observation fills its history), as (N, n_obs, ...) leaves."""
        if self.n_obs == 1:
            return t
        if self.history is None:
            self.history = {k: v[:, None].repeat_interleave(self.n_obs, 1) for k, v in t.items()}
        else:
            self.history = {
                k: torch.cat([h[:, 1:], t[k][:, None]], 1) for k, h in self.history.items()
            }
        fresh = torch.as_tensor(self.fresh, device=self.device)
        if self.fresh.any():
            for k, h in self.history.items():
                h[fresh] = t[k][fresh][:, None]
            self.fresh[:] = False
        return self.history

    def _predict(self, t, rows: np.ndarray, prefix=None, prefix_mask=None) -> np.ndarray:
        """Chunks for the envs ``rows`` (a bool mask), predicted for those alone."""
        sub = {k: v[torch.as_tensor(rows, device=self.device)] for k, v in t.items()}
        kwargs = {"generator": self.generator}
        if prefix is not None:
            kwargs.update(
                prefix=torch.as_tensor(prefix, device=self.device),
                prefix_mask=torch.as_tensor(prefix_mask, device=self.device),
            )
        return self.policy.predict_chunk(sub, **kwargs).float().cpu().numpy()

    def _refill(self, t, need: np.ndarray) -> None:
        """New chunks for the envs that need one; with real-time chunking the next
        ``rtc`` actions the old chunk planned are the new one's fixed first ones (none
        at an episode's start)."""
        ids = np.flatnonzero(need)
        prefix = prefix_mask = None
        if self.rtc:
            prefix_mask = ~np.isnan(self.last[ids, 0])  # not an episode's first chunk
            if prefix_mask.any():
                prefix = np.stack(
                    [self.queue[e, p : p + self.rtc] for e, p in zip(ids, self.queue_pos[ids])]
                )
        chunks = self._predict(t, need, prefix, prefix_mask)
        self.queue[ids] = chunks
        self.queue_pos[ids] = 0
        self.seam_at[ids] = np.where(prefix_mask, self.rtc, 0) if prefix is not None else 0

    def _track_changes(self, actions: np.ndarray) -> None:
        started = ~np.isnan(self.last[:, 0])
        change = np.abs(actions - self.last).max(1)
        seam = self.queue_pos == self.seam_at
        self.seam_changes += change[started & seam].tolist()
        self.inner_changes += change[started & ~seam].tolist()
        self.last = np.array(actions, np.float32)
