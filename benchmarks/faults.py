"""Fault injection: random SIGKILLs during collect, record, train and dataset merge, and
concurrent writers. Target: 0 episodes lost, 0 files that no longer open, every resume works.

For each command the script starts the real `iltk` process (or, for `record`, a teleop
session driven by scripted key events), kills it with SIGKILL at a random moment, and then
checks what a user would find:

- collect / record: the dataset still opens and validates; every episode readable before
  the kill is still there, bit for bit; every episode the recorder reported saved is there;
- train, ppo, finetune, irl: `last/` is a complete checkpoint (config and optimizer state
  of the same step, no step lost) and the next `--resume` carries on from it; nothing but
  the parent's own line on stderr (no vector-env worker traceback);
- dagger: every round in rounds.json has its checkpoint and its episodes in data.hdf5,
  and `--resume` goes on after the last completed round;
- merge: the inputs are untouched and the output is absent or complete;
- concurrent writers: two collectors at once into one file; the file grows by exactly what
  the successful one reported, and the refused one names the lock holder.

    python benchmarks/faults.py [--kills 50] [--commands collect record train ppo finetune irl
        dagger merge concurrent]
        [--out runs/bench/faults]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

import numpy as np  # noqa: E402

ILTK = [sys.executable, "-m", "iltk.cli"]
COMMANDS = ("collect", "record", "train", "ppo", "finetune", "irl", "dagger", "merge", "concurrent")


def demo_hashes(path: Path) -> dict[str, str] | None:
    """{demo: hash of its actions and states}, or None when the file does not open."""
    from iltk.data import DemoFile
    from iltk.data.format import DatasetError

    try:
        with DemoFile(path) as f:
            out = {}
            for d in f.demos:
                h = hashlib.sha1(f.read(d, "actions").tobytes())
                if "states" in f.group(d):
                    h.update(f.read(d, "states").tobytes())
                out[d] = h.hexdigest()
            return out
    except (DatasetError, OSError) as err:
        print(f"    unreadable: {err}")
        return None


def start(cmd: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, text=True, **kw)


def kill_at_random(proc: subprocess.Popen, rng, low: float, high: float) -> bool:
    """SIGKILL after a random delay; False when the process had already exited."""
    deadline = time.monotonic() + float(rng.uniform(low, high))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def row(command: str, **kw) -> dict:
    base = {
        "command": command,
        "kills": 0,
        "reported_saved": None,
        "readable_after": None,
        "lost": 0,
        "unreadable_files": 0,
        "stale_locks": 0,
        "resumes_ok": None,
        "resumes_failed": None,
        "tracebacks": None,
    }
    base.update(kw)
    return base


def check_dataset(path: Path, before: dict[str, str], res: dict) -> dict[str, str]:
    """Count files that no longer open and episodes that vanished or changed."""
    now = demo_hashes(path) if path.exists() else {}
    if now is None:
        res["unreadable_files"] += 1
        return before
    res["lost"] += sum(1 for d, h in before.items() if now.get(d) != h)
    return now


# ------------------------------------------------------------------ commands
def bench_collect(work: Path, kills: int, rng) -> dict:
    path = work / "collect.hdf5"
    res = row("collect")
    seen: dict[str, str] = {}
    for i in range(kills * 3):
        if res["kills"] >= kills:
            break
        proc = start(
            [
                *ILTK,
                "collect",
                "--task",
                "iltk/Reach-v0",
                "--episodes",
                "200",
                "--out",
                str(path),
                "--seed",
                str(10_000 * i),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        killed = kill_at_random(proc, rng, 0.5, 4.0)
        res["kills"] += killed
        if not killed and proc.returncode != 0:
            err = proc.stderr.read()
            res["stale_locks"] += "another iltk process" in err
            print(f"    collect exited {proc.returncode}: {err.strip()[-200:]}")
        seen = check_dataset(path, seen, res)
    res["readable_after"] = len(seen)
    return res


def record_child(out: str) -> None:
    """A keyboard recording session: moves every poll, saves every 8 polls (Enter)."""
    import pygame

    from teleop.devices import KeyboardDevice
    from teleop.options import SessionOptions
    from teleop.session import TeleopSession

    def hook(tick):
        key = pygame.K_RIGHT if tick % 2 else pygame.K_UP
        pygame.event.post(
            pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode="", scancode=0)
        )
        if tick % 8 == 7:
            pygame.event.post(
                pygame.event.Event(
                    pygame.KEYDOWN, key=pygame.K_RETURN, mod=0, unicode="", scancode=0
                )
            )

    session = TeleopSession(
        "iltk/Reach-v0",
        out,
        KeyboardDevice(),
        auto_save_after=0,
        event_hook=hook,
        on_saved=lambda name, ep: print(f"SAVED {name}", flush=True),
        options=SessionOptions(control_freq=50),
    )
    session.run()


def bench_record(work: Path, kills: int, rng) -> dict:
    path = work / "record.hdf5"
    res = row("record", reported_saved=0)
    seen: dict[str, str] = {}
    reported: set[str] = set()
    for _ in range(kills * 3):
        if res["kills"] >= kills:
            break
        proc = start(
            [sys.executable, __file__, "--record-child", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        killed = kill_at_random(proc, rng, 1.0, 5.0)
        res["kills"] += killed
        out = proc.stdout.read()
        if not killed:
            err = proc.stderr.read()
            res["stale_locks"] += "another iltk process" in err
            print(f"    record exited {proc.returncode}: {err.strip()[-200:]}")
        names = {line.split()[1] for line in out.splitlines() if line.startswith("SAVED ")}
        reported |= names
        seen = check_dataset(path, seen, res)
        res["lost"] += len(names - set(seen))  # reported saved, not in the file
    res["reported_saved"] = len(reported)
    res["readable_after"] = len(seen)
    return res


def checkpoint_step(folder: Path) -> int | None:
    """The step of a complete checkpoint; raises when its parts disagree or do not load."""
    import torch

    from iltk.policies import load_checkpoint

    if not folder.exists():
        return None
    _, extra = load_checkpoint(folder)
    state = torch.load(folder / "train_state.pt", weights_only=False)
    if state["step"] != extra["step"]:
        raise RuntimeError(f"config step {extra['step']} but optimizer state step {state['step']}")
    return int(extra["step"])


def bench_train(work: Path, kills: int, rng) -> dict:
    data = work / "train_data.hdf5"
    if not data.exists():
        from iltk.collect import collect_demos

        collect_demos("iltk/Reach-v0", data, 10, progress=False)
    out = work / "train_run"
    res = row("train", resumes_ok=0, resumes_failed=0)
    base = [*ILTK, "train", "--dataset", str(data), "--out", str(out), "--eval-every", "20",
            "--eval-episodes", "0", "--no-progress", "--bc.hidden", "64", "64", "--device", "cpu"]  # fmt: skip
    last = None
    for i in range(kills * 3):
        if res["kills"] >= kills:
            break
        cmd = base + ["--steps", "100000"] + (["--resume"] if i else ["--overwrite"])
        proc = start(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        killed = kill_at_random(proc, rng, 1.5, 6.0)
        res["kills"] += killed
        if not killed:
            print(f"    train exited {proc.returncode}: {proc.stderr.read().strip()[-300:]}")
            res["resumes_failed"] += i > 0
            continue
        try:
            step = checkpoint_step(out / "last")
        except Exception as err:  # noqa: BLE001 - any failure to load is what we count
            print(f"    unreadable checkpoint: {err}")
            res["unreadable_files"] += 1
            continue
        if last is not None and (step is None or step < last):
            res["lost"] += 1
        if i > 0:
            res["resumes_ok"] += 1
        last = step if step is not None else last
    final = (last or 0) + 20
    done = subprocess.run(
        base + ["--steps", str(final), "--resume"], capture_output=True, text=True
    )
    ok = done.returncode == 0 and checkpoint_step(out / "last") == final
    res["resumes_ok" if ok else "resumes_failed"] += 1
    res["readable_after"] = f"step {checkpoint_step(out / 'last')}"
    return res


def rl_checkpoint_step(folder: Path) -> int | None:
    """The env steps of a complete PPO-family checkpoint (ppo, finetune, irl); raises when
    its parts disagree or do not load."""
    import torch

    from iltk.policies import load_checkpoint

    if not folder.exists():
        return None
    _, extra = load_checkpoint(folder)
    state = torch.load(folder / "train_state.pt", weights_only=False)
    if state["env_steps"] != extra["step"]:
        raise RuntimeError(f"config at {extra['step']} steps, PPO state at {state['env_steps']}")
    return int(extra["step"])


def reach_data(work: Path) -> Path:
    data = work / "train_data.hdf5"
    if not data.exists():
        from iltk.collect import collect_demos

        collect_demos("iltk/Reach-v0", data, 10, progress=False)
    return data


def worker_tracebacks(stderr: str) -> int:
    return stderr.count("Traceback")


def bench_killed_and_resumed(name: str, base: list[str], kills: int, rng, progress) -> dict:
    """SIGKILL ``base`` (a run into OUT) at random moments, --resume after each; ``progress``
    reads how far the run's last complete checkpoint is (raises when it is torn)."""
    res = row(name, resumes_ok=0, resumes_failed=0, tracebacks=0)
    last = None
    for i in range(kills * 3):
        if res["kills"] >= kills:
            break
        proc = start(
            base + (["--resume"] if i else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        killed = kill_at_random(proc, rng, 2.0, 8.0)
        stderr = proc.stderr.read()
        res["kills"] += killed
        res["tracebacks"] += worker_tracebacks(stderr)
        if not killed:
            print(f"    {name} exited {proc.returncode}: {stderr.strip()[-300:]}")
            res["resumes_failed"] += i > 0
            continue
        try:
            done = progress()
        except Exception as err:  # noqa: BLE001 - any failure to load is what we count
            print(f"    unreadable checkpoint: {err}")
            res["unreadable_files"] += 1
            continue
        if last is not None and (done is None or done < last):
            res["lost"] += 1
        if i > 0:
            res["resumes_ok"] += 1
        last = done if done is not None else last
    res["readable_after"] = last
    return res


def bench_ppo_family(name: str, work: Path, kills: int, rng) -> dict:
    out = work / f"{name}_run"
    common = ["--out", str(out), "--ppo.n-steps", "256", "--eval-every", "256",
              "--eval-episodes", "1", "--no-progress"]  # fmt: skip
    if name == "ppo":
        head = [*ILTK, "ppo", "--task", "iltk/Reach-v0"]
    elif name == "irl":
        head = [*ILTK, "irl", "--dataset", str(reach_data(work)), "--reward.updates", "3"]
    else:  # finetune a small BC policy of the same task
        policy = work / "ft_bc"
        if not (policy / "last").exists():
            subprocess.run(
                [*ILTK, "train", "--dataset", str(reach_data(work)), "--out", str(policy),
                 "--steps", "200", "--eval-episodes", "0", "--no-progress", "--overwrite"],
                check=True, capture_output=True,
            )  # fmt: skip
        head = [
            *ILTK,
            "finetune",
            "--policy",
            str(policy / "last"),
            "--critic-warmup-rollouts",
            "1",
        ]
    shutil.rmtree(out, ignore_errors=True)
    base = head + common
    progress = lambda: rl_checkpoint_step(out / "last")  # noqa: E731
    res = bench_killed_and_resumed(
        name, base + ["--total-timesteps", "10000000"], kills, rng, progress
    )
    final = (res["readable_after"] or 0) + 256
    done = subprocess.run(
        base + ["--total-timesteps", str(final), "--resume"], capture_output=True, text=True
    )
    ok = done.returncode == 0 and rl_checkpoint_step(out / "last") == final
    if not ok:
        print(f"    final resume: rc {done.returncode}: {done.stderr.strip()[-300:]}")
    res["resumes_ok" if ok else "resumes_failed"] += 1
    res["readable_after"] = f"{rl_checkpoint_step(out / 'last')} env steps"
    return res


def bench_ppo(work: Path, kills: int, rng) -> dict:
    return bench_ppo_family("ppo", work, kills, rng)


def bench_finetune(work: Path, kills: int, rng) -> dict:
    return bench_ppo_family("finetune", work, kills, rng)


def bench_irl(work: Path, kills: int, rng) -> dict:
    return bench_ppo_family("irl", work, kills, rng)


def dagger_rounds(out: Path) -> int | None:
    """Completed rounds of a DAgger run; raises when its record and its files disagree."""
    from iltk.data import DemoFile
    from iltk.policies import load_checkpoint

    if not (out / "rounds.json").exists():
        return None
    rows = json.loads((out / "rounds.json").read_text())
    for r in rows:
        load_checkpoint(out / f"round_{r['round']}")
    with DemoFile(out / "data.hdf5") as f:
        if len(f.demos) < sum(r["episodes"] for r in rows):
            raise RuntimeError(f"data.hdf5 holds {len(f.demos)} episodes, rows name more")
    return len(rows)


def bench_dagger(work: Path, kills: int, rng) -> dict:
    out = work / "dagger_run"
    shutil.rmtree(out, ignore_errors=True)
    base = [*ILTK, "dagger", "--task", "iltk/Reach-v0", "--episodes-per-round", "2",
            "--initial-demos", "2", "--eval-episodes", "1", "--num-envs", "2",
            "--learner.steps-per-round", "30", "--learner.device", "cpu", "--out", str(out)]  # fmt: skip
    res = bench_killed_and_resumed(
        "dagger", base + ["--rounds", "100000"], kills, rng, lambda: dagger_rounds(out)
    )
    final = res["readable_after"] or 0
    done = subprocess.run(
        base + ["--rounds", str(final), "--resume"], capture_output=True, text=True
    )
    ok = done.returncode == 0 and dagger_rounds(out) == final + 1
    if not ok:
        print(f"    final resume: rc {done.returncode}: {done.stderr.strip()[-300:]}")
    res["resumes_ok" if ok else "resumes_failed"] += 1
    res["readable_after"] = f"{dagger_rounds(out)} rounds"
    return res


def bench_merge(work: Path, kills: int, rng) -> dict:
    from iltk.collect import collect_demos

    a, b, out = work / "merge_a.hdf5", work / "merge_b.hdf5", work / "merged.hdf5"
    for path, seed in ((a, 0), (b, 5000)):
        if not path.exists():
            collect_demos("iltk/Reach-v0", path, 300, seed=seed, progress=False)
    inputs = {p: demo_hashes(p) for p in (a, b)}
    expected = sum(len(h) for h in inputs.values())
    res = row("merge")
    for _ in range(kills * 3):
        if res["kills"] >= kills:
            break
        proc = start(
            [*ILTK, "dataset", "merge", str(out), str(a), str(b), "--overwrite"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        killed = kill_at_random(proc, rng, 0.5, 3.5)
        res["kills"] += killed
        if not killed and proc.returncode != 0:
            err = proc.stderr.read()
            res["stale_locks"] += "another iltk process" in err
            print(f"    merge exited {proc.returncode}: {err.strip()[-200:]}")
        for p, hashes in inputs.items():
            res["lost"] += sum(1 for d, h in (demo_hashes(p) or {}).items() if hashes.get(d) != h)
        if out.exists():
            got = demo_hashes(out)
            if got is None or len(got) != expected:
                res["unreadable_files"] += 1
    res["readable_after"] = len(demo_hashes(out) or {}) if out.exists() else 0
    return res


def bench_concurrent(work: Path, trials: int, rng) -> dict:
    from iltk.collect import collect_demos

    path = work / "concurrent.hdf5"
    if path.exists():
        path.unlink()
    collect_demos("iltk/Reach-v0", path, 2, progress=False)
    res = row("concurrent", reported_saved=0)
    res["refused_with_pid"] = 0
    res["both_ran"] = 0
    before = demo_hashes(path)
    for i in range(trials):
        procs = [
            start(
                [
                    *ILTK,
                    "collect",
                    "--task",
                    "iltk/Reach-v0",
                    "--episodes",
                    "10",
                    "--out",
                    str(path),
                    "--seed",
                    str(100_000 + 1000 * (2 * i + j)),
                ],  # fmt: skip
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for j in range(2)
        ]
        outs = [(p, *p.communicate()) for p in procs]
        ok = 0
        for p, out, err in outs:
            if p.returncode == 0:
                ok += 1
                res["reported_saved"] += int(out.split("saved ")[1].split()[0])
            elif "another iltk process (pid" in err:
                res["refused_with_pid"] += 1
            else:
                print(f"    collector exited {p.returncode}: {err.strip()[-200:]}")
        res["both_ran"] += ok == 2  # one finished before the other started: both append
        now = check_dataset(path, before, res)
        if now is not before:
            before = now
    res["readable_after"] = len(before) - 2
    res["lost"] += res["reported_saved"] - res["readable_after"]
    res["kills"] = 0
    return res


# ---------------------------------------------------------------------- main
def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["command"] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k, (key, label) in enumerate(
        (
            ("kills", "SIGKILLs"),
            ("lost", "episodes/steps lost"),
            ("unreadable_files", "unreadable files"),
        )
    ):
        ax.bar(x + (k - 1) * 0.27, [r[key] or 0 for r in rows], 0.27, label=label)
    ax.set_xticks(x, names)
    ax.set_title("fault injection: kills against what was lost")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs per command")
    parser.add_argument("--trials", type=int, default=20, help="concurrent-writer trials")
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/faults"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.record_child:
        record_child(args.record_child)
        return
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    rows = []
    for command in args.commands:
        t0 = time.perf_counter()
        print(f"== {command}")
        if command == "concurrent":
            res = bench_concurrent(work, args.trials, rng)
        else:
            res = globals()[f"bench_{command}"](work, args.kills, rng)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(res)
        print("   ", json.dumps(res))
    cols = ["command", "kills", "reported_saved", "readable_after", "lost", "unreadable_files",
            "stale_locks", "resumes_ok", "resumes_failed", "tracebacks", "seconds"]  # fmt: skip
    print()
    print(" | ".join(cols))
    print(" | ".join("---" for _ in cols))
    for r in rows:
        print(" | ".join("-" if r.get(c) is None else str(r[c]) for c in cols))
    (args.out / "faults.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.out / "faults.png")
    print(f"\nwrote {args.out / 'faults.json'} and {args.out / 'faults.png'}")


if __name__ == "__main__":
    main()
