"""LeRobot's dataset format both ways (iltk/data/lerobot.py) and episode editing.

LeRobot's own loader is checked against these folders in benchmarks/lerobot_format.py (it
needs its own heavy venv); here the folders are read back by iltk and by pyarrow/PyAV."""

import json
import shutil

import av
import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from iltk.cli import main as cli_main
from iltk.collect import collect_demos
from iltk.data import DatasetError, DemoFile
from iltk.data.lerobot import export_lerobot, import_lerobot, open_lerobot
from iltk.data.tools import delete_episodes, edit_episodes, split_file


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def assert_same_files(a_path, b_path, image_psnr=None, added=None, float32=False):
    """Every per-step array equal (images: at least ``image_psnr`` dB; with ``float32``,
    observations and actions at float32's precision), the same demos, attributes, masks
    and env settings (plus the ``added`` ones)."""
    with DemoFile(a_path) as a, DemoFile(b_path) as b:
        assert a.demos == b.demos
        assert {**a.env_args, **(added or {})} == b.env_args and a.masks == b.masks
        for d in a.demos:
            assert a.step_keys(d) == b.step_keys(d)
            assert a.demo_attrs(d) == b.demo_attrs(d)
            for k in a.step_keys(d):
                x, y = a.read(d, k), b.read(d, k)
                if x.dtype == np.uint8 and x.ndim == 4:
                    assert psnr(x, y) > image_psnr, (d, k)
                else:
                    if float32 and (k == "actions" or k.startswith("obs/")):
                        x = x.astype(np.float32).astype(x.dtype)
                    assert x.dtype == y.dtype, (d, k)
                    np.testing.assert_array_equal(x, y, err_msg=f"{d} {k}")


@pytest.fixture(scope="module")
def pixel_demos(tmp_path_factory):
    """Three PointMaze episodes with a 32x32 camera image beside the state."""
    path = tmp_path_factory.mktemp("pix") / "pix.hdf5"
    kwargs = {"obs_mode": "state+pixels", "image_size": 32}
    collect_demos("iltk/PointMaze-v0", path, 3, env_kwargs=kwargs, progress=False)
    path.chmod(0o444)
    return path


def test_state_file_round_trips_exactly(tmp_path, reach_demos):
    """iltk -> LeRobot -> iltk: every array (actions, observations, sim states,
    actions_executed, intervention, next_obs), the demo attributes and the env settings."""
    out = tmp_path / "lr"
    res = export_lerobot(reach_demos, out, progress=False)
    assert res.episodes == 4 and res.videos == []
    back = tmp_path / "back.hdf5"
    imported = import_lerobot(out, back, progress=False)
    assert imported.from_iltk and imported.frames == res.frames
    assert_same_files(reach_demos, back)
    # the layout LeRobot reads: its info.json, its per-step columns, its episode table
    info = json.loads((out / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 20
    assert info["total_episodes"] == 4 and info["total_frames"] == res.frames
    feats = info["features"]
    assert feats["observation.state"]["shape"] == [9]
    assert feats["observation.state"]["names"][:2] == ["state_0", "state_1"]
    assert feats["action"] == {
        "dtype": "float32",
        "shape": [3],
        "names": ["action_0", "action_1", "action_2"],
    }
    for name in (
        "iltk.actions_executed",
        "iltk.intervention",
        "iltk.states",
        "next.reward",
        "next.done",
    ):
        assert name in feats
    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert data.num_rows == res.frames
    episodes = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    rows = episodes.to_pylist()
    with DemoFile(reach_demos) as f:
        lengths = [f.num_samples(d) for d in f.demos]
        first = f.read(f.demos[1], "actions")
    assert [r["length"] for r in rows] == lengths
    assert [r["dataset_from_index"] for r in rows] == list(np.cumsum([0, *lengths[:-1]]))
    ep1 = data.filter(pa.compute.equal(data["episode_index"], 1))
    assert ep1["frame_index"].to_pylist() == list(range(lengths[1]))
    assert ep1["index"].to_pylist()[0] == lengths[0]
    np.testing.assert_allclose(ep1["timestamp"].to_numpy(), np.arange(lengths[1]) / 20, atol=1e-6)
    np.testing.assert_array_equal(np.stack(ep1["action"].to_numpy(zero_copy_only=False)), first)
    # statistics as LeRobot keeps them, over every frame
    stats = json.loads((out / "meta" / "stats.json").read_text())
    with DemoFile(reach_demos) as f:
        all_actions = np.concatenate([f.read(d, "actions") for d in f.demos])
    np.testing.assert_allclose(stats["action"]["mean"], all_actions.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats["action"]["std"], all_actions.std(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(stats["action"]["min"], all_actions.min(0))
    assert stats["action"]["count"] == [res.frames] and "q50" in stats["action"]
    tasks = pq.read_table(out / "meta" / "tasks.parquet")
    assert tasks.column("task_index").to_pylist() == [0]
    assert "reach" in tasks.column("__index_level_0__").to_pylist()[0].lower()


def test_pixel_file_round_trips_with_video(tmp_path, pixel_demos):
    """Camera images go to one mp4 per camera (every episode one after the other); the
    import decodes them within codec tolerance and keeps everything else exact."""
    for codec in ("h264", "av1"):
        out = tmp_path / f"lr_{codec}"
        res = export_lerobot(pixel_demos, out, codec=codec, progress=False)
        assert res.videos == ["observation.images.pixels"]
        info = json.loads((out / "meta" / "info.json").read_text())
        video = info["features"]["observation.images.pixels"]
        assert video["dtype"] == "video" and video["shape"] == [32, 32, 3]
        assert video["info"]["video.codec"] == codec and video["info"]["video.fps"] == 20
        mp4 = out / "videos" / "observation.images.pixels" / "chunk-000" / "file-000.mp4"
        with av.open(str(mp4)) as c:
            times = [float(fr.time) for fr in c.decode(c.streams.video[0])]
        assert len(times) == res.frames
        np.testing.assert_allclose(times, np.arange(res.frames) / 20, atol=1e-3)
        rows = pq.read_table(
            out / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        ).to_pylist()
        key = "videos/observation.images.pixels"
        assert rows[0][f"{key}/from_timestamp"] == 0.0
        assert rows[1][f"{key}/from_timestamp"] == pytest.approx(rows[0]["length"] / 20)
        assert rows[-1][f"{key}/to_timestamp"] == pytest.approx(res.frames / 20)
        back = tmp_path / f"back_{codec}.hdf5"
        import_lerobot(out, back, progress=False)
        assert_same_files(pixel_demos, back, image_psnr=30.0)


def test_split_becomes_lerobot_ranges_and_comes_back(tmp_path, reach_demos):
    path = tmp_path / "reach.hdf5"
    shutil.copy(reach_demos, path)
    path.chmod(0o644)
    masks = split_file(path, 0.5, seed=3)
    out = tmp_path / "lr"
    export_lerobot(path, out, progress=False)
    info = json.loads((out / "meta" / "info.json").read_text())
    n_train = len(masks["train"])
    assert info["splits"] == {"train": f"0:{n_train}", "valid": f"{n_train}:4"}
    rows = pq.read_table(out / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [r["iltk/demo"] for r in rows] == masks["train"] + masks["valid"]
    back = tmp_path / "back.hdf5"
    import_lerobot(out, back, progress=False)
    assert_same_files(path, back)


def test_robomimic_layout_goes_to_lerobot(tmp_path):
    """robomimic -> iltk's reader -> LeRobot: robot0_* keys become observation.state,
    the rest observation.environment_state, both float32 as LeRobot's policies read them
    (the sim states keep float64); the file records no control rate, so --fps is asked
    for."""
    from tests.data.test_robomimic_compat import write_robomimic_layout

    path = tmp_path / "robomimic.hdf5"
    write_robomimic_layout(path)
    with pytest.raises(DatasetError, match="records no control rate; pass --fps"):
        export_lerobot(path, tmp_path / "no_fps", progress=False)
    assert not (tmp_path / "no_fps").exists()
    out = tmp_path / "lr"
    export_lerobot(path, out, fps=20, progress=False)
    feats = json.loads((out / "meta" / "info.json").read_text())["features"]
    assert feats["observation.state"]["shape"] == [3]
    assert feats["observation.environment_state"]["shape"] == [10]
    assert feats["action"]["dtype"] == "float32" and feats["iltk.states"]["dtype"] == "float64"
    back = tmp_path / "back.hdf5"
    import_lerobot(out, back, progress=False)
    assert_same_files(path, back, added={"control_freq": 20}, float32=True)  # at the given rate


def write_v21_folder(root, lengths=(6, 9), size=16, fps=10):
    """A LeRobot v2.1 dataset as LeRobot 0.3 wrote it: one parquet file and one mp4 per
    episode, JSON-lines episode and task tables. Returns its states, actions and frames."""
    info = {
        "codebase_version": "v2.1",
        "robot_type": "so100",
        "total_episodes": len(lengths),
        "total_frames": sum(lengths),
        "total_tasks": 1,
        "chunks_size": 1000,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {
            "observation.state": {
                "dtype": "float32",
                "shape": [4],
                "names": ["j0", "j1", "j2", "j3"],
            },
            "action": {"dtype": "float32", "shape": [4], "names": ["j0", "j1", "j2", "j3"]},
            "observation.images.wrist": {
                "dtype": "video",
                "shape": [size, size, 3],
                "names": ["height", "width", "channels"],
            },
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None},
        },
    }
    rng = np.random.default_rng(0)
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "tasks.jsonl").write_text(
        json.dumps({"task_index": 0, "task": "pick the cube"}) + "\n"
    )
    episodes, written, start = [], [], 0
    for ep, n in enumerate(lengths):
        state = rng.normal(size=(n, 4)).astype(np.float32)
        action = np.tanh(state).astype(np.float32)
        frames = np.repeat(np.linspace(20, 230, n).astype(np.uint8)[:, None, None, None], size, 1)
        frames = np.repeat(np.repeat(frames, size, 2), 3, 3)
        table = pa.table(
            {
                "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), 4),
                "action": pa.FixedSizeListArray.from_arrays(pa.array(action.ravel()), 4),
                "timestamp": pa.array((np.arange(n) / fps).astype(np.float32)),
                "frame_index": pa.array(np.arange(n)),
                "episode_index": pa.array(np.full(n, ep)),
                "index": pa.array(start + np.arange(n)),
                "task_index": pa.array(np.zeros(n, np.int64)),
            }
        )
        data = root / info["data_path"].format(episode_chunk=0, episode_index=ep)
        data.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, data)
        mp4 = root / info["video_path"].format(
            episode_chunk=0, video_key="observation.images.wrist", episode_index=ep
        )
        mp4.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(mp4), "w") as c:
            s = c.add_stream("libx264", rate=fps)
            s.width = s.height = size
            s.pix_fmt, s.options = "yuv420p", {"crf": "10", "bf": "0"}
            for img in frames:
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        episodes.append({"episode_index": ep, "tasks": ["pick the cube"], "length": n})
        written.append((state, action, frames))
        start += n
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in episodes))
    return written


def test_v21_folder_from_elsewhere_imports_and_trains(tmp_path):
    src = tmp_path / "so100_pick"
    written = write_v21_folder(src)
    out = tmp_path / "imported.hdf5"
    res = import_lerobot(src, out, progress=False)
    assert not res.from_iltk and res.episodes == 2 and res.frames == 15
    with DemoFile(out) as f:
        assert f.demos == ["demo_0", "demo_1"]
        assert f.env_name == "" and f.env_args["control_freq"] == 10
        for d, (state, action, frames) in zip(f.demos, written):
            np.testing.assert_array_equal(f.read(d, "obs/state"), state)
            np.testing.assert_array_equal(f.read(d, "actions"), action)
            np.testing.assert_array_equal(f.read(d, "actions_executed"), action)
            assert psnr(f.read(d, "obs/wrist"), frames) > 35
            assert "states" not in f.group(d) and not f.read(d, "intervention").any()
            assert f.read(d, "dones")[-1] == 1
            assert f.demo_attrs(d)["task"] == "pick the cube"
    run = tmp_path / "run"
    args = ["train", "--dataset", str(out), "--out", str(run), "--steps", "20", "--no-progress"]
    assert cli_main(args) == 0
    from iltk.policies import load_policy

    policy = load_policy(run / "last")
    assert policy.config.action_dim == 4 and policy.config.image_shapes == {"wrist": [16, 16, 3]}


def test_commands_that_need_sim_states_say_so(tmp_path, capsys):
    src = tmp_path / "foreign"
    write_v21_folder(src, lengths=(5,))
    out = tmp_path / "imported.hdf5"
    import_lerobot(src, out, env_name="iltk/Reach-v0", progress=False)
    capsys.readouterr()
    assert cli_main(["dataset", "verify", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "no states to verify against (imported from a LeRobot dataset" in err[0]
    )


def test_bad_folders_get_one_line_and_nothing_is_written(
    tmp_path, reach_demos, pixel_demos, capsys
):
    out = tmp_path / "out.hdf5"

    def refused(src, match):
        capsys.readouterr()
        assert cli_main(["dataset", "import", str(src), str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("iltk: error: ") and match in err[0], err
        assert not out.exists() and not list(tmp_path.glob(".out.hdf5*"))

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    refused(plain, "is not a LeRobot dataset (no meta/info.json)")
    refused(tmp_path / "nowhere", "no such folder")
    good = tmp_path / "good"
    export_lerobot(pixel_demos, good, progress=False)

    def variant(name, change):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        change(folder)
        return folder

    def version(folder):
        info = json.loads((folder / "meta" / "info.json").read_text())
        info["codebase_version"] = "v9.9"
        (folder / "meta" / "info.json").write_text(json.dumps(info))

    refused(variant("future", version), "codebase_version 'v9.9' is not one iltk reads")
    video = "videos/observation.images.pixels/chunk-000/file-000.mp4"
    refused(
        variant("novideo", lambda f: (f / video).unlink()), "is missing (the video of episode 0)"
    )

    def shorter(folder):  # the same video without its last 5 frames
        with av.open(str(good / video)) as c:
            frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(c.streams.video[0])]
        with av.open(str(folder / video), "w") as c:
            s = c.add_stream("libx264", rate=20)
            s.width = s.height = 32
            s.pix_fmt = "yuv420p"
            for img in frames[:-5]:
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)

    refused(variant("short", shorter), "the video and the parquet disagree")
    broken = variant("badjson", lambda f: (f / "meta" / "info.json").write_text("{not json"))
    refused(broken, "is not valid JSON")

    def wider(folder):  # info.json declares a state wider than the data holds
        info = json.loads((folder / "meta" / "info.json").read_text())
        info["features"]["observation.state"]["shape"] = [99]
        (folder / "meta" / "info.json").write_text(json.dumps(info))

    refused(variant("wrongshape", wider), "'observation.state' is declared [99] in meta/info.json")
    # an existing OUT is refused before any work, and kept
    out.write_bytes(b"precious")
    capsys.readouterr()
    assert cli_main(["dataset", "import", str(good), str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    out.unlink()
    # and an existing export folder too
    assert cli_main(["dataset", "export", str(reach_demos), str(good)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert open_lerobot(good).info["total_episodes"] == 3


def test_interrupted_export_leaves_no_folder(tmp_path, reach_demos, monkeypatch):
    """Ctrl-C in the middle of an export: no OUT_DIR, no temporary folder left beside it."""
    import iltk.data.lerobot as lr

    calls = []
    real = lr.feature_stats

    def interrupt(*args, **kw):
        calls.append(1)
        if len(calls) > 12:  # a couple of episodes in
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(lr, "feature_stats", interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_lerobot(reach_demos, tmp_path / "lr", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_delete_and_edit_keep_names_masks_and_history(tmp_path, reach_demos, capsys):
    path = tmp_path / "reach.hdf5"
    shutil.copy(reach_demos, path)
    path.chmod(0o644)
    split_file(path, 0.5, seed=0)
    with DemoFile(path) as f:
        before = {d: f.read(d, "actions") for d in f.demos}
        masks = f.masks
    # a new file: the source is untouched
    other = tmp_path / "other.hdf5"
    assert cli_main(["dataset", "delete", str(path), "--episodes", "1", "--out", str(other)]) == 0
    with DemoFile(path) as f:
        assert len(f.demos) == 4
    with DemoFile(other) as f:
        assert f.demos == ["demo_0", "demo_2", "demo_3"]
    # in place, through a temporary file
    assert cli_main(["dataset", "delete", str(path), "--episodes", "1", "demo_3"]) == 0
    assert "dropped 2 episodes (demo_1, demo_3)" in capsys.readouterr().out
    with DemoFile(path) as f:
        assert f.demos == ["demo_0", "demo_2"]
        assert f.masks == {m: [d for d in v if d in ("demo_0", "demo_2")] for m, v in masks.items()}
        assert f.attrs["total"] == sum(f.num_samples(d) for d in f.demos)
        for d in f.demos:
            np.testing.assert_array_equal(f.read(d, "actions"), before[d])
        assert json.loads(f.attrs["edits"])[-1]["deleted"] == ["demo_1", "demo_3"]
    assert not list(tmp_path.glob(".reach.hdf5*"))
    args = ["dataset", "edit", str(path), "--episodes", "2", "--operator", "ana"]
    assert cli_main([*args, "--task", "reach the red dot", "--success", "False"]) == 0
    with DemoFile(path) as f:
        attrs = f.demo_attrs("demo_2")
        assert attrs["operator"] == "ana" and attrs["task"] == "reach the red dot"
        assert attrs["success"] is False or attrs["success"] == 0
        assert f.demo_attrs("demo_0")["operator"] == ""
        assert json.loads(f.attrs["edits"])[-1]["set"]["operator"] == "ana"
    # the task text is LeRobot's task on export
    out = tmp_path / "lr"
    export_lerobot(path, out, progress=False)
    tasks = pq.read_table(out / "meta" / "tasks.parquet").column("__index_level_0__").to_pylist()
    assert "reach the red dot" in tasks and len(tasks) == 2
    # refusals: one line each, the file unchanged
    size = path.stat().st_size
    for bad, match in (
        (["delete", str(path), "--episodes", "7"], "has no demo_7 (its episodes: demo_0..demo_2"),
        (["delete", str(path), "--episodes", "0", "2"], "would leave an empty file"),
        (["edit", str(path), "--episodes", "0"], "nothing to set"),
    ):
        capsys.readouterr()
        assert cli_main(["dataset", *bad]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0], err
    assert path.stat().st_size == size
    with pytest.raises(ValueError, match="editable episode fields"):
        edit_episodes(path, [], {"seed": 3})
    with pytest.raises(DatasetError, match="no episodes given"):
        delete_episodes(path, [])


def test_export_import_cli(tmp_path, reach_demos, capsys):
    out = tmp_path / "lr"
    assert cli_main(["dataset", "export", str(reach_demos), str(out), "--task", "touch it"]) == 0
    assert "wrote 4 episodes" in capsys.readouterr().out
    back = tmp_path / "back.hdf5"
    assert cli_main(["dataset", "import", str(out), str(back)]) == 0
    with DemoFile(back) as f:
        assert f.env_name == "iltk/Reach-v0"
    assert cli_main(["dataset", "verify", str(back)]) == 0  # sim states came back: exact
    assert "4/4 episodes re-simulate exactly" in capsys.readouterr().out
    assert (
        cli_main(["dataset", "export", str(reach_demos), str(tmp_path / "x"), "--format", "rlds"])
        == 2
    )
    assert "--format rlds: unknown" in capsys.readouterr().err


def test_h5_attrs_of_imported_file(tmp_path, reach_demos):
    out = tmp_path / "lr"
    export_lerobot(reach_demos, out, progress=False)
    back = tmp_path / "back.hdf5"
    import_lerobot(out, back, progress=False)
    with h5py.File(back) as f:
        assert json.loads(f["data"].attrs["imported_from"])["codebase_version"] == "v3.0"


def test_image_statistics_are_exact():
    """Camera statistics come from per-channel histograms: the same numbers numpy gives
    over every pixel (quantiles with numpy's linear interpolation), scaled to [0, 1]."""
    from iltk.data.lerobot import QUANTILES, aggregate_stats, feature_stats

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (5, 6, 4, 3)).astype(np.uint8)
    b = rng.integers(40, 120, (3, 6, 4, 3)).astype(np.uint8)
    s = feature_stats(a, image=True)
    flat = a.reshape(-1, 3).astype(np.float64) / 255
    assert s["mean"].shape == (3, 1, 1) and s["count"].tolist() == [5]
    np.testing.assert_allclose(s["mean"].ravel(), flat.mean(0))
    np.testing.assert_allclose(s["std"].ravel(), flat.std(0))
    for q in QUANTILES:
        np.testing.assert_allclose(
            s[f"q{round(q * 100):02d}"].ravel(), np.quantile(flat, q, axis=0)
        )
    pooled = aggregate_stats([s, feature_stats(b, image=True)])
    both = np.concatenate([a, b]).reshape(-1, 3).astype(np.float64) / 255
    np.testing.assert_allclose(pooled["mean"].ravel(), both.mean(0))
    np.testing.assert_allclose(pooled["std"].ravel(), both.std(0))
    np.testing.assert_allclose(pooled["min"].ravel(), both.min(0))
    assert pooled["count"].tolist() == [8]


SLOW_EXPORT = """
import sys, time
import iltk.data.lerobot as lr
real = lr.feature_stats
def slow(*a, **k):
    time.sleep(0.05)
    return real(*a, **k)
lr.feature_stats = slow
lr.export_lerobot(sys.argv[1], sys.argv[2], progress=False)
"""


@pytest.mark.expensive
def test_sigkill_during_export_leaves_nothing_that_looks_complete(tmp_path, reach_demos):
    """Killed mid-export, the only trace is a hidden temporary folder (no OUT_DIR, no
    meta/info.json under OUT_DIR's name); the next export clears it and completes."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "lr"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_EXPORT, str(reach_demos), str(out)])
    try:
        # wait (bounded by the test's own timeout) until the first data file is being written
        while not list(tmp_path.glob(".lr.tmp*/data/chunk-000/file-000.parquet")):
            assert proc.poll() is None, "the export ended before it could be killed"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists()
    left = sorted(p.name for p in tmp_path.iterdir())  # (the lock file's flock died with it)
    assert len(left) == 2 and left[0].startswith(".lr.tmp") and left[1] == "lr.lock", left
    export_lerobot(reach_demos, out, progress=False)
    assert open_lerobot(out).info["total_episodes"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["lr"]


def test_hg_dagger_fields_stay_hg_dagger_fields(tmp_path):
    """Interventions, the policy's own actions, DART noise and the policy version travel
    as iltk.* features (LeRobot users see them as columns) and come back as they were."""
    from iltk.data import DemoWriter, make_env_args

    path = tmp_path / "hg.hdf5"
    rng = np.random.default_rng(1)
    with DemoWriter(path, make_env_args("iltk/Reach-v0", control_freq=20.0), background=False) as w:
        for k in range(3):
            t = 12 + k
            actions = rng.uniform(-1, 1, (t, 3)).astype(np.float32)
            w.save(
                {
                    "obs": {"state": rng.normal(size=(t, 9)).astype(np.float32)},
                    "actions": actions,
                    "actions_executed": actions + 0.1,
                    "fields": {
                        "intervention": np.arange(t) % 3 == 0,
                        "policy_actions": rng.uniform(-1, 1, (t, 3)).astype(np.float32),
                        "noise": rng.normal(size=(t, 3)).astype(np.float32),
                        "policy_version": np.full(t, k, np.int32),
                    },
                },
                attrs={"source": "hg-dagger", "operator": "ana"},
            )
    out = tmp_path / "lr"
    res = export_lerobot(path, out, progress=False)
    for name in ("iltk.intervention", "iltk.policy_actions", "iltk.noise", "iltk.policy_version"):
        assert name in res.features
    feats = json.loads((out / "meta" / "info.json").read_text())["features"]
    assert feats["iltk.policy_version"]["dtype"] == "int32"
    assert feats["iltk.intervention"] == {"dtype": "bool", "shape": [1], "names": None}
    data = pq.read_table(out / "data" / "chunk-000" / "file-000.parquet")
    assert data["iltk.intervention"].to_pylist()[:4] == [True, False, False, True]
    back = tmp_path / "back.hdf5"
    import_lerobot(out, back, progress=False)
    assert_same_files(path, back)
    with DemoFile(back) as f:
        assert f.demo_attrs("demo_0")["source"] == "hg-dagger"


def test_info_on_a_lerobot_folder(tmp_path, reach_demos, capsys):
    out = tmp_path / "lr"
    export_lerobot(reach_demos, out, progress=False)
    capsys.readouterr()
    assert cli_main(["dataset", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "LeRobotDataset v3.0" and info["episodes"] == 4
    assert info["features"]["action"] == {"dtype": "float32", "shape": [3]}
    assert info["exported_by_iltk"] and info["fps"] == 20
