"""Training datasets that live as contiguous tensors on the training device.

A :class:`DemoDataset` loads the chosen observation keys and the actions of a set of demos
into one tensor each, on the device training runs on. Batches are gathered by index
arithmetic on that device, never by a Python ``__getitem__`` per sample:

- single steps (BC): ``batch_steps(idx)``;
- windows of length L with frame stacking (BC-RNN): ``batch_windows(idx, L)``, clamped at
  episode ends with a validity mask;
- action chunks of length K (ACT): ``batch_chunks(idx, K)`` with a padding mask at the end
  of each episode.

Low-dimensional observation keys are concatenated (in the order given) into one ``state``
vector; image keys (uint8 H x W x C) stay separate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from iltk.data.format import DatasetError
from iltk.data.reader import DemoFile, check_finite, check_magnitude


@dataclass
class NormStats:
    """Per-quantity mean, std, min and max (float32 numpy arrays).

    Keys are "state" (the concatenated low-dim observation) and "actions".
    """

    stats: dict[str, dict[str, np.ndarray]]

    @classmethod
    def compute(cls, arrays: dict[str, np.ndarray]) -> NormStats:
        out = {}
        for name, arr in arrays.items():
            arr = np.asarray(arr)
            out[name] = {
                "mean": arr.mean(0, dtype=np.float64).astype(np.float32),
                "std": arr.std(0, dtype=np.float64).astype(np.float32),
                "min": arr.min(0).astype(np.float32),
                "max": arr.max(0).astype(np.float32),
            }
        return cls(out)

    def flat(self) -> dict[str, np.ndarray]:
        """{"state.mean": ..., ...}: for safetensors files."""
        return {f"{k}.{s}": v for k, d in self.stats.items() for s, v in d.items()}

    @classmethod
    def from_flat(cls, flat: dict[str, np.ndarray]) -> NormStats:
        out: dict[str, dict[str, np.ndarray]] = {}
        for key, value in flat.items():
            name, stat = key.rsplit(".", 1)
            out.setdefault(name, {})[stat] = np.asarray(value, dtype=np.float32)
        return cls(out)


def split_demos(
    demos: list[str], masks: dict[str, list[str]], split: str, valid_fraction: float, seed: int
) -> list[str]:
    """The demos of a split: from the file's mask when it has one, else a seeded fraction."""
    if split == "all":
        return list(demos)
    if split in masks and valid_fraction <= 0:
        wanted = set(masks[split])
        return [
            d for d in demos if d in wanted
        ]  # names missing from the file: checked by the caller
    if valid_fraction <= 0:
        return list(demos) if split == "train" else []
    order = np.random.default_rng(seed).permutation(len(demos))
    n_valid = max(1, int(round(valid_fraction * len(demos))))
    chosen = sorted(order[:n_valid]) if split == "valid" else sorted(order[n_valid:])
    return [demos[i] for i in chosen]


class DemoDataset:
    """Demos of one file on one device.

    Args:
        path: the episode file.
        obs_keys: observation keys to load (default: every key of the first demo).
        device: torch device the tensors live on.
        split: "all", "train" or "valid" (from the file's masks, or ``valid_fraction``).
        valid_fraction: fraction of demos held out when the file has no mask to use.
        seed: seed of the train/valid split.
        intervention_weight: per-sample weight of steps flagged ``intervention`` (IWR-style
            weighting of HG-DAgger corrections); other steps weigh 1.
        uncorrected_weight: weight of the steps of ``hg-dagger`` episodes where the policy,
            not the supervisor, was in control (HG-DAgger aggregates only interventions: 0).
            Steps whose ``has_label`` is False (a person's DAgger session where they gave
            no input) weigh 0 whatever the settings.
        demos: an explicit list of demo names (overrides ``split``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        obs_keys: list[str] | None = None,
        device: str | torch.device = "cpu",
        split: str = "all",
        valid_fraction: float = 0.0,
        seed: int = 0,
        intervention_weight: float = 1.0,
        uncorrected_weight: float = 1.0,
        demos: list[str] | None = None,
    ):
        if split not in ("all", "train", "valid"):
            raise ValueError(f"split must be 'all', 'train' or 'valid', got {split!r}")
        self.path = Path(path)
        self.device = torch.device(device)
        # what training reads is validated as it loads (lengths, dtypes, NaN/inf); keys it
        # never reads are left to `iltk dataset info` (a full DemoFile validation)
        with DemoFile(self.path, validate="none") as f:
            self.env_args = f.env_args
            chosen = (
                demos
                if demos is not None
                else split_demos(f.demos, f.masks, split, valid_fraction, seed)
            )
            if demos is None and split in f.masks and valid_fraction <= 0:
                absent = [d for d in f.masks[split] if d not in f.demos]
                if absent:
                    shown = ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
                    raise DatasetError(
                        self.path,
                        f"mask/{split} names {len(absent)} demos the file does not hold "
                        f"({shown}); rewrite the masks with 'iltk dataset split'",
                    )
            missing = [d for d in chosen if d not in f.demos]
            if missing:
                raise DatasetError(self.path, f"has no demos {missing}")
            if not chosen:
                raise DatasetError(self.path, f"has no demos in split {split!r}")
            available = f.obs_keys(chosen[0])
            if not available:
                raise DatasetError(self.path, "has no observations", demo=chosen[0], key="obs")
            self.obs_keys = list(obs_keys) if obs_keys else available
            for key in self.obs_keys:
                if key not in available:
                    raise DatasetError(
                        self.path,
                        f"not found; available observation keys: {available}",
                        demo=chosen[0],
                        key=f"obs/{key}",
                    )
            per_key: dict[str, list[np.ndarray]] = {k: [] for k in self.obs_keys}
            actions, weights, lengths = [], [], []
            for demo in chosen:
                a = f.read(demo, "actions")
                if a.ndim != 2 or a.dtype.kind != "f":
                    raise DatasetError(
                        self.path,
                        f"must be a float (T, action_dim) array, is {a.dtype} {a.shape}",
                        demo=demo,
                        key="actions",
                    )
                if len(a) == 0:
                    raise DatasetError(
                        self.path,
                        "has no steps; drop empty episodes with 'iltk dataset filter "
                        "--min-length 1'",
                        demo=demo,
                        key="actions",
                    )
                check_finite(self.path, demo, "actions", a)
                check_magnitude(self.path, demo, "actions", a)
                a = a.astype(np.float32, copy=False)
                for key in self.obs_keys:
                    arr = f.read(demo, f"obs/{key}")
                    if arr.shape[:1] != a.shape[:1] or arr.dtype.kind not in "biuf":
                        raise DatasetError(
                            self.path,
                            f"has shape {arr.shape} and dtype {arr.dtype}; expected {len(a)} "
                            "numeric steps like actions",
                            demo=demo,
                            key=f"obs/{key}",
                        )
                    check_finite(self.path, demo, f"obs/{key}", arr)
                    check_magnitude(self.path, demo, f"obs/{key}", arr)
                    if per_key[key] and arr.shape[1:] != per_key[key][0].shape[1:]:
                        raise DatasetError(
                            self.path,
                            f"has per-step shape {arr.shape[1:]} but {chosen[0]} has "
                            f"{per_key[key][0].shape[1:]}: the demos were recorded with "
                            "different observations",
                            demo=demo,
                            key=f"obs/{key}",
                        )
                    per_key[key].append(arr)
                actions.append(a)
                g = f.group(demo)
                inter = g["intervention"][()] if "intervention" in g else np.zeros(len(a), bool)
                source = g.attrs.get("source", "")
                source = source.decode() if isinstance(source, bytes) else source
                base = uncorrected_weight if source == "hg-dagger" else 1.0
                w = np.where(inter, intervention_weight, base).astype(np.float32)
                if "has_label" in g:  # a person's DAgger session: no input, no label
                    w = w * g["has_label"][()].astype(np.float32)
                weights.append(w)
                lengths.append(len(a))
        self.demos = list(chosen)
        self.image_keys = [
            k for k in self.obs_keys if per_key[k][0].dtype == np.uint8 and per_key[k][0].ndim == 4
        ]
        self.lowdim_keys = [k for k in self.obs_keys if k not in self.image_keys]
        for demo, a in zip(chosen, actions):
            if a.shape[1] != actions[0].shape[1]:
                raise DatasetError(
                    self.path,
                    f"has {a.shape[1]} action dims but {chosen[0]} has {actions[0].shape[1]}",
                    demo=demo,
                    key="actions",
                )
        state_np = (
            np.concatenate(
                [np.concatenate(per_key[k]).reshape(sum(lengths), -1) for k in self.lowdim_keys],
                axis=1,
            ).astype(np.float32)
            if self.lowdim_keys
            else np.zeros((sum(lengths), 0), np.float32)
        )
        actions_np = np.concatenate(actions)
        self.stats = NormStats.compute({"state": state_np, "actions": actions_np})
        dev = self.device
        self.state = torch.from_numpy(state_np).to(dev)
        self.images = {
            k: torch.from_numpy(np.concatenate(per_key[k])).to(dev) for k in self.image_keys
        }
        self.actions = torch.from_numpy(actions_np).to(dev)
        self.weights = torch.from_numpy(np.concatenate(weights)).to(dev)
        lengths_t = torch.tensor(lengths, dtype=torch.long)
        ends = torch.cumsum(lengths_t, 0)
        self.ep_start = (ends - lengths_t).to(dev)
        self.ep_end = ends.to(dev)
        self.step_episode = torch.repeat_interleave(torch.arange(len(lengths)), lengths_t).to(dev)
        # sampling draws only from steps that carry weight
        self.pool = torch.nonzero(self.weights > 0).squeeze(1).to(dev)
        if len(self.pool) == 0:
            raise DatasetError(self.path, "no step carries training weight (all were filtered out)")

    # ------------------------------------------------------------- properties
    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def num_episodes(self) -> int:
        return len(self.demos)

    @property
    def state_dim(self) -> int:
        return int(self.state.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def image_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape[1:]) for k, v in self.images.items()}

    # --------------------------------------------------------------- sampling
    def sample_indices(self, batch_size: int, generator: torch.Generator | None = None):
        """Step indices drawn uniformly from the steps that carry weight (``pool``), on the
        dataset's device: zero-weight steps (HG-DAgger's uncorrected ones, unlabelled ones)
        never take a place in a batch."""
        k = torch.randint(0, len(self.pool), (batch_size,), device=self.device, generator=generator)
        return self.pool[k]

    def _obs_at(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        obs = {"state": self.state[idx]}
        for k, v in self.images.items():
            obs[k] = v[idx]
        return obs

    def batch_steps(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """obs (B, ...), actions (B, A), weights (B,)."""
        return {
            "obs": self._obs_at(idx),
            "actions": self.actions[idx],
            "weights": self.weights[idx],
        }

    def batch_windows(
        self, idx: torch.Tensor, seq_len: int, frame_stack: int = 1
    ) -> dict[str, torch.Tensor]:
        """Windows starting at ``idx``: obs (B, F-1+L, ...), actions (B, L, A), mask (B, L).

        Steps past an episode's end repeat its last step and have ``mask`` False; the
        ``frame_stack - 1`` steps before the window repeat the episode's first step.
        """
        ep = self.step_episode[idx]
        start, end = self.ep_start[ep], self.ep_end[ep]
        offsets = torch.arange(-(frame_stack - 1), seq_len, device=self.device)
        raw = idx[:, None] + offsets[None, :]
        steps = torch.minimum(torch.maximum(raw, start[:, None]), end[:, None] - 1)
        act_steps = steps[:, frame_stack - 1 :]
        mask = raw[:, frame_stack - 1 :] < end[:, None]
        return {
            "obs": self._obs_at(steps),
            "actions": self.actions[act_steps],
            "mask": mask,
            "weights": self.weights[act_steps] * mask,
        }

    def batch_chunks(self, idx: torch.Tensor, chunk: int) -> dict[str, torch.Tensor]:
        """obs at ``idx`` (B, ...), the next ``chunk`` actions (B, K, A) and ``pad`` (B, K).

        ``pad`` is True for the steps past the episode's end (their actions repeat the last).
        """
        ep = self.step_episode[idx]
        end = self.ep_end[ep]
        raw = idx[:, None] + torch.arange(chunk, device=self.device)[None, :]
        steps = torch.minimum(raw, end[:, None] - 1)
        pad = raw >= end[:, None]
        return {
            "obs": self._obs_at(idx),
            "actions": self.actions[steps],
            "pad": pad,
            "weights": self.weights[idx],
        }

    def batch_history_chunks(
        self, idx: torch.Tensor, n_obs: int, horizon: int
    ) -> dict[str, torch.Tensor]:
        """Diffusion Policy's samples at ``idx``: the ``n_obs`` observations up to it (B,
        n_obs, ...) and the ``horizon`` actions from ``idx - n_obs + 1`` (B, H, A), steps
        outside the episode repeating its first or last one (as Chi et al.'s sampler);
        ``pad`` (B, H) marks those past the end."""
        ep = self.step_episode[idx]
        start, end = self.ep_start[ep], self.ep_end[ep]
        obs_raw = idx[:, None] + torch.arange(-(n_obs - 1), 1, device=self.device)[None, :]
        obs_steps = torch.maximum(obs_raw, start[:, None])
        act_raw = idx[:, None] + torch.arange(-(n_obs - 1), horizon - n_obs + 1, device=self.device)
        act_steps = torch.minimum(torch.maximum(act_raw, start[:, None]), end[:, None] - 1)
        return {
            "obs": self._obs_at(obs_steps),
            "actions": self.actions[act_steps],
            "pad": act_raw >= end[:, None],
            "weights": self.weights[idx],
        }

    def check_action_bounds(self, low, high, what: str, slack: float = 0.1) -> None:
        """Raise when labels lie outside ``[low, high]`` by more than ``slack`` of the range:
        labels in other units (or corrupt ones) would train a policy that only saturates."""
        low = torch.as_tensor(np.asarray(low, np.float32), device=self.device)
        high = torch.as_tensor(np.asarray(high, np.float32), device=self.device)
        if low.numel() != self.action_dim or not bool(
            torch.isfinite(low).all() & torch.isfinite(high).all()
        ):
            return
        margin = slack * (high - low)
        excess = torch.maximum(low - margin - self.actions, self.actions - high - margin)
        if bool((excess > 0).any()):
            flat = int(torch.argmax(excess.max(1).values))
            ep = int(self.step_episode[flat])
            step = flat - int(self.ep_start[ep])
            raise DatasetError(
                self.path,
                f"labels lie outside the action space of {what} ([{low.min().item():g}, "
                f"{high.max().item():g}]), e.g. {self.actions[flat].tolist()} at step {step}; "
                "the labels are in other units or corrupt",
                demo=self.demos[ep],
                key="actions",
            )

    def check_compatible(self, obs_dim: int | None, action_dim: int | None, what: str) -> None:
        """Raise a clear error when the dataset's shapes do not match an env or a policy."""
        if obs_dim is not None and self.lowdim_keys and obs_dim != self.state_dim:
            raise DatasetError(
                self.path,
                f"observations have {self.state_dim} dims (keys {self.lowdim_keys}) but {what} "
                f"expects {obs_dim}",
            )
        if action_dim is not None and action_dim != self.action_dim:
            raise DatasetError(
                self.path, f"actions have {self.action_dim} dims but {what} expects {action_dim}"
            )
