"""Every malformed input gets one clear message naming the file, demo and key."""

import h5py
import numpy as np
import pytest

from iltk.cli import main as cli_main
from iltk.data import DatasetError, DemoFile


def good_demo(g, t=10, obs_dim=4, act_dim=2):
    g.create_dataset("obs/state", data=np.zeros((t, obs_dim), np.float32))
    g.create_dataset("actions", data=np.zeros((t, act_dim), np.float32))
    g.create_dataset("rewards", data=np.zeros(t, np.float32))
    g.attrs["num_samples"] = t


def make_file(path, mutate):
    with h5py.File(path, "w") as f:
        good_demo(f.create_group("data/demo_0"))
        good_demo(f.create_group("data/demo_1"))
        mutate(f)
    return path


CASES = {
    "no_data_group": (lambda f: f.move("data", "stuff"), None, None, "no 'data' group"),
    "no_actions": (
        lambda f: f["data/demo_1"].__delitem__("actions"),
        "demo_1",
        "actions",
        "has no actions",
    ),
    "length_mismatch": (
        lambda f: (
            f["data/demo_1"].__delitem__("rewards"),
            f["data/demo_1"].create_dataset("rewards", data=np.zeros(7)),
        ),
        "demo_1",
        "rewards",
        "has 7 steps but actions has 10",
    ),
    "nan_actions": (
        lambda f: f["data/demo_0/actions"].__setitem__((3, 1), np.nan),
        "demo_0",
        "actions",
        "NaN or inf (first at step 3)",
    ),
    "inf_obs": (
        lambda f: f["data/demo_1/obs/state"].__setitem__((5, 0), np.inf),
        "demo_1",
        "obs/state",
        "NaN or inf (first at step 5)",
    ),
    "int_actions": (
        lambda f: (
            f["data/demo_0"].__delitem__("actions"),
            f["data/demo_0"].create_dataset("actions", data=np.zeros((10, 2), np.int32)),
        ),
        "demo_0",
        "actions",
        "must be floating point",
    ),
    "string_obs": (
        lambda f: f["data/demo_0"].create_dataset("obs/name", data=np.array([b"x"] * 10)),
        "demo_0",
        "obs/name",
        "non-numeric dtype",
    ),
    "bad_num_samples": (
        lambda f: f["data/demo_1"].attrs.__setitem__("num_samples", 12),
        "demo_1",
        "actions",
        "num_samples=12",
    ),
    "actions_1d": (
        lambda f: (
            f["data/demo_0"].__delitem__("actions"),
            f["data/demo_0"].create_dataset("actions", data=np.zeros(10, np.float32)),
        ),
        "demo_0",
        "actions",
        "must be (T, action_dim)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_file_messages(tmp_path, case):
    mutate, demo, key, text = CASES[case]
    path = make_file(tmp_path / f"{case}.hdf5", mutate)
    with pytest.raises(DatasetError) as err:
        DemoFile(path)
    message = str(err.value)
    assert str(path) in message and text in message
    if demo:
        assert demo in message
    if key:
        assert f"'{key}'" in message


def test_not_hdf5_empty_missing(tmp_path):
    text = tmp_path / "notes.hdf5"
    text.write_text("hello, I am not HDF5")
    empty = tmp_path / "empty.hdf5"
    empty.touch()
    for path, msg in [
        (text, "not an HDF5 file"),
        (empty, "empty"),
        (tmp_path / "nope.hdf5", "no such file"),
        (tmp_path, "folder"),
    ]:
        with pytest.raises(DatasetError, match=msg):
            DemoFile(path)


def test_missing_shard_is_named(tmp_path):
    path = tmp_path / "rec.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("data")
        f["data/demo_0"] = h5py.ExternalLink("rec.hdf5.episodes/demo_0.hdf5", "/data/demo_0")
    with pytest.raises(DatasetError, match="demo_0: its episodes live in the 'rec.hdf5.episodes'"):
        DemoFile(path)
    (tmp_path / "rec.hdf5.episodes").mkdir()
    with pytest.raises(DatasetError, match="demo_0: its shard .*demo_0.hdf5 is missing from"):
        DemoFile(path)


def test_cli_reports_without_traceback(tmp_path, capsys):
    path = make_file(tmp_path / "bad.hdf5", CASES["nan_actions"][0])
    assert cli_main(["dataset", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "demo_0" in err and "NaN" in err


def test_verify_names_a_file_from_another_model(tmp_path, capsys):
    """Sim states of another size (a file recorded before the task's model changed) get a
    clear error from `dataset verify`, not a numpy broadcast error."""
    from iltk.collect import collect_demos

    path = tmp_path / "old.hdf5"
    collect_demos("iltk/Reach-v0", path, 1, progress=False)
    with h5py.File(path, "r+") as f:
        states = f["data/demo_0/states"][:]
        del f["data/demo_0/states"]
        f["data/demo_0/states"] = states[:, :-1]
    assert cli_main(["dataset", "verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "another version of the task's model" in err
