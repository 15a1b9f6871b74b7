"""Reading and validating episode files: iltk's own and robomimic low-dim files alike.

Every problem surfaces as a :class:`~iltk.data.format.DatasetError` naming the file, the
demo and the key, never as a traceback from inside h5py.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from iltk.data.format import DatasetError, shard_problem, sorted_demos

PER_STEP_SKIP = ("obs", "next_obs")
log = logging.getLogger("iltk")


class DemoFile:
    """An open episode file.

    Args:
        path: the HDF5 file.
        validate: "full" (structure, lengths, dtypes, and NaN/inf in actions and float
            observations), "structure" (no data scan) or "none".

    Attributes:
        demos: demo names in numeric order.
        env_args: the ``data.attrs["env_args"]`` dict ({} when absent).
        masks: {mask name: [demo names]}.
    """

    def __init__(self, path: str | os.PathLike, validate: str = "full"):
        if validate not in ("full", "structure", "none"):
            raise ValueError(f"validate must be 'full', 'structure' or 'none', got {validate!r}")
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(self.path, "no such file")
        if self.path.is_dir():
            raise DatasetError(self.path, "is a folder, not an HDF5 file")
        if self.path.stat().st_size == 0:
            raise DatasetError(self.path, "is empty (0 bytes)")
        if not h5py.is_hdf5(self.path):
            raise DatasetError(self.path, "is not an HDF5 file")
        try:
            self.h5 = h5py.File(self.path, "r")
        except OSError as err:
            raise DatasetError(self.path, f"cannot be opened as HDF5 ({err})") from None
        try:
            self._load_meta()
            if validate != "none":
                self.validate(scan=validate == "full")
        except BaseException:
            self.h5.close()
            raise

    # --------------------------------------------------------------- metadata
    def _load_meta(self) -> None:
        if "data" not in self.h5 or not isinstance(self.h5["data"], h5py.Group):
            raise DatasetError(
                self.path, "has no 'data' group: not an iltk or robomimic episode file"
            )
        self.data = self.h5["data"]
        self.attrs = {k: _attr(v) for k, v in self.data.attrs.items()}
        raw = self.attrs.get("env_args", "{}")
        try:
            self.env_args: dict[str, Any] = json.loads(raw) if raw else {}
        except (TypeError, json.JSONDecodeError):
            raise DatasetError(self.path, "data.attrs['env_args'] is not valid JSON") from None
        self.demos = sorted_demos(self.data.keys())
        self.ignored = sorted(n for n in self.data.keys() if n not in self.demos)
        if self.ignored:
            log.warning(
                "%s: ignoring %s in /data: episode groups must be named demo_<N> "
                "(rename them to include them)",
                self.path,
                ", ".join(repr(n) for n in self.ignored[:5])
                + (f" and {len(self.ignored) - 5} more" if len(self.ignored) > 5 else ""),
            )
        self.masks: dict[str, list[str]] = {}
        if "mask" in self.h5:
            for name, ds in self.h5["mask"].items():
                self.masks[name] = [_attr(x) for x in ds[()]]

    @property
    def env_name(self) -> str | None:
        return self.env_args.get("env_name")

    def group(self, demo: str) -> h5py.Group:
        try:
            return self.data[demo]
        except KeyError:
            link = self.data.get(demo, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise DatasetError(
                    self.path, shard_problem(self.path, link.filename), demo=demo
                ) from None
            raise DatasetError(self.path, "no such demo", demo=demo) from None

    def num_samples(self, demo: str) -> int:
        g = self.group(demo)
        if "num_samples" in g.attrs:
            return int(g.attrs["num_samples"])
        return int(g["actions"].shape[0])

    def demo_attrs(self, demo: str) -> dict[str, Any]:
        return {k: _attr(v) for k, v in self.group(demo).attrs.items()}

    def external_links(self) -> dict[str, tuple[str, str]]:
        out = {}
        for name in self.demos:
            link = self.data.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                out[name] = (link.filename, link.path)
        return out

    def obs_keys(self, demo: str | None = None) -> list[str]:
        demo = demo or (self.demos[0] if self.demos else None)
        if demo is None or "obs" not in self.group(demo):
            return []
        return sorted(self.group(demo)["obs"].keys())

    def step_keys(self, demo: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Every per-step dataset of a demo ("obs/<key>" etc.) with its shape and dtype."""
        out = {}
        g = self.group(demo)

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj.shape, obj.dtype)

        g.visititems(visit)
        return out

    # ------------------------------------------------------------------- data
    def episode(self, demo: str, keys: list[str] | None = None) -> dict[str, Any]:
        """Load a demo: {"obs": {k: arr}, "next_obs": {...}, "actions": arr, ...}."""
        g = self.group(demo)
        out: dict[str, Any] = {}
        for name in g:
            if name in PER_STEP_SKIP:
                out[name] = {
                    k: self._read(demo, f"{name}/{k}") for k in g[name] if keys is None or k in keys
                }
            elif isinstance(g[name], h5py.Dataset):
                out[name] = self._read(demo, name)
        return out

    def read(self, demo: str, key: str) -> np.ndarray:
        return self._read(demo, key)

    def _read(self, demo: str, key: str) -> np.ndarray:
        try:
            return self.group(demo)[key][()]
        except KeyError:
            raise DatasetError(self.path, "missing", demo=demo, key=key) from None
        except OSError as err:
            raise DatasetError(self.path, f"unreadable ({err})", demo=demo, key=key) from None

    # ------------------------------------------------------------- validation
    def validate(self, scan: bool = True) -> None:
        """Raise DatasetError on the first problem found."""
        for demo in self.demos:
            g = self.group(demo)
            if "actions" not in g:
                raise DatasetError(self.path, "has no actions", demo=demo, key="actions")
            actions = g["actions"]
            if actions.ndim != 2:
                raise DatasetError(
                    self.path,
                    f"must be (T, action_dim), has shape {actions.shape}",
                    demo=demo,
                    key="actions",
                )
            if not np.issubdtype(actions.dtype, np.floating):
                raise DatasetError(
                    self.path,
                    f"must be floating point, is {actions.dtype}",
                    demo=demo,
                    key="actions",
                )
            t = actions.shape[0]
            if "num_samples" in g.attrs and int(g.attrs["num_samples"]) != t:
                raise DatasetError(
                    self.path,
                    f"attribute num_samples={int(g.attrs['num_samples'])} but actions has {t} steps",
                    demo=demo,
                    key="actions",
                )
            keys = self.step_keys(demo)
            for key, (shape, dtype) in keys.items():
                if not shape or shape[0] != t:
                    raise DatasetError(
                        self.path,
                        f"has {shape[0] if shape else 0} steps but actions has {t}",
                        demo=demo,
                        key=key,
                    )
                if dtype.kind not in "biuf":
                    raise DatasetError(
                        self.path, f"has non-numeric dtype {dtype}", demo=demo, key=key
                    )
            if scan:
                for key, (_shape, dtype) in self.step_keys(demo).items():
                    if dtype.kind == "f" and (key == "actions" or key.startswith("obs/")):
                        arr = self._read(demo, key)
                        if not np.all(np.isfinite(arr)):
                            bad = int(np.argwhere(~np.isfinite(arr))[0][0])
                            raise DatasetError(
                                self.path,
                                f"holds NaN or inf (first at step {bad})",
                                demo=demo,
                                key=key,
                            )
                        if key == "actions":
                            check_magnitude(self.path, demo, key, arr)

    # -------------------------------------------------------------- summaries
    def summary(self) -> dict[str, Any]:
        lengths = [self.num_samples(d) for d in self.demos]
        attrs = [self.demo_attrs(d) for d in self.demos]
        sources: dict[str, int] = {}
        operators: dict[str, int] = {}
        for a in attrs:
            sources[a.get("source", "unknown")] = sources.get(a.get("source", "unknown"), 0) + 1
            if a.get("operator"):
                operators[a["operator"]] = operators.get(a["operator"], 0) + 1
        successes = [bool(a["success"]) for a in attrs if "success" in a]
        interventions, steps_with = 0, 0
        amin = amax = None
        for d in self.demos:
            g = self.group(d)
            if "intervention" in g:
                interventions += int(np.sum(g["intervention"][()]))
                steps_with += g["intervention"].shape[0]
            a = g["actions"][()]
            if a.size:
                amin = a.min(0) if amin is None else np.minimum(amin, a.min(0))
                amax = a.max(0) if amax is None else np.maximum(amax, a.max(0))
        keys = self.step_keys(self.demos[0]) if self.demos else {}
        return {
            "file": str(self.path),
            "env_name": self.env_name,
            "format_version": self.attrs.get("format_version"),
            "episodes": len(self.demos),
            "steps": int(sum(lengths)),
            "mean_length": float(np.mean(lengths)) if lengths else 0.0,
            "success_rate": float(np.mean(successes)) if successes else None,
            "sources": sources,
            "operators": operators,
            "keys": {k: {"shape": list(s[1:]), "dtype": str(dt)} for k, (s, dt) in keys.items()},
            "intervention_fraction": interventions / steps_with if steps_with else 0.0,
            "action_min": amin.tolist() if amin is not None else None,
            "action_max": amax.tolist() if amax is not None else None,
            "masks": {k: len(v) for k, v in self.masks.items()},
            "linked_shards": len(self.external_links()),
        }

    def close(self) -> None:
        self.h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_finite(path, demo: str, key: str, arr: np.ndarray) -> None:
    """Raise DatasetError naming the first step holding NaN or inf."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise DatasetError(path, f"holds NaN or inf (first at step {bad})", demo=demo, key=key)


MAX_MAGNITUDE = 1e6  # beyond any physical action or state in sensible units


def check_magnitude(path, demo: str, key: str, arr: np.ndarray) -> None:
    """Raise DatasetError for absurd values (|x| > 1e6): corrupt data or wrong units."""
    if arr.dtype.kind == "f" and arr.size and float(np.abs(arr).max()) > MAX_MAGNITUDE:
        bad = int(np.argwhere(np.abs(arr) > MAX_MAGNITUDE)[0][0])
        raise DatasetError(
            path,
            f"holds absurd values (|x| up to {float(np.abs(arr).max()):.3g} > {MAX_MAGNITUDE:g}, "
            f"first at step {bad}): corrupt data or wrong units",
            demo=demo,
            key=key,
        )


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value
