"""The peers iltk's benchmarks measure against: the libraries users would pick instead.

robomimic 0.3.0 is installed by the Makefile (``--no-deps``: its torchvision pin would pull
a CUDA torch; its dataset module needs only termcolor beyond iltk's dependencies).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch


def robomimic_loader(
    path: Path, obs_keys: list[str], length: int, batch: int, workers: int, drop_last=False
):
    """robomimic 0.3.0's own SequenceDataset in its fastest mode (``hdf5_cache_mode="all"``:
    every demo read into memory up front) behind a shuffling DataLoader, as robomimic
    trains; sequences of ``length`` steps padded at episode ends, as iltk's are."""
    import robomimic.utils.dataset as rm_dataset
    import robomimic.utils.obs_utils as obs_utils

    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": list(obs_keys)}})
    t0 = time.perf_counter()
    ds = rm_dataset.SequenceDataset(
        str(path),
        obs_keys=list(obs_keys),
        dataset_keys=["actions"],
        seq_length=length,
        pad_seq_length=True,
        hdf5_cache_mode="all",
        hdf5_use_swmr=False,
        load_next_obs=False,  # the file has none, and windows do not need them
    )
    load_s = time.perf_counter() - t0
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=drop_last,
    )
    return loader, load_s


def robomimic_version() -> str:
    import robomimic

    return robomimic.__version__
