"""Data I/O: writer cost in the control loop, load time, and batch sampling throughput.

1. Writer: the time the recording loop spends in the writer per step and per episode end
   (``save()`` hands the episode to a background thread), and the background save time,
   for state and for 84x84 image observations.
2. Load: ``DemoDataset`` on 1M low-dim transitions against a bare h5py read of the same
   arrays (ratio; 1.0 means no overhead).
3. Sampling: windows (BC-RNN, L=10) and chunks (ACT, K=20) gathered on device by index
   arithmetic, against the peer users would pick: robomimic 0.3.0's ``SequenceDataset`` in
   its fastest mode (``hdf5_cache_mode="all"``) behind a shuffling DataLoader, same file,
   same sequence length, same batch size. Aim: >= 10x.
4. LeRobot's format (``--sections lerobot``): ``iltk dataset export`` and ``import``
   speed (frames/s), peak memory (each in its own process) and size on disk against the
   HDF5, for the 1M-transition state file, scripted Push demos (with sim states) and Panda
   demos with two 84x84 cameras (H.264, crf 18, keyframe every 2 frames).

    python benchmarks/data_io.py [--transitions 1000000] [--out runs/bench/data_io.json]
    python benchmarks/data_io.py --sections lerobot --pixel-episodes 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from peers import robomimic_loader  # noqa: E402

from iltk.controllers import ExpertController  # noqa: E402
from iltk.data import DemoWriter, make_env_args  # noqa: E402
from iltk.data.dataset import DemoDataset  # noqa: E402
from iltk.envs import make_vector_env  # noqa: E402
from iltk.rollout import run_episodes  # noqa: E402


def bench_writer(tmp: Path, obs_mode: str, episodes: int) -> dict:
    task = "iltk/Push-v0"
    envs = make_vector_env(task, 1, obs_mode=obs_mode)
    # the same episodes without a writer, then with one: the difference is the writer's
    t0 = time.perf_counter()
    base = run_episodes(envs, ExpertController(), episodes, seed=0)
    t_base = time.perf_counter() - t0
    steps = sum(e.length for e in base)
    writer = DemoWriter(tmp / f"w_{obs_mode}.hdf5", make_env_args(task), overwrite=True)
    t0 = time.perf_counter()
    run_episodes(envs, ExpertController(), episodes, seed=0, on_episode=writer.save)
    t_rec = time.perf_counter() - t0
    writer.flush()
    t0 = time.perf_counter()
    writer.close()
    t_close = time.perf_counter() - t0
    envs.close()
    submit = np.array(writer.timings.submit_s)
    save = np.array(writer.timings.save_s)
    return {
        "obs_mode": obs_mode,
        "episodes": episodes,
        "steps": steps,
        "loop_s_without_writer": t_base,
        "loop_s_with_writer": t_rec,
        "writer_per_step_ms": 1e3 * submit.sum() / steps,
        "writer_per_episode_end_ms_mean": 1e3 * submit.mean(),
        "writer_per_episode_end_ms_max": 1e3 * submit.max(),
        "background_save_ms_mean": 1e3 * save.mean(),
        "background_save_ms_max": 1e3 * save.max(),
        "consolidate_on_close_s": t_close,
    }


def make_big_file(
    path: Path, transitions: int, ep_len: int = 500, obs_dim: int = 20, act_dim: int = 7
):
    rng = np.random.default_rng(0)
    n_eps = transitions // ep_len
    with DemoWriter(path, make_env_args("Synthetic-v0"), overwrite=True, durable=False) as w:
        for _ in range(n_eps):
            w.save(
                {
                    "obs": {"state": rng.normal(size=(ep_len, obs_dim)).astype(np.float32)},
                    "actions": rng.uniform(-1, 1, (ep_len, act_dim)).astype(np.float32),
                }
            )
    return n_eps


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _timed_child(code: str) -> dict:
    """Run ``code`` (which prints one JSON line) in a fresh process; add its peak RSS."""
    import subprocess

    wrapped = (
        "import json, resource, time\n" + code + "\n"
        "out['maxrss_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapped], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_lerobot(tmp: Path, files: dict[str, Path]) -> list[dict]:
    base = _timed_child("import iltk.data.lerobot, av, pyarrow\nout = {}")["maxrss_mib"]
    print(f"(a process that only imports them peaks at {base:.0f} MiB)")
    rows = []
    for label, path in files.items():
        folder, back = tmp / f"lr_{len(rows)}", tmp / f"back_{len(rows)}.hdf5"
        with h5py.File(path) as f:  # a file that records no control rate is exported at 20
            fps = None if '"control_freq": 20' in str(f["data"].attrs.get("env_args", "")) else 20
        exp = _timed_child(
            "from iltk.data.lerobot import export_lerobot\n"
            "t0 = time.perf_counter()\n"
            f"r = export_lerobot({str(path)!r}, {str(folder)!r}, fps={fps}, progress=False)\n"
            "out = {'s': time.perf_counter() - t0, 'frames': r.frames, 'episodes': r.episodes}"
        )
        imp = _timed_child(
            "from iltk.data.lerobot import import_lerobot\n"
            "t0 = time.perf_counter()\n"
            f"r = import_lerobot({str(folder)!r}, {str(back)!r}, progress=False)\n"
            "out = {'s': time.perf_counter() - t0, 'frames': r.frames}"
        )
        rows.append(
            {
                "data": label,
                "episodes": exp["episodes"],
                "frames": exp["frames"],
                "hdf5_mib": folder_bytes(path) / 2**20,
                "lerobot_mib": folder_bytes(folder) / 2**20,
                "reimported_hdf5_mib": folder_bytes(back) / 2**20,
                "export_frames_per_s": exp["frames"] / exp["s"],
                "import_frames_per_s": imp["frames"] / imp["s"],
                "export_peak_rss_mib": exp["maxrss_mib"],
                "import_peak_rss_mib": imp["maxrss_mib"],
                "imports_only_rss_mib": base,
            }
        )
        r = rows[-1]
        print(
            f"{label:<34}{r['frames']:>9}{r['hdf5_mib']:>9.1f}{r['lerobot_mib']:>9.1f}"
            f"{r['export_frames_per_s']:>11.0f}{r['import_frames_per_s']:>11.0f}"
            f"{r['export_peak_rss_mib']:>9.0f}{r['import_peak_rss_mib']:>9.0f}",
            flush=True,
        )
    return rows


def bare_h5py_load(path: Path):
    with h5py.File(path, "r") as f:
        names = sorted(f["data"], key=lambda n: int(n.split("_")[1]))
        obs = np.concatenate([f[f"data/{n}/obs/state"][()] for n in names])
        act = np.concatenate([f[f"data/{n}/actions"][()] for n in names])
    return obs, act


def bench_sampling(path: Path, ds: DemoDataset, batch: int, iters: int, workers: int) -> list[dict]:
    """iltk's on-device windows and chunks against robomimic's SequenceDataset (the peer),
    same file, same sequence length, same batch."""
    import robomimic

    rows = []
    for kind, length in (("windows", 10), ("chunks", 20)):
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for _ in range(iters):
            idx = ds.sample_indices(batch, gen)
            b = ds.batch_windows(idx, length) if kind == "windows" else ds.batch_chunks(idx, length)
        fast = iters * batch / (time.perf_counter() - t0)
        assert b["actions"].shape == (batch, length, ds.action_dim)
        loader, load_s = robomimic_loader(path, ["state"], length, batch, workers)
        it = iter(loader)
        first = next(it)  # worker start-up is not part of the rate
        assert first["actions"].shape == (batch, length, ds.action_dim)
        loader_iters = max(3, iters // 10)
        t0 = time.perf_counter()
        for _ in range(loader_iters):
            next(it)
        slow = loader_iters * batch / (time.perf_counter() - t0)
        rows.append(
            {
                "kind": kind,
                "length": length,
                "batch": batch,
                "on_device_samples_per_s": fast,
                "peer": f"robomimic {robomimic.__version__} SequenceDataset, hdf5_cache_mode=all",
                "peer_samples_per_s": slow,
                "peer_load_s": load_s,
                "peer_dataloader_workers": workers,
                "speedup": fast / slow,
            }
        )
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument(
        "--episodes", type=int, default=50, help="episodes recorded in the writer test"
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument(
        "--workers", type=int, default=2, help="DataLoader workers of the robomimic peer"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=("writer", "load", "sampling", "lerobot"),
        default=["writer", "load", "sampling", "lerobot"],
    )
    parser.add_argument(
        "--pixel-episodes", type=int, default=20, help="Panda two-camera episodes (lerobot)"
    )
    parser.add_argument("--out", default="runs/bench/data_io.json")
    args = parser.parse_args()
    out = Path(args.out)
    result = json.loads(out.read_text()) if out.exists() else {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "writer" in args.sections:
            writer_section(tmp, args, result)
        big = tmp / "big.hdf5"
        if {"load", "sampling", "lerobot"} & set(args.sections):
            t0 = time.perf_counter()
            n_eps = make_big_file(big, args.transitions)
            t_write = time.perf_counter() - t0
        if "load" in args.sections or "sampling" in args.sections:
            ds = load_section(big, n_eps, t_write, result)
        if "sampling" in args.sections:
            sampling_section(big, ds, args, result)
        if "lerobot" in args.sections:
            from iltk.collect import collect_demos

            push, panda = tmp / "push.hdf5", tmp / "panda_pixels.hdf5"
            collect_demos("iltk/Push-v0", push, 100, num_envs=2, progress=False)
            kw = {"obs_mode": "state+pixels", "image_size": 84}
            collect_demos(
                "iltk/PandaLift-v0", panda, args.pixel_episodes, env_kwargs=kw, num_envs=2,
                progress=False,
            )  # fmt: skip
            print(
                f"\n{'LeRobot v3.0 export / import':<34}{'frames':>9}{'HDF5 MiB':>9}"
                f"{'LR MiB':>9}{'export/s':>11}{'import/s':>11}{'exp RSS':>9}{'imp RSS':>9}"
            )
            files = {
                f"{args.transitions // 1000}k synthetic steps, state": big,
                "Push, 100 demos, state + sim states": push,
                f"PandaLift, {args.pixel_episodes} demos, 2 cameras 84x84": panda,
            }
            result["lerobot"] = bench_lerobot(tmp, files)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def writer_section(tmp: Path, args, result: dict) -> None:
    result["writer"] = [
        bench_writer(tmp, "state", args.episodes),
        bench_writer(tmp, "pixels", args.episodes // 2),
    ]
    print(
        f"{'obs':<8}{'steps':>7}{'ms/step':>9}{'ms/ep end':>11}{'max':>8}{'bg save ms':>12}{'close s':>9}"
    )
    for r in result["writer"]:
        print(
            f"{r['obs_mode']:<8}{r['steps']:>7}{r['writer_per_step_ms']:>9.4f}"
            f"{r['writer_per_episode_end_ms_mean']:>11.3f}{r['writer_per_episode_end_ms_max']:>8.3f}"
            f"{r['background_save_ms_mean']:>12.1f}{r['consolidate_on_close_s']:>9.2f}"
        )


def load_section(big: Path, n_eps: int, t_write: float, result: dict) -> DemoDataset:
    t0 = time.perf_counter()
    bare_h5py_load(big)
    t_bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = DemoDataset(big)
    t_iltk = time.perf_counter() - t0
    result["load"] = {
        "transitions": len(ds),
        "episodes": n_eps,
        "write_s": t_write,
        "bare_h5py_s": t_bare,
        "demodataset_s": t_iltk,
        "ratio": t_iltk / t_bare,
    }
    r = result["load"]
    print(
        f"\nload {r['transitions']} transitions ({n_eps} episodes): DemoDataset {t_iltk:.2f}s, "
        f"bare h5py {t_bare:.2f}s, ratio {r['ratio']:.2f} (file written in {t_write:.1f}s)"
    )
    return ds


def sampling_section(big: Path, ds: DemoDataset, args, result: dict) -> None:
    result["sampling"] = bench_sampling(big, ds, args.batch, args.iters, args.workers)
    print(f"\npeer: {result['sampling'][0]['peer']}")
    print(
        f"{'kind':<9}{'len':>4}{'batch':>6}{'iltk/s':>11}{'robomimic/s':>13}{'speedup':>9}"
        f"{'peer load s':>13}"
    )
    for r in result["sampling"]:
        print(
            f"{r['kind']:<9}{r['length']:>4}{r['batch']:>6}{r['on_device_samples_per_s']:>11.0f}"
            f"{r['peer_samples_per_s']:>13.0f}{r['speedup']:>8.1f}x{r['peer_load_s']:>13.1f}"
        )


if __name__ == "__main__":
    main()
