"""iltk's LeRobot export and import checked by the real client: LeRobot 0.4.4's own
``LeRobotDataset``, in its own venv.

1. iltk -> LeRobot: episode files are exported (``iltk dataset export``) and opened with
   ``LeRobotDataset(repo_id, root=folder)``. Every frame's state and action must equal the
   HDF5's, every camera frame is compared (PSNR, dB), and the episode boundaries, fps and
   feature names must be the file's. Files: a state dataset (Push), a Panda dataset with
   robomimic's observation keys and two 84x84 cameras, and a robomimic-layout file.
2. LeRobot -> iltk: a dataset written by LeRobot's own ``create`` / ``add_frame`` /
   ``save_episode`` (state, action and a camera, AV1 as LeRobot encodes it) is imported
   (``iltk dataset import``); its states and actions must equal what LeRobot was given,
   images within codec tolerance, and ``iltk train`` trains on it.
3. Round trip iltk -> LeRobot -> iltk: every array equal (images: PSNR).

LeRobot runs in its own venv (``--lerobot-python``): the registry's torch 2.13.0 and
torchvision 0.28.0 (CUDA builds, run on the CPU), ``lerobot==0.4.4 --no-deps``, its
dataset modules' imports at its pins (``datasets<5 av<16 jsonlines pandas huggingface-hub<0.36 diffusers<0.36
draccus``), ``torchcodec==0.13.0`` with the system's FFmpeg libraries (apt-get install
ffmpeg), and this repository (``pip install -e .``).

    python benchmarks/lerobot_format.py --lerobot-python /tmp/lrvenv/bin/python

Writes runs/bench/lerobot_format.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


# ------------------------------------------------------------------ LeRobot side
def worker_read(folder: str, h5: str) -> dict:
    """Open an iltk export with LeRobotDataset and compare it frame by frame with the HDF5."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from iltk.data import DemoFile

    t0 = time.perf_counter()
    ds = LeRobotDataset("iltk/export", root=folder)
    out = {"open_s": time.perf_counter() - t0, "frames": len(ds), "fps": ds.fps}
    info = json.loads((Path(folder) / "meta" / "info.json").read_text())
    columns = info["iltk"]["columns"]
    worst = {}
    exact = {"state": True, "action": True, "boundaries": True}
    with DemoFile(h5) as f:
        order = [e["iltk/demo"] for e in _episode_rows(folder)]
        out["episodes"] = ds.meta.total_episodes
        exact["episode_count"] = ds.meta.total_episodes == len(f.demos)
        exact["fps"] = ds.fps == f.env_args.get("control_freq", ds.fps)
        i, t0, lengths = 0, time.perf_counter(), []
        for e, demo in enumerate(order):
            n = f.num_samples(demo)
            lengths.append(n)
            ep = ds.meta.episodes[e]
            exact["boundaries"] &= ep["dataset_from_index"] == i and ep["dataset_to_index"] == i + n
            state = np.concatenate(
                [f.read(demo, k).reshape(n, -1) for k in columns["observation.state"]["keys"]], 1
            )
            actions = f.read(demo, "actions")
            cams = {c: f.read(demo, columns[c]["keys"][0]) for c in ds.meta.video_keys}
            for t in range(n):
                item = ds[i + t]
                exact["boundaries"] &= (
                    int(item["episode_index"]) == e and int(item["frame_index"]) == t
                )
                # (LeRobot hands float64 columns out as float32: compared at its precision)
                got_s, got_a = item["observation.state"].numpy(), item["action"].numpy()
                exact["state"] &= bool(np.array_equal(got_s, state[t].astype(got_s.dtype)))
                exact["action"] &= bool(np.array_equal(got_a, actions[t].astype(got_a.dtype)))
                out["dtypes"] = {"state": str(got_s.dtype), "action": str(got_a.dtype)}
                for c, frames in cams.items():
                    img = (item[c].numpy().transpose(1, 2, 0) * 255.0).round()
                    err = float(np.mean((img - frames[t].astype(np.float64)) ** 2))
                    worst.setdefault(c, []).append(err)
            i += n
        out["read_frames_per_s"] = i / (time.perf_counter() - t0)
    out["feature_names"] = {k: v.get("names") for k, v in ds.meta.features.items()}
    out["psnr"] = {c: 10 * np.log10(255.0**2 / max(np.mean(v), 1e-12)) for c, v in worst.items()}
    out["psnr_worst_frame"] = {
        c: 10 * np.log10(255.0**2 / max(max(v), 1e-12)) for c, v in worst.items()
    }
    out["exact"] = exact
    return out


def _episode_rows(folder: str) -> list[dict]:
    import pyarrow.parquet as pq

    rows = []
    for p in sorted((Path(folder) / "meta" / "episodes").glob("*/*.parquet")):
        rows += pq.read_table(p, columns=["episode_index", "iltk/demo"]).to_pylist()
    return sorted(rows, key=lambda r: r["episode_index"])


def worker_write(folder: str, npz: str, episodes: int, size: int) -> dict:
    """A dataset written by LeRobot itself: state, action and one camera per frame."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    features = {
        "observation.state": {
            "dtype": "float32",
            "shape": (6,),
            "names": [f"j{i}" for i in range(6)],
        },
        "action": {"dtype": "float32", "shape": (6,), "names": [f"j{i}" for i in range(6)]},
        "observation.images.front": {
            "dtype": "video",
            "shape": (size, size, 3),
            "names": ["height", "width", "channels"],
        },
    }
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    ds = LeRobotDataset.create(
        "lerobot/made_here", fps=30, features=features, root=folder, use_videos=True
    )
    given = {}
    for ep in range(episodes):
        n = 40 + 7 * ep
        state = rng.normal(size=(n, 6)).astype(np.float32)
        action = np.tanh(state @ rng.normal(size=(6, 6)).astype(np.float32) * 0.5)
        # a smooth moving gradient (codecs keep such images well; noise they would not)
        yy, xx = np.mgrid[0:size, 0:size]
        frames = np.stack(
            [
                np.stack(
                    [(xx * 4 + t * 3) % 256, (yy * 4) % 256, np.full_like(xx, 40 * ep % 256)], -1
                )
                for t in range(n)
            ]
        ).astype(np.uint8)
        for t in range(n):
            ds.add_frame(
                {
                    "observation.state": state[t],
                    "action": action[t],
                    "observation.images.front": frames[t],
                    "task": f"move to target {ep % 2}",
                }
            )
        ds.save_episode()
        given[f"state_{ep}"], given[f"action_{ep}"], given[f"frames_{ep}"] = state, action, frames
    ds.finalize()
    np.savez(npz, **given)
    return {"write_s": time.perf_counter() - t0, "episodes": episodes}


# --------------------------------------------------------------------- iltk side
def make_inputs(work: Path, args) -> dict[str, Path]:
    from iltk.collect import collect_demos

    files = {}
    state = Path("runs/bench") / f"dp_Push-v0_{args.demos}.hdf5"
    if not state.exists():
        state.parent.mkdir(parents=True, exist_ok=True)
        collect_demos("iltk/Push-v0", state, args.demos, progress=False)
    files["Push, state"] = state
    pixels = Path("runs/bench") / f"lerobot_PandaLift_pixels84_{args.pixel_demos}.hdf5"
    if not pixels.exists():
        kw = {"obs_mode": "state+pixels", "image_size": 84}
        collect_demos(
            "iltk/PandaLift-v0", pixels, args.pixel_demos, env_kwargs=kw, num_envs=2, progress=False
        )
    files["PandaLift, 2 cameras 84x84 (robomimic keys)"] = pixels
    sys.path.insert(0, str(Path(__file__).parent.parent))
    from tests.data.test_robomimic_compat import write_robomimic_layout

    robomimic = work / "robomimic_layout.hdf5"
    write_robomimic_layout(robomimic, n_demos=5, t=40)
    files["robomimic layout (float64, no control rate)"] = robomimic
    return files


def compare_files(a: Path, b: Path) -> dict:
    from iltk.data import DemoFile

    out = {"arrays_equal": True, "attrs_equal": True, "min_psnr": None, "rounded_to_float32": []}
    with DemoFile(a) as fa, DemoFile(b) as fb:
        out["demos_equal"] = fa.demos == fb.demos and fa.masks == fb.masks
        for d in fa.demos:
            out["attrs_equal"] &= fa.demo_attrs(d) == fb.demo_attrs(d)
            keys_a, keys_b = fa.step_keys(d), fb.step_keys(d)
            out["arrays_equal"] &= keys_a == keys_b
            for k in keys_a:
                x, y = fa.read(d, k), fb.read(d, k)
                if x.dtype == np.uint8 and x.ndim == 4:
                    p = psnr(x, y)
                    out["min_psnr"] = p if out["min_psnr"] is None else min(out["min_psnr"], p)
                else:
                    if x.dtype == np.float64 and (k == "actions" or k.startswith("obs/")):
                        # LeRobot's observation and action features are float32
                        x = x.astype(np.float32).astype(np.float64)
                        if k not in out["rounded_to_float32"]:
                            out["rounded_to_float32"].append(k)
                    out["arrays_equal"] &= bool(np.array_equal(x, y))
    return out


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--demos", type=int, default=100, help="Push state episodes")
    parser.add_argument("--pixel-demos", type=int, default=10, help="PandaLift camera episodes")
    parser.add_argument("--lerobot-episodes", type=int, default=4)
    parser.add_argument(
        "--lerobot-python",
        default=os.environ.get("ILTK_LEROBOT_PYTHON", "/tmp/lrvenv/bin/python"),
        help="the Python of the venv holding lerobot 0.4.4",
    )
    parser.add_argument("--worker", choices=("read", "write"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--h5", help=argparse.SUPPRESS)
    parser.add_argument("--npz", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="runs/bench/lerobot_format.json")
    args = parser.parse_args()
    if args.worker == "read":
        Path(args.result).write_text(json.dumps(worker_read(args.folder, args.h5)))
        return
    if args.worker == "write":
        Path(args.result).write_text(
            json.dumps(worker_write(args.folder, args.npz, args.lerobot_episodes, 64))
        )
        return
    if not Path(args.lerobot_python).exists():
        parser.error(f"--lerobot-python {args.lerobot_python}: no such Python (see the docstring)")
    from iltk.data import DemoFile
    from iltk.data.lerobot import export_lerobot, import_lerobot

    version = subprocess.run(
        [args.lerobot_python, "-c", "import importlib.metadata as m; print(m.version('lerobot'))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"LeRobot {version} ({args.lerobot_python})", flush=True)
    work = Path(tempfile.mkdtemp(prefix="iltk_lrfmt_"))
    result = {"lerobot": version, "exports": {}, "lerobot_written": {}}
    for label, h5 in make_inputs(work, args).items():
        folder = work / f"export_{len(result['exports'])}"
        t0 = time.perf_counter()
        fps = None if DemoFile(h5).env_args.get("control_freq") else 20
        res = export_lerobot(h5, folder, fps=fps, progress=False)
        export_s = time.perf_counter() - t0
        rj = work / "read.json"
        cmd = [args.lerobot_python, __file__, "--worker", "read", "--folder", str(folder)]
        subprocess.run([*cmd, "--h5", str(h5), "--result", str(rj)], check=True)
        read = json.loads(rj.read_text())
        back = work / f"back_{len(result['exports'])}.hdf5"
        import_lerobot(folder, back, progress=False)
        row = {
            "episodes": res.episodes,
            "frames": res.frames,
            "export_s": export_s,
            "lerobot": read,
            "round_trip": compare_files(h5, back),
        }
        result["exports"][label] = row
        ex = read["exact"]
        print(
            f"{label}: {res.episodes} episodes, {res.frames} frames; LeRobotDataset read "
            f"{read['frames']} frames: state equal {ex['state']}, action equal {ex['action']}, "
            f"boundaries {ex['boundaries']}, fps {read['fps']}; camera PSNR "
            + (", ".join(f"{c.split('.')[-1]} {p:.1f} dB" for c, p in read["psnr"].items()) or "-")
            + f"; round trip arrays equal {row['round_trip']['arrays_equal']}"
            + (
                " (observations and actions at float32)"
                if row["round_trip"]["rounded_to_float32"]
                else ""
            )
            + (
                f" (images {row['round_trip']['min_psnr']:.1f} dB)"
                if row["round_trip"]["min_psnr"]
                else ""
            ),
            flush=True,
        )
    # LeRobot's own writer, then iltk's import and training
    folder, npz, rj = work / "made_by_lerobot", work / "given.npz", work / "write.json"
    cmd = [
        args.lerobot_python,
        __file__,
        "--worker",
        "write",
        "--folder",
        str(folder),
        "--npz",
        str(npz),
    ]
    subprocess.run(
        [*cmd, "--result", str(rj), "--lerobot-episodes", str(args.lerobot_episodes)], check=True
    )
    h5 = work / "from_lerobot.hdf5"
    res = import_lerobot(folder, h5, progress=False)
    given = np.load(npz)
    check = {"state": True, "action": True, "psnr": []}
    with DemoFile(h5) as f:
        for ep, demo in enumerate(f.demos):
            check["state"] &= bool(np.array_equal(f.read(demo, "obs/state"), given[f"state_{ep}"]))
            check["action"] &= bool(np.array_equal(f.read(demo, "actions"), given[f"action_{ep}"]))
            check["psnr"].append(psnr(f.read(demo, "obs/front"), given[f"frames_{ep}"]))
        tasks = sorted({f.demo_attrs(d).get("task") for d in f.demos})
    from iltk.algos.supervised import TrainConfig, train

    t0 = time.perf_counter()
    trained = train(
        TrainConfig(dataset=h5, out=work / "run", steps=50, eval_episodes=0, progress=False)
    )
    result["lerobot_written"] = {
        "episodes": res.episodes,
        "frames": res.frames,
        "state_equal": check["state"],
        "action_equal": check["action"],
        "min_psnr": min(check["psnr"]),
        "tasks": tasks,
        "train_s": time.perf_counter() - t0,
        "train_steps": trained["steps"],
    }
    w = result["lerobot_written"]
    print(
        f"written by LeRobot ({res.episodes} episodes, {res.frames} frames, AV1): imported with "
        f"state equal {w['state_equal']}, action equal {w['action_equal']}, camera PSNR >= "
        f"{w['min_psnr']:.1f} dB, tasks {w['tasks']}; iltk train 50 steps in {w['train_s']:.1f}s",
        flush=True,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
