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

    python benchmarks/data_io.py [--transitions 1000000] [--out runs/bench/data_io.json]
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
    parser.add_argument("--out", default="runs/bench/data_io.json")
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
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
        big = tmp / "big.hdf5"
        t0 = time.perf_counter()
        n_eps = make_big_file(big, args.transitions)
        t_write = time.perf_counter() - t0
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
