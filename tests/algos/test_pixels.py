"""Image observations end to end: collect with pixels, train the CNN policy, evaluate."""

from iltk.algos.supervised import TrainConfig, train
from iltk.cli import main as cli_main
from iltk.collect import collect_demos
from iltk.data import DemoFile
from iltk.policies import load_policy


def test_pixels_pipeline(tmp_path):
    path = tmp_path / "reach_px.hdf5"
    collect_demos(
        "iltk/Reach-v0",
        path,
        3,
        env_kwargs={"obs_mode": "state+pixels", "image_size": 32},
        progress=False,
    )
    with DemoFile(path) as f:
        keys = f.step_keys("demo_0")
        assert keys["obs/pixels"][0][1:] == (32, 32, 3) and str(keys["obs/pixels"][1]) == "uint8"
        assert f.env_args["env_kwargs"]["obs_mode"] == "state+pixels"
    res = train(
        TrainConfig(
            dataset=path,
            out=tmp_path / "run",
            steps=30,
            batch_size=16,
            eval_episodes=2,
            eval_envs=1,
            progress=False,
        )
    )
    policy = load_policy(tmp_path / "run" / "last")
    assert policy.config.image_shapes == {"pixels": [32, 32, 3]} and policy.config.lowdim_keys == [
        "state"
    ]
    assert res["final"]["success_rate"] is not None
    # images only: no state vector at all
    res = train(
        TrainConfig(
            dataset=path,
            out=tmp_path / "run_px",
            steps=10,
            batch_size=8,
            obs_keys=["pixels"],
            eval_episodes=0,
            progress=False,
        )
    )
    assert load_policy(tmp_path / "run_px" / "last").config.state_dim == 0
    assert (
        cli_main(
            [
                "eval",
                "--policy",
                str(tmp_path / "run" / "last"),
                "--episodes",
                "2",
                "--num-envs",
                "1",
            ]
        )
        == 0
    )
