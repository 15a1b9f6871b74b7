"""How long the README's tour commands take on this machine.

Reads the ```bash block under "## Tour" in README.md, runs every `iltk ...` line that
needs no person (not `record`, `correct`, nor `replay` into a window) in order, in a
scratch folder, and prints each command's wall-clock time; the README quotes these.

    python benchmarks/tour_times.py                 # all of them (tens of minutes on 2 cores)
    python benchmarks/tour_times.py --only train    # the lines containing "train"
    python benchmarks/tour_times.py --busy          # idle, then beside a CPU-bound process
    python benchmarks/tour_times.py --paired        # each line idle and busy on the same inputs

Writes runs/bench/tour_times.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERACTIVE = ("iltk record", "iltk correct")


def tour_commands(readme: Path) -> list[str]:
    text = readme.read_text()
    block = re.search(r"## Tour\s+```bash\n(.*?)```", text, re.S)
    if block is None:
        raise SystemExit(f"{readme}: no ```bash block under '## Tour'")
    commands = []
    for line in block.group(1).splitlines():
        line = line.split("  #")[0].strip()
        if not line.startswith("iltk ") or "--help" in line or line.startswith(INTERACTIVE):
            continue
        if line.startswith("iltk replay") and "--video" not in line:
            continue  # opens a window
        commands.append(line)
    return commands


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


class Busy:
    """One CPU-bound process beside what runs inside the block."""

    def __enter__(self):
        self.stop = mp.Event()
        self.proc = mp.Process(target=_spin, args=(self.stop,), daemon=True)
        self.proc.start()
        time.sleep(0.5)  # spinning before the timed command starts
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.proc.join(timeout=5)


def run_line(line: str, scratch: Path, env: dict) -> subprocess.CompletedProcess:
    iltk = [sys.executable, "-m", "iltk"]
    return subprocess.run(
        iltk + shlex.split(line)[1:] + (["--no-progress"] if " train " in f" {line} " else []),
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
    )


def run_paired(commands: list[str], scratch: Path, env: dict, only: str | None) -> list:
    """Each line idle, then beside a busy process on a copy of the very inputs the idle
    run had (so both runs do the same work, trained policies included)."""
    rows = []
    for line in commands:
        if only and only not in line:
            continue
        twin = scratch.with_name(scratch.name + "_busy")
        shutil.rmtree(twin, ignore_errors=True)
        shutil.copytree(scratch, twin, symlinks=True)
        t0 = time.perf_counter()
        res = run_line(line, scratch, env)
        idle = time.perf_counter() - t0
        with Busy():
            t0 = time.perf_counter()
            busy_res = run_line(line, twin, env)
            busy = time.perf_counter() - t0
        shutil.rmtree(twin, ignore_errors=True)
        rows.append(
            {"command": line, "seconds": idle, "rc": res.returncode, "busy_seconds": busy,
             "busy_rc": busy_res.returncode, "busy_ratio": busy / max(idle, 1e-9)}
        )  # fmt: skip
        ok = "ok" if res.returncode == busy_res.returncode == 0 else "FAILED"
        print(
            f"{idle:8.1f} s {busy:8.1f} s {busy / max(idle, 1e-9):6.2f}x  {ok:6}  {line}",
            flush=True,
        )
        if res.returncode or busy_res.returncode:
            print((res.stderr or busy_res.stderr)[-2000:])
    return rows


def run_tour(commands: list[str], scratch: Path, env: dict, only: str | None, tag: str) -> list:
    """Every command in order in ``scratch``; rows of (command, seconds, rc)."""
    rows = []
    for line in commands:
        if only and only not in line:
            continue
        t0 = time.perf_counter()
        res = run_line(line, scratch, env)
        seconds = time.perf_counter() - t0
        last = (res.stdout.strip().splitlines() or [""])[-1][:90]
        rows.append({"command": line, "seconds": seconds, "rc": res.returncode})
        status = "ok" if res.returncode == 0 else f"FAILED rc={res.returncode}"
        print(f"{tag:<5}{seconds:8.1f} s  {status:6}  {line}\n{'':23}{last}", flush=True)
        if res.returncode != 0:
            print(res.stderr[-2000:])
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=None, help="run only the lines containing this")
    parser.add_argument(
        "--busy",
        action="store_true",
        help="run the tour twice: idle, then beside one CPU-bound process (a second job)",
    )
    parser.add_argument(
        "--paired",
        action="store_true",
        help="each line idle, then at once beside a busy process on a copy of the same "
        "inputs (both runs do the same work)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--out", default=str(ROOT / "runs/bench/tour_times.json"))
    args = parser.parse_args()
    commands = tour_commands(ROOT / "README.md")
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    # the commands' own thread settings, not an inherited one
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(key, None)
    print(f"running {len(commands)} tour commands" + (" idle, then busy" if args.busy else ""))
    if args.paired:
        scratch = Path(tempfile.mkdtemp(prefix="iltk_tour_paired_"))
        try:
            rows = run_paired(commands, scratch, env, args.only)
        finally:
            if not args.keep:
                shutil.rmtree(scratch, ignore_errors=True)
        worst = max(rows, key=lambda r: r["busy_ratio"])
        print(f"slowest beside a busy process: {worst['busy_ratio']:.2f}x  {worst['command']}")
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"cpus": os.cpu_count(), "paired": True, "rows": rows}, indent=2))
        print(f"wrote {out}")
        return
    passes = {}
    for load in ("idle", "busy") if args.busy else ("idle",):
        scratch = Path(tempfile.mkdtemp(prefix=f"iltk_tour_{load}_"))
        stop = mp.Event()
        spinner = mp.Process(target=_spin, args=(stop,), daemon=True) if load == "busy" else None
        if spinner is not None:
            spinner.start()
        try:
            passes[load] = run_tour(commands, scratch, env, args.only, load)
        finally:
            if spinner is not None:
                stop.set()
                spinner.join(timeout=5)
            if not args.keep:
                shutil.rmtree(scratch, ignore_errors=True)
    rows = []
    for i, row in enumerate(passes["idle"]):
        out_row = {"command": row["command"], "seconds": row["seconds"], "rc": row["rc"]}
        if "busy" in passes:
            busy = passes["busy"][i]
            out_row.update(busy_seconds=busy["seconds"], busy_rc=busy["rc"])
            out_row["busy_ratio"] = busy["seconds"] / max(row["seconds"], 1e-9)
        rows.append(out_row)
    if "busy" in passes:
        print(f"\n{'idle s':>8}{'busy s':>8}{'ratio':>7}  command")
        for r in rows:
            print(
                f"{r['seconds']:8.1f}{r['busy_seconds']:8.1f}{r['busy_ratio']:7.2f}  {r['command']}"
            )
        worst = max(rows, key=lambda r: r["busy_ratio"])
        print(f"slowest beside a busy process: {worst['busy_ratio']:.2f}x  {worst['command']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2))
    print(f"total idle {sum(r['seconds'] for r in rows) / 60:.1f} min; wrote {out}")


if __name__ == "__main__":
    main()
