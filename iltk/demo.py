"""``make demo``: the main job end to end on a built-in default.

Stage of this commit: every task's scripted expert runs a few seeded episodes through the
control loop; success rates are printed and one video per task is written under runs/demo/.
"""

from __future__ import annotations

import time
from pathlib import Path

from iltk.controllers import ExpertController
from iltk.envs import TASK_IDS, make_vector_env
from iltk.rollout import run_episodes
from iltk.video import record_video


def main(out: str = "runs/demo", episodes: int = 20) -> None:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"{'task':<22}{'episodes':>9}{'success':>9}{'mean len':>10}  video")
    for task in TASK_IDS:
        t0 = time.perf_counter()
        envs = make_vector_env(task, 1)
        eps = run_episodes(envs, ExpertController(), episodes, seed=1000)
        envs.close()
        rate = sum(e.success for e in eps) / len(eps)
        mean_len = sum(e.length for e in eps) / len(eps)
        video = out_dir / f"{task.split('/')[-1].lower()}_expert.mp4"
        record_video(task, ExpertController(), video, episodes=2, seed=0)
        print(
            f"{task:<22}{len(eps):>9}{rate:>9.0%}{mean_len:>10.1f}  {video}"
            f"  ({time.perf_counter() - t0:.1f}s)"
        )


if __name__ == "__main__":
    main()
