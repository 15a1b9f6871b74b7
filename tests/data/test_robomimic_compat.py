"""iltk files load in robomimic's SequenceDataset; robomimic-layout files load and train in iltk."""

import json

import h5py
import numpy as np
import torch

from iltk.collect import collect_demos
from iltk.data import DemoFile
from iltk.data.dataset import DemoDataset
from iltk.data.tools import split_file


def test_iltk_file_loads_in_robomimic(tmp_path):
    import robomimic.utils.dataset as rm_dataset
    import robomimic.utils.obs_utils as obs_utils

    path = tmp_path / "reach.hdf5"
    collect_demos("iltk/Reach-v0", path, 6, progress=False)
    split_file(path, 0.34)
    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["state"]}})
    ds = rm_dataset.SequenceDataset(
        str(path),
        obs_keys=["state"],
        dataset_keys=["actions", "rewards", "dones"],
        seq_length=10,
        hdf5_cache_mode="all",
        filter_by_attribute="train",
    )
    with DemoFile(path) as f:
        train = f.masks["train"]
        assert len(ds) == sum(f.num_samples(d) for d in train)
        first = f.episode(train[0])
    item = ds[0]
    assert item["obs"]["state"].shape == (10, 9) and item["actions"].shape == (10, 3)
    np.testing.assert_allclose(item["actions"][0], first["actions"][0])


def test_iltk_index_file_loads_in_robomimic(tmp_path):
    """A recording still in progress (index + shards) is readable by robomimic too."""
    import robomimic.utils.dataset as rm_dataset
    import robomimic.utils.obs_utils as obs_utils

    from iltk.controllers import ExpertController
    from iltk.data import DemoWriter, make_env_args
    from iltk.envs import make_vector_env
    from iltk.rollout import run_episodes

    path = tmp_path / "live.hdf5"
    writer = DemoWriter(path, make_env_args("iltk/Reach-v0"), background=False)
    envs = make_vector_env("iltk/Reach-v0", 1)
    run_episodes(envs, ExpertController(), 3, on_episode=writer.save)
    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": ["state"]}})
    ds = rm_dataset.SequenceDataset(str(path), obs_keys=["state"], dataset_keys=["actions"])
    with DemoFile(path) as f:
        assert f.external_links() and len(ds) == sum(f.num_samples(d) for d in f.demos)
    writer.close()


def write_robomimic_layout(path, n_demos=4, t=30, seed=0):
    """A low-dim file as robomimic documents it: demo_1.., env_args with type, no iltk attrs,
    no masks, several obs keys."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        data.attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1, "env_kwargs": {}})
        total = 0
        for i in range(1, n_demos + 1):
            g = data.create_group(f"demo_{i}")
            eef = rng.normal(size=(t, 3))
            obj = rng.normal(size=(t, 10))
            g.create_dataset("obs/robot0_eef_pos", data=eef)
            g.create_dataset("obs/object", data=obj)
            g.create_dataset("next_obs/robot0_eef_pos", data=eef)
            g.create_dataset("next_obs/object", data=obj)
            # actions: a fixed linear map of the observation, so there is something to learn
            actions = np.tanh(eef @ np.ones((3, 7)) * 0.3 + obj[:, :7] * 0.2)
            g.create_dataset("actions", data=actions)
            g.create_dataset("rewards", data=np.zeros(t))
            g.create_dataset("dones", data=np.r_[np.zeros(t - 1), 1])
            g.create_dataset("states", data=rng.normal(size=(t, 32)))
            g.attrs["num_samples"] = t
            total += t
        data.attrs["total"] = total


def test_robomimic_layout_loads_in_iltk(tmp_path):
    path = tmp_path / "robomimic_low_dim.hdf5"
    write_robomimic_layout(path)
    with DemoFile(path) as f:
        assert f.demos == ["demo_1", "demo_2", "demo_3", "demo_4"]
        assert f.env_name == "Lift" and f.env_args["type"] == 1
        assert f.masks == {}
        info = f.summary()
        assert info["steps"] == 120 and info["success_rate"] is None
    ds = DemoDataset(
        path, obs_keys=["robot0_eef_pos", "object"], split="train", valid_fraction=0.25
    )
    assert ds.state_dim == 13 and ds.action_dim == 7 and ds.num_episodes == 3
    # a least-squares probe recovers the actions from the state: the data is intact
    x = torch.cat([ds.state, torch.ones(len(ds), 1)], 1)
    sol = torch.linalg.lstsq(x, torch.atanh(ds.actions.clamp(-0.999, 0.999))).solution
    assert torch.allclose(x @ sol, torch.atanh(ds.actions.clamp(-0.999, 0.999)), atol=1e-3)


def test_robomimic_layout_trains_with_the_cli(tmp_path, capsys):
    from iltk.cli import main as cli_main
    from iltk.policies import load_policy

    path = tmp_path / "robomimic_low_dim.hdf5"
    write_robomimic_layout(path)
    out = tmp_path / "run"
    assert (
        cli_main(
            [
                "train",
                "--dataset",
                str(path),
                "--out",
                str(out),
                "--steps",
                "30",
                "--obs-keys",
                "robot0_eef_pos",
                "object",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "not a gymnasium id here" in capsys.readouterr().err
    policy = load_policy(out / "best")
    assert (
        policy.config.lowdim_keys == ["robot0_eef_pos", "object"] and policy.config.action_dim == 7
    )
