"""The one episode format of iltk: a superset of robomimic's.

```
/data                attrs: total, env_args (JSON), format_version, iltk_version, created
/data/demo_<i>       attrs: num_samples, source, success, seed, operator, model_file, partial
    obs/<key>  next_obs/<key>  actions  actions_executed  rewards  dones  states
    intervention  + further per-step fields (policy_actions, noise, ...)
/mask/<name>         byte strings of demo names (train, valid, ...)
```
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
SOURCES = ("human", "scripted", "policy", "dagger", "hg-dagger", "dart")
DEMO_RE = re.compile(r"^demo_(\d+)$")
# per-step datasets every iltk episode has (robomimic files may hold only some)
STEP_KEYS = ("actions", "actions_executed", "rewards", "dones", "states", "intervention")
GYM_ENV_TYPE = 2  # robomimic's EnvType.GYM_TYPE


class DatasetError(ValueError):
    """A problem with a dataset file; the message names the file, the demo and the key."""

    def __init__(self, path: Any, message: str, demo: str | None = None, key: str | None = None):
        where = str(path)
        if demo is not None:
            where += f": {demo}"
        if key is not None:
            where += f": key '{key}'"
        super().__init__(f"{where}: {message}")
        self.path, self.demo, self.key = str(path), demo, key


def demo_index(name: str) -> int:
    match = DEMO_RE.match(name)
    return int(match.group(1)) if match else -1


def sorted_demos(names) -> list[str]:
    """Demo group names in numeric order (demo_2 before demo_10); other names dropped."""
    return sorted((n for n in names if DEMO_RE.match(n)), key=demo_index)


def make_env_args(
    env_name: str, env_kwargs: dict[str, Any] | None = None, control_freq: float | None = None
) -> dict[str, Any]:
    """The ``data.attrs["env_args"]`` dict (robomimic keys plus iltk's)."""
    return {
        "env_name": env_name,
        "type": GYM_ENV_TYPE,
        "env_kwargs": dict(env_kwargs or {}),
        "control_freq": control_freq,
    }


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


# env settings that change how recorded episodes re-simulate, with the iltk tasks' defaults
# (render sizes and terminate_on_success do not change the recorded steps)
SIM_DEFAULTS = {"init_spread": 1.0, "obs_mode": "state", "image_size": 84, "control_freq": 20.0}


def sim_settings(env_args: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``env_args`` that decide how its episodes re-simulate."""
    kwargs = dict(env_args.get("env_kwargs") or {})
    if not str(env_args.get("env_name", "")).startswith("iltk/"):
        return kwargs
    out = {k: kwargs.get(k, v) for k, v in SIM_DEFAULTS.items()}
    if env_args.get("control_freq") is not None:
        out["control_freq"] = env_args["control_freq"]
    if "pixels" not in str(out["obs_mode"]):
        out.pop("image_size")
    if str(env_args.get("env_name", "")).startswith("iltk/Panda"):
        out["action_mode"] = kwargs.get("action_mode", "cartesian")
    return out


def settings_differences(
    a: dict[str, Any], b: dict[str, Any], labels: tuple[str, str] = ("there", "here")
) -> list[str]:
    """Human-readable differences between the re-simulation settings of two env_args."""
    was, now = sim_settings(a), sim_settings(b)
    return [
        f"{k}={was.get(k, '(unset)')!r} {labels[0]}, {now.get(k, '(unset)')!r} {labels[1]}"
        for k in sorted(set(was) | set(now))
        if was.get(k) != now.get(k)
    ]


def shard_problem(path: Path, shard: str) -> str:
    """Why the shard ``shard`` (an external link's file name, relative to ``path``'s folder)
    of the index file ``path`` cannot be read, and the way out that keeps every good episode."""
    path = Path(path)
    target = path.parent / shard
    folder = target.parent
    if target.is_file():
        return (
            f"its shard {target} is damaged (not a readable HDF5 file); "
            f"'iltk dataset consolidate {path} --skip-damaged' folds every readable episode "
            f"into the file and sets the damaged ones aside"
        )
    if folder.is_dir():
        return (
            f"its shard {target} is missing from {folder}; "
            f"'iltk dataset consolidate {path} --skip-damaged' folds the other episodes in"
        )
    own = path.name + ".episodes"
    moved = (
        f"this file was renamed or copied from {folder.name.removesuffix('.episodes')!r} and "
        f"reads its episodes from the '{folder.name}' folder"
        if folder.name != own
        else f"its episodes live in the '{folder.name}' folder"
    )
    return (
        f"{moved}, which is not next to it in {path.parent}; put that folder beside the file "
        "(or consolidate the file where it was recorded, then move it)"
    )
