"""On-device datasets: windows, chunks, splits, weights and stats against plain Python."""

import numpy as np
import pytest
import torch

from iltk.data import DatasetError, DemoWriter, make_env_args
from iltk.data.dataset import DemoDataset, NormStats


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.hdf5"
    lengths = [5, 3, 8]
    with DemoWriter(path, make_env_args("Synthetic-v0"), background=False) as w:
        for k, t in enumerate(lengths):
            steps = np.arange(t, dtype=np.float32)
            w.save(
                {
                    "obs": {"a": np.stack([steps, steps * 0 + k], 1), "b": steps[:, None] * 10},
                    "actions": np.stack([steps + 100 * k, -steps], 1),
                    "fields": {"intervention": steps % 2 == 1},
                },
                seed=k,
            )
    return path, lengths


def test_layout_and_steps(small_file):
    path, lengths = small_file
    ds = DemoDataset(path, obs_keys=["a", "b"], intervention_weight=3.0)
    assert len(ds) == sum(lengths) and ds.state_dim == 3 and ds.action_dim == 2
    batch = ds.batch_steps(torch.tensor([0, 6, 9]))
    # step 6 = episode 1, t=1; step 9 = episode 2, t=1
    torch.testing.assert_close(batch["obs"]["state"][1], torch.tensor([1.0, 1.0, 10.0]))
    torch.testing.assert_close(batch["actions"][2], torch.tensor([201.0, -1.0]))
    torch.testing.assert_close(batch["weights"], torch.tensor([1.0, 3.0, 3.0]))


def naive_window(lengths, idx, seq_len, frame_stack):
    starts = np.cumsum([0] + lengths[:-1])
    ep = int(np.searchsorted(np.cumsum(lengths), idx, side="right"))
    s, e = starts[ep], starts[ep] + lengths[ep]
    steps = [min(max(idx + j, s), e - 1) for j in range(-(frame_stack - 1), seq_len)]
    mask = [idx + j < e for j in range(seq_len)]
    return steps, mask


@pytest.mark.parametrize("seq_len,frame_stack", [(1, 1), (4, 1), (3, 2), (10, 3)])
def test_windows_match_naive(small_file, seq_len, frame_stack):
    path, lengths = small_file
    ds = DemoDataset(path, obs_keys=["a", "b"])
    idx = torch.arange(len(ds))
    batch = ds.batch_windows(idx, seq_len, frame_stack)
    assert batch["obs"]["state"].shape == (len(ds), frame_stack - 1 + seq_len, 3)
    for i in range(len(ds)):
        steps, mask = naive_window(lengths, i, seq_len, frame_stack)
        torch.testing.assert_close(batch["obs"]["state"][i], ds.state[steps])
        torch.testing.assert_close(batch["actions"][i], ds.actions[steps[frame_stack - 1 :]])
        assert batch["mask"][i].tolist() == mask


def test_chunks_pad_at_episode_end(small_file):
    path, lengths = small_file
    ds = DemoDataset(path, obs_keys=["a"])
    batch = ds.batch_chunks(torch.tensor([3, 5]), chunk=4)  # ep 0 t=3 (len 5); ep 1 t=0 (len 3)
    assert batch["pad"].tolist() == [[False, False, True, True], [False, False, False, True]]
    torch.testing.assert_close(batch["actions"][0, :, 0], torch.tensor([3.0, 4.0, 4.0, 4.0]))
    torch.testing.assert_close(
        batch["actions"][1, :, 0], torch.tensor([100.0, 101.0, 102.0, 102.0])
    )


def test_split_and_stats(small_file):
    path, lengths = small_file
    train = DemoDataset(path, split="train", valid_fraction=0.34, seed=1)
    valid = DemoDataset(path, split="valid", valid_fraction=0.34, seed=1)
    assert sorted(train.demos + valid.demos) == ["demo_0", "demo_1", "demo_2"]
    assert not set(train.demos) & set(valid.demos)
    s = train.stats.stats["actions"]
    np.testing.assert_allclose(s["mean"], train.actions.numpy().mean(0), rtol=1e-5)
    np.testing.assert_allclose(s["max"], train.actions.numpy().max(0))
    again = NormStats.from_flat(train.stats.flat())
    assert set(again.stats) == {"state", "actions"}
    for name, per in train.stats.stats.items():
        for stat, value in per.items():
            np.testing.assert_array_equal(again.stats[name][stat], value)


def test_sampling_is_seeded_and_uniform(small_file):
    path, _ = small_file
    ds = DemoDataset(path)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = ds.sample_indices(4000, g1), ds.sample_indices(4000, g2)
    assert torch.equal(a, b)
    counts = torch.bincount(a, minlength=len(ds)).float()
    assert counts.min() > 4000 / len(ds) * 0.6


def test_shape_mismatch_messages(small_file):
    path, _ = small_file
    ds = DemoDataset(path, obs_keys=["a", "b"])
    with pytest.raises(DatasetError, match="observations have 3 dims .* iltk/Reach-v0 expects 9"):
        ds.check_compatible(9, 3, "iltk/Reach-v0")
    with pytest.raises(DatasetError, match="actions have 2 dims but policy expects 4"):
        ds.check_compatible(None, 4, "policy")
    with pytest.raises(DatasetError, match="obs/zzz.*available observation keys"):
        DemoDataset(path, obs_keys=["zzz"])
