"""The per-sample loading baseline the benchmarks compare against.

A ``torch.utils.data.Dataset`` indexing (demo, t) pairs and reading one sample from the
HDF5 file in ``__getitem__`` (a step, a window or a chunk, padded at the episode's end),
the way robomimic's SequenceDataset and LeRobot's datasets load.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch


class PerSampleHDF5(torch.utils.data.Dataset):
    def __init__(self, path: Path, kind: str, length: int = 1):
        if kind not in ("steps", "windows", "chunks"):
            raise ValueError(f"kind must be steps, windows or chunks, got {kind!r}")
        self.path, self.kind, self.length = path, kind, length
        self.h5 = None
        with h5py.File(path, "r") as f:
            self.lengths = {n: int(f[f"data/{n}"].attrs["num_samples"]) for n in f["data"]}
        self.index = [(n, t) for n, T in self.lengths.items() for t in range(T)]

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        if self.h5 is None:  # opened lazily, once per DataLoader worker
            self.h5 = h5py.File(self.path, "r")
        demo, t = self.index[i]
        g = self.h5[f"data/{demo}"]
        if self.kind == "steps":
            return {
                "obs": {"state": torch.from_numpy(g["obs/state"][t])},
                "actions": torch.from_numpy(g["actions"][t]),
                "weights": torch.tensor(1.0),
            }
        stop = min(t + self.length, self.lengths[demo])
        valid = stop - t
        act = g["actions"][t:stop]
        if valid < self.length:
            act = np.concatenate([act, np.repeat(act[-1:], self.length - valid, 0)])
        mask = torch.arange(self.length) < valid
        if self.kind == "windows":
            obs = g["obs/state"][t:stop]
            if valid < self.length:
                obs = np.concatenate([obs, np.repeat(obs[-1:], self.length - valid, 0)])
            return {
                "obs": {"state": torch.from_numpy(obs)},
                "actions": torch.from_numpy(act),
                "mask": mask,
                "weights": mask.float(),
            }
        return {
            "obs": {"state": torch.from_numpy(g["obs/state"][t])},
            "actions": torch.from_numpy(act),
            "pad": ~mask,
            "weights": torch.tensor(1.0),
        }
