"""How long the README's tour commands take on this machine.

Reads the ```bash block under "## Tour" in README.md, runs every `iltk ...` line that
needs no person (not `record`, `correct`, nor `replay` into a window) in order, in a
scratch folder, and prints each command's wall-clock time; the README quotes these.

    python benchmarks/tour_times.py                 # all of them (tens of minutes on 2 cores)
    python benchmarks/tour_times.py --only train    # the lines containing "train"

Writes runs/bench/tour_times.json.
"""

from __future__ import annotations

import argparse
import json
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


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default=None, help="run only the lines containing this")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--out", default=str(ROOT / "runs/bench/tour_times.json"))
    args = parser.parse_args()
    commands = tour_commands(ROOT / "README.md")
    scratch = Path(tempfile.mkdtemp(prefix="iltk_tour_"))
    iltk = [sys.executable, "-m", "iltk"]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    rows = []
    print(f"running {len(commands)} tour commands in {scratch}")
    try:
        for line in commands:
            if args.only and args.only not in line:
                continue
            t0 = time.perf_counter()
            res = subprocess.run(
                iltk
                + shlex.split(line)[1:]
                + (["--no-progress"] if " train " in f" {line} " else []),
                cwd=scratch,
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - t0
            last = (res.stdout.strip().splitlines() or [""])[-1][:90]
            rows.append({"command": line, "seconds": seconds, "rc": res.returncode})
            status = "ok" if res.returncode == 0 else f"FAILED rc={res.returncode}"
            print(f"{seconds:8.1f} s  {status:6}  {line}\n{'':18}{last}", flush=True)
            if res.returncode != 0:
                print(res.stderr[-2000:])
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2))
    print(f"total {sum(r['seconds'] for r in rows) / 60:.1f} min; wrote {out}")


if __name__ == "__main__":
    main()
