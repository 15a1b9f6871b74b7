"""LeRobot's dataset format both ways: episode files to LeRobotDataset v3.0 folders, and
v3.0 or v2.1 folders back to episode files.

A v3.0 folder (LeRobot 0.4):

```
meta/info.json          codebase_version, fps, features, splits, path templates, totals
meta/stats.json         min, max, mean, std, count, q01..q99 per feature (images per channel)
meta/tasks.parquet      task_index, indexed by the task text
meta/episodes/chunk-000/file-000.parquet
                        per episode: length, tasks, data and video file indices, the
                        episode's rows (dataset_from_index..to) and times in the videos,
                        stats/<feature>/<stat>
data/chunk-000/file-000.parquet
                        per step: observation.state, action, timestamp, frame_index,
                        episode_index, index, task_index, next.reward, next.done, ...
videos/observation.images.<camera>/chunk-000/file-000.mp4
                        every episode's frames one after the other
```

iltk's own fields travel as extra features named ``iltk.<field>`` (``actions_executed``,
``intervention``, the sim ``states``, policy actions, DART noise, ...), and what has no
LeRobot column (demo names and attributes, the last ``next_obs``, the env's settings, the
masks, each field's dtype) in an ``iltk`` section of ``info.json`` and ``iltk/*`` columns
of the episodes table, so an exported file imports back to the same arrays. A folder from
elsewhere imports with what it has: no sim ``states`` (exact replay and ``verify`` say so),
``actions_executed`` equal to the actions, no intervention.

Both directions stream: one episode in memory at a time, parquet row groups and video
frames written as they come. A folder is written under a hidden temporary name and renamed
into place at the end, an episode file through a temporary sibling, so an interrupted run
leaves nothing that looks complete.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from iltk.data.format import FORMAT_VERSION, DatasetError, dumps, now_iso, sorted_demos
from iltk.data.reader import DemoFile
from iltk.data.writer import dataset_options
from iltk.files import WriterLock, atomic_write, check_output, disk_error, is_disk_error

log = logging.getLogger("iltk")

CODEBASE_VERSION = "v3.0"
READ_VERSIONS = ("v3.0", "v2.1")
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
DATA_FILE_MB = 100  # a data parquet file is closed past this size (LeRobot's default)
VIDEO_FILE_MB = 200  # and a video file past this one
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
CODECS = {"h264": "libx264", "av1": "libsvtav1"}
DEFAULT_CRF = {"h264": 18, "av1": 30}
INDEX_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - a dependency of iltk
        raise DatasetError("pyarrow", "is not installed; pip install pyarrow") from None
    return pa, pq


# ------------------------------------------------------------------ the layout
@dataclass
class Column:
    """One LeRobot feature and the episode-file keys it holds (several: concatenated)."""

    feature: str
    keys: list[str]
    widths: list[int]
    dtype: str
    kind: str  # "vector", "scalar" or "video"
    names: list[str] | None = None
    shape: tuple[int, ...] = ()  # a video's (H, W, C)

    @property
    def width(self) -> int:
        return sum(self.widths)

    def info(self) -> dict[str, Any]:
        if self.kind == "video":
            return {
                "dtype": "video",
                "shape": list(self.shape),
                "names": ["height", "width", "channels"],
            }
        shape = [1] if self.kind == "scalar" else [self.width]
        return {"dtype": self.dtype, "shape": shape, "names": self.names}


@dataclass
class Layout:
    columns: list[Column]
    key_dtypes: dict[str, str]  # every exported key's dtype in the episode file
    key_shapes: dict[str, list[int]]  # and its per-step shape
    shifted: list[str]  # next_obs keys that are obs one step on: only their last row is kept

    @property
    def videos(self) -> list[Column]:
        return [c for c in self.columns if c.kind == "video"]


def _is_image(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    return dtype == np.uint8 and len(shape) == 4 and shape[-1] == 3


def plan_layout(f: DemoFile) -> Layout:
    """The LeRobot features of an episode file (from its first demo; every demo must match)."""
    if not f.demos:
        raise DatasetError(f.path, "has no episodes; nothing to export")
    keys = f.step_keys(f.demos[0])
    for demo in f.demos[1:]:
        other = f.step_keys(demo)
        a = {k: (s[1:], str(d)) for k, (s, d) in keys.items()}
        b = {k: (s[1:], str(d)) for k, (s, d) in other.items()}
        if a != b:
            diff = sorted(set(a.items()) ^ set(b.items()))[0][0]
            raise DatasetError(
                f.path,
                f"its keys differ from {f.demos[0]}'s (first at {diff!r}); a LeRobot dataset "
                "has one set of features (filter or split the file first)",
                demo=demo,
            )
    dtypes = {k: str(d) for k, (_s, d) in keys.items()}
    shapes = {k: list(s[1:]) for k, (s, _d) in keys.items()}
    columns: list[Column] = []
    obs = sorted(k for k in keys if k.startswith("obs/"))
    images = [k for k in obs if _is_image(keys[k][0], keys[k][1])]
    lowdim = [k for k in obs if k not in images]
    for k in lowdim:
        if len(keys[k][0]) > 2:
            raise DatasetError(
                f.path,
                f"is a {len(keys[k][0]) - 1}-d per-step array that is not an RGB image; "
                "LeRobot export takes vectors and HxWx3 uint8 images",
                demo=f.demos[0],
                key=k,
            )
    robot = [k for k in lowdim if k.split("/", 1)[1].startswith("robot")]
    groups = (
        [
            ("observation.state", robot),
            ("observation.environment_state", [k for k in lowdim if k not in robot]),
        ]
        if robot and len(robot) < len(lowdim)
        else [("observation.state", lowdim)]
    )
    for feature, members in groups:
        if members:
            columns.append(_vector_column(feature, members, keys))
    for k in images:
        h, w, c = keys[k][0][1:]
        if h % 2 or w % 2:
            raise DatasetError(
                f.path,
                f"images are {h}x{w}; video (yuv420p) needs even sides",
                demo=f.demos[0],
                key=k,
            )
        columns.append(
            Column(
                f"observation.images.{k.split('/', 1)[1]}",
                [k],
                [0],
                "video",
                "video",
                shape=(h, w, c),
            )
        )
    if "actions" in keys:
        columns.append(_vector_column("action", ["actions"], keys))
    if "rewards" in keys:
        columns.append(Column("next.reward", ["rewards"], [1], "float32", "scalar"))
    if "dones" in keys:
        columns.append(Column("next.done", ["dones"], [1], "bool", "scalar"))
    for k in sorted(keys):
        if k.startswith(("obs/", "next_obs/")) or k in ("actions", "rewards", "dones"):
            continue
        if "/" in k or len(keys[k][0]) > 2:
            raise DatasetError(
                f.path,
                "is a per-step field LeRobot export cannot hold (nested, or more than a vector per step)",
                demo=f.demos[0],
                key=k,
            )
        col = _vector_column(f"iltk.{k}", [k], keys)
        columns.append(col)
    shifted = []
    for k in sorted(keys):
        if not k.startswith("next_obs/"):
            continue
        obs_key = "obs/" + k.split("/", 1)[1]
        if obs_key in images or (obs_key in keys and _is_shifted(f, obs_key, k)):
            shifted.append(k)  # (recorded images are always the next step's)
        else:  # a next_obs of its own: a column of its own
            columns.append(_vector_column(f"iltk.{k.replace('/', '.')}", [k], keys))
    return Layout(columns, dtypes, shapes, shifted)


def _is_shifted(f: DemoFile, obs_key: str, next_key: str) -> bool:
    """Whether every demo's ``next_key`` is its ``obs_key`` one step on."""
    for demo in f.demos:
        obs, nxt = f.read(demo, obs_key), f.read(demo, next_key)
        if not np.array_equal(obs[1:], nxt[:-1]):
            return False
    return True


def _vector_column(feature: str, members: list[str], keys) -> Column:
    widths = [int(np.prod(keys[k][0][1:])) if len(keys[k][0]) > 1 else 1 for k in members]
    dtype = str(np.result_type(*[keys[k][1] for k in members]))
    if feature.startswith("observation.") or feature == "action":
        dtype = "float32"  # what LeRobot's policies read (robomimic's float64 rounds here)
    scalar = len(members) == 1 and len(keys[members[0]][0]) == 1 and not feature == "action"
    if len(members) == 1:
        base = members[0].split("/")[-1]
        names = None if scalar else [f"{base}_{i}" for i in range(widths[0])]
    else:
        names = [f"{k.split('/')[-1]}_{i}" for k, w in zip(members, widths) for i in range(w)]
    if feature == "action":
        names = [f"action_{i}" for i in range(widths[0])]
    return Column(feature, members, widths, dtype, "scalar" if scalar else "vector", names)


# ------------------------------------------------------------------- statistics
def feature_stats(x: np.ndarray, image: bool = False) -> dict[str, np.ndarray]:
    """LeRobot's statistics of one episode's feature: per dimension (images: per channel,
    scaled to [0, 1], shape (C, 1, 1), counted in frames as LeRobot counts them)."""
    if image:  # (T, H, W, C) uint8: exact, from each channel's histogram
        out: dict[str, list] = {}
        for ch in range(x.shape[-1]):
            for k, v in _uint8_stats(x[..., ch]).items():
                out.setdefault(k, []).append(v / 255.0)
        stats = {k: np.array(v).reshape(-1, 1, 1) for k, v in out.items()}
        return {**stats, "count": np.array([len(x)])}
    return _stats(x.astype(np.float64).reshape(len(x), -1))


def _uint8_stats(values: np.ndarray) -> dict[str, float]:
    """min, max, mean, std and quantiles (numpy's linear interpolation) of uint8 values."""
    hist = np.bincount(values.reshape(-1), minlength=256).astype(np.float64)
    levels = np.arange(256.0)
    n = hist.sum()
    mean = float((hist * levels).sum() / n)
    cdf = np.cumsum(hist)

    def order(rank):  # the rank-th smallest value (0-based)
        return levels[np.searchsorted(cdf, rank, side="right")]

    out = {
        "min": float(levels[hist > 0][0]),
        "max": float(levels[hist > 0][-1]),
        "mean": mean,
        "std": float(np.sqrt((hist * (levels - mean) ** 2).sum() / n)),
    }
    for q in QUANTILES:
        h = (n - 1) * q
        lo = np.floor(h)
        a, b = order(lo), order(min(lo + 1, n - 1))
        out[f"q{round(q * 100):02d}"] = float(a + (h - lo) * (b - a))
    return out


def _stats(v: np.ndarray) -> dict[str, np.ndarray]:
    out = {
        "min": v.min(0),
        "max": v.max(0),
        "mean": v.mean(0),
        "std": v.std(0),
        "count": np.array([len(v)]),
    }
    for q, value in zip(QUANTILES, np.quantile(v, QUANTILES, axis=0)):
        out[f"q{round(q * 100):02d}"] = value
    return out


def aggregate_stats(per_episode: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Pool episodes' statistics (counts weight the means and quantiles; variances pool
    around the overall mean), as LeRobot aggregates them."""
    counts = np.array([float(s["count"][0]) for s in per_episode])
    total = counts.sum()

    def weigh(key):
        arr = np.stack([s[key] for s in per_episode])
        return (arr * counts.reshape((-1,) + (1,) * (arr.ndim - 1))).sum(0) / total

    mean = weigh("mean")
    var = np.stack([s["std"] ** 2 + (s["mean"] - mean) ** 2 for s in per_episode])
    out = {
        "min": np.min(np.stack([s["min"] for s in per_episode]), 0),
        "max": np.max(np.stack([s["max"] for s in per_episode]), 0),
        "mean": mean,
        "std": np.sqrt((var * counts.reshape((-1,) + (1,) * (var.ndim - 1))).sum(0) / total),
        "count": np.array([int(total)]),
    }
    for k in per_episode[0]:
        if re.fullmatch(r"q\d\d", k):
            out[k] = weigh(k)
    return out


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {f: {k: np.asarray(v).tolist() for k, v in s.items()} for f, s in stats.items()}


# ----------------------------------------------------------------------- video
class _VideoOut:
    """One camera's mp4 files: frames appended episode after episode, a new file when the
    current one passes ``VIDEO_FILE_MB``."""

    def __init__(self, root: Path, key: str, fps: float, codec: str, crf: int, gop: int):
        self.root, self.key, self.fps = root, key, fps
        self.codec, self.crf, self.gop = codec, crf, gop
        self.chunk = self.file = 0
        self.container = None
        self.n = 0  # frames in the current file

    @property
    def path(self) -> Path:
        return self.root / VIDEO_PATH.format(
            video_key=self.key, chunk_index=self.chunk, file_index=self.file
        )

    def _open(self, h: int, w: int) -> None:
        import av

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), "w")
        stream = self.container.add_stream(
            CODECS[self.codec], rate=Fraction(self.fps).limit_denominator(1000)
        )
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(self.crf), "g": str(self.gop)}
        if self.codec == "h264":
            stream.options["bf"] = "0"  # frames leave the encoder in order: exact seeking
        self.stream, self.n = stream, 0

    def episode(self, frames: np.ndarray) -> dict[str, Any]:
        """Append an episode's (T, H, W, 3) frames; its place in the files."""
        import av

        if self.container is not None and self.path.stat().st_size > VIDEO_FILE_MB * 2**20:
            self.close()
            self.file += 1
            if self.file >= CHUNKS_SIZE:
                self.chunk, self.file = self.chunk + 1, 0
        if self.container is None:
            self._open(frames.shape[1], frames.shape[2])
        start = self.n
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.n += 1
        return {
            f"videos/{self.key}/chunk_index": self.chunk,
            f"videos/{self.key}/file_index": self.file,
            f"videos/{self.key}/from_timestamp": start / self.fps,
            f"videos/{self.key}/to_timestamp": self.n / self.fps,
        }

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None


class _VideoIn:
    """Frames of one mp4 file in order, by time (a file may hold several episodes)."""

    def __init__(self, path: Path, fps: float, where: str):
        import av

        if not path.is_file():
            raise DatasetError(path, f"is missing (the video of {where})")
        try:
            self.container = av.open(str(path))
            self.frames = self.container.decode(self.container.streams.video[0])
        except (av.error.FFmpegError, IndexError) as err:
            raise DatasetError(path, f"is not a readable video ({err})") from None
        self.path, self.fps, self.pending = path, fps, None
        self.read = 0
        # one converter for every frame (a frame's own to_ndarray builds one each time: 50x slower)
        self.rgb = av.video.reformatter.VideoReformatter()

    def _next(self):
        if self.pending is not None:
            f, self.pending = self.pending, None
            return f
        try:
            return next(self.frames)
        except StopIteration:
            return None

    def take(self, from_ts: float, n: int, where: str) -> np.ndarray:
        """The ``n`` frames from ``from_ts`` on, as (n, H, W, 3) uint8."""
        tol = 0.5 / self.fps
        out = []
        while len(out) < n:
            f = self._next()
            if f is None:
                raise DatasetError(
                    self.path,
                    f"holds {len(out)} frames of {where} from {from_ts:.3f} s, the data has {n} "
                    "steps: the video and the parquet disagree",
                )
            t = float(f.time) if f.time is not None else self.read / self.fps
            self.read += 1
            if t < from_ts - tol:
                continue  # an earlier episode's frame (episodes not read)
            expected = from_ts + len(out) / self.fps
            if abs(t - expected) > tol:
                raise DatasetError(
                    self.path,
                    f"has a frame at {t:.3f} s where {where} expects {expected:.3f} s: the "
                    "video and the parquet disagree",
                )
            out.append(self.rgb.reformat(f, format="rgb24").to_ndarray())
        return np.stack(out)

    def rest(self) -> int:
        """Frames left after the last one taken."""
        n = 0
        while self._next() is not None:
            n += 1
        return n

    def close(self) -> None:
        self.container.close()


# ---------------------------------------------------------------------- export
@dataclass
class ExportResult:
    out: Path
    episodes: int
    frames: int
    features: list[str]
    videos: list[str] = field(default_factory=list)


def _task_text(env_name: str | None) -> str:
    """The first line of the task's docstring ("a planar point mass goes around...")."""
    if not env_name:
        return "unknown task"
    try:
        import importlib

        import gymnasium as gym

        from iltk.envs import register_tasks

        register_tasks()
        entry = gym.spec(env_name).entry_point
        if isinstance(entry, str):
            module, name = entry.split(":")
            doc = (getattr(importlib.import_module(module), name).__doc__ or "").strip()
            first = doc.split("\n\n")[0].replace("\n", " ")
            text = re.sub(r"^``[^`]+``:\s*", "", first).rstrip(".")
            if text:
                return text
    except Exception:  # noqa: BLE001 - a task text is a label, never a reason to fail
        pass
    return env_name


def _order(f: DemoFile) -> tuple[list[str], dict[str, str]]:
    """Demos in export order, and LeRobot's splits: train before valid when the masks split
    the file in two (LeRobot's splits are ranges of episode indices)."""
    demos = list(f.demos)
    train, valid = f.masks.get("train"), f.masks.get("valid")
    if (
        train
        and valid
        and sorted(train + valid, key=demos.index) == demos
        and not set(train) & set(valid)
    ):
        order = [d for d in demos if d in set(train)] + [d for d in demos if d in set(valid)]
        return order, {"train": f"0:{len(train)}", "valid": f"{len(train)}:{len(demos)}"}
    return demos, {"train": f"0:{len(demos)}"}


def export_lerobot(
    path: str | Path,
    out_dir: str | Path,
    *,
    fps: float | None = None,
    codec: str = "h264",
    crf: int | None = None,
    gop: int = 2,
    task: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExportResult:
    """Write the episode file ``path`` as a LeRobotDataset v3.0 folder ``out_dir``.

    Args:
        fps: frames per second (default: the file's control rate).
        codec: video codec of the cameras, h264 (libx264) or av1 (libsvtav1, LeRobot's default).
        crf: the codec's constant rate factor (lower: larger files, closer frames).
        gop: frames between keyframes (LeRobot's 2 keeps random access cheap).
        task: the task text of episodes that have none (default: the task's description).
        overwrite: replace an existing ``out_dir``.
    """
    from tqdm import tqdm

    from iltk.files import write_dir_atomically

    pa, pq = _pa()
    path, out_dir = Path(path), Path(out_dir)
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, got {codec!r}")
    crf = DEFAULT_CRF[codec] if crf is None else int(crf)
    if not 0 <= crf <= 63 or gop < 1:
        raise ValueError(f"need 0 <= crf <= 63 and gop >= 1, got crf {crf}, gop {gop}")
    check_output(
        out_dir, overwrite=overwrite, inputs=[path], what="OUT_DIR", kind="folder", create=False
    )
    with DemoFile(path) as f:
        rate = fps if fps is not None else f.env_args.get("control_freq")
        if rate is None or not (
            isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0
        ):
            raise DatasetError(path, "records no control rate; pass --fps")
        rate = int(rate) if float(rate).is_integer() else float(rate)
        layout = plan_layout(f)
        order, splits = _order(f)
        default_task = task or _task_text(f.env_name)
        total = sum(f.num_samples(d) for d in order)

        def build(tmp: Path) -> None:
            _write_folder(f, tmp, layout, order, splits, rate, default_task, codec, crf, gop, bar)

        with (
            WriterLock(out_dir, what="exporting to this folder"),
            tqdm(total=total, unit="step", disable=not progress, desc="export") as bar,
        ):
            try:
                write_dir_atomically(out_dir, build)
            except (OSError, RuntimeError) as err:
                if not is_disk_error(err):
                    raise
                raise DatasetError(
                    out_dir, disk_error(err, out_dir.parent).split(": ", 1)[-1]
                ) from None
    return ExportResult(
        out_dir,
        len(order),
        total,
        [c.feature for c in layout.columns],
        [c.feature for c in layout.videos],
    )


def _arrow_column(pa, col: Column, arrays: list[np.ndarray], n: int):
    if col.kind == "scalar":
        v = arrays[0].reshape(n)
        return pa.array(v.astype(bool) if col.dtype == "bool" else v.astype(col.dtype))
    flat = np.concatenate([a.reshape(n, -1) for a in arrays], axis=1).astype(col.dtype)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), col.width)


def _hf_features(columns: dict[str, dict]) -> dict:
    """The ``huggingface`` schema metadata of a data file (datasets' feature types)."""
    out = {}
    for name, info in columns.items():
        value = {"dtype": info["dtype"], "_type": "Value"}
        out[name] = (
            value
            if info["shape"] == [1]
            else {"feature": value, "length": info["shape"][0], "_type": "List"}
        )
    return {"info": {"features": out}}


def _write_folder(f, root, layout, order, splits, fps, default_task, codec, crf, gop, bar) -> None:
    pa, pq = _pa()
    features = {c.feature: c.info() for c in layout.columns}
    for c in layout.videos:
        h, w, ch = c.shape
        features[c.feature]["info"] = {
            "video.height": h,
            "video.width": w,
            "video.codec": codec,
            "video.pix_fmt": "yuv420p",
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": ch,
            "video.crf": crf,
            "video.g": gop,
            "has_audio": False,
        }
    features["next.success"] = {"dtype": "bool", "shape": [1], "names": None}
    index_features = {
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    tabular = {k: v for k, v in {**features, **index_features}.items() if v["dtype"] != "video"}
    meta = {b"huggingface": json.dumps(_hf_features(tabular)).encode()}
    videos = {c.feature: _VideoOut(root, c.feature, fps, codec, crf, gop) for c in layout.videos}
    tasks: dict[str, int] = {}
    episodes, stats_per_episode = [], []
    writer, data_chunk, data_file, index = None, 0, 0, 0
    data_path = None
    try:
        for ep_index, demo in enumerate(order):
            attrs = f.demo_attrs(demo)
            n = f.num_samples(demo)
            text = str(attrs.get("task") or default_task)
            task_index = tasks.setdefault(text, len(tasks))
            columns, ep_stats, ep_row = {}, {}, {}
            for col in layout.columns:
                arrays = [f.read(demo, k) for k in col.keys]
                if col.kind == "video":
                    ep_row.update(videos[col.feature].episode(arrays[0]))
                    ep_stats[col.feature] = feature_stats(arrays[0], image=True)
                    continue
                columns[col.feature] = _arrow_column(pa, col, arrays, n)
                flat = np.concatenate([a.reshape(n, -1) for a in arrays], axis=1)
                ep_stats[col.feature] = feature_stats(flat)
            success = np.zeros(n, bool)
            if n:
                success[-1] = bool(attrs.get("success", False))
            columns["next.success"] = pa.array(success)
            ep_stats["next.success"] = feature_stats(success.reshape(n, 1))
            frame = np.arange(n, dtype=np.int64)
            columns["timestamp"] = pa.array((frame / fps).astype(np.float32))
            columns["frame_index"] = pa.array(frame)
            columns["episode_index"] = pa.array(np.full(n, ep_index, np.int64))
            columns["index"] = pa.array(index + frame)
            columns["task_index"] = pa.array(np.full(n, task_index, np.int64))
            for k in INDEX_FEATURES:
                ep_stats[k] = feature_stats(columns[k].to_numpy().reshape(n, 1))
            table = pa.table(columns).replace_schema_metadata(meta)
            if writer is not None and data_path.stat().st_size > DATA_FILE_MB * 2**20:
                writer.close()
                writer, data_file = None, data_file + 1
                if data_file >= CHUNKS_SIZE:
                    data_chunk, data_file = data_chunk + 1, 0
            if writer is None:
                data_path = root / DATA_PATH.format(chunk_index=data_chunk, file_index=data_file)
                data_path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(data_path, table.schema)
            writer.write_table(table)
            final = {}
            if n:
                for key in layout.shifted:
                    final[key] = f.group(demo)[key][n - 1]
            buf = io.BytesIO()
            np.savez(buf, **final)
            episodes.append(
                {
                    "episode_index": ep_index,
                    "tasks": [text],
                    "length": n,
                    "data/chunk_index": data_chunk,
                    "data/file_index": data_file,
                    "dataset_from_index": index,
                    "dataset_to_index": index + n,
                    **ep_row,
                    "iltk/demo": demo,
                    "iltk/attrs": dumps(attrs),
                    "iltk/final_next_obs": buf.getvalue(),
                    **{
                        f"stats/{feat}/{k}": np.asarray(v).tolist()
                        for feat, s in ep_stats.items()
                        for k, v in s.items()
                    },
                    "meta/episodes/chunk_index": 0,
                    "meta/episodes/file_index": 0,
                }
            )
            stats_per_episode.append(ep_stats)
            index += n
            bar.update(n)
    finally:
        if writer is not None:
            writer.close()
        for v in videos.values():
            v.close()
    ep_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episodes), ep_path)
    _write_tasks(pa, pq, root / "meta" / "tasks.parquet", tasks)
    stats = {k: aggregate_stats([s[k] for s in stats_per_episode]) for k in stats_per_episode[0]}
    (root / "meta" / "stats.json").write_text(json.dumps(_jsonable(stats), indent=2))
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": None,
        "total_episodes": len(order),
        "total_frames": index,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_MB,
        "video_files_size_in_mb": VIDEO_FILE_MB,
        "fps": fps,
        "splits": splits,
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if layout.videos else None,
        "features": {**features, **index_features},
        "iltk": {
            "format_version": FORMAT_VERSION,
            "env_args": f.env_args,
            "file_attrs": {k: v for k, v in f.attrs.items() if k not in ("env_args", "total")},
            "masks": f.masks,
            "keys": {
                k: {"dtype": layout.key_dtypes[k], "shape": layout.key_shapes[k]}
                for k in layout.key_dtypes
            },
            "columns": {c.feature: {"keys": c.keys, "widths": c.widths} for c in layout.columns},
            "source": str(f.path),
        },
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))


def _write_tasks(pa, pq, path: Path, tasks: dict[str, int]) -> None:
    """meta/tasks.parquet as pandas writes it (LeRobot reads it with pandas: the task text
    is the frame's index)."""
    table = pa.table(
        {
            "task_index": pa.array(list(tasks.values()), pa.int64()),
            "__index_level_0__": pa.array(list(tasks), pa.large_string()),
        }
    )
    pandas_meta = {
        "index_columns": ["__index_level_0__"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": "__index_level_0__",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    pq.write_table(
        table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()}), path
    )


# ---------------------------------------------------------------------- import
@dataclass
class LeRobotFolder:
    """A LeRobot dataset folder opened for reading (v3.0 or v2.1), checked on open."""

    root: Path
    info: dict
    episodes: list[dict]
    tasks: dict[int, str]

    @property
    def version(self) -> str:
        return str(self.info.get("codebase_version"))

    @property
    def fps(self) -> float:
        return float(self.info["fps"])

    @property
    def features(self) -> dict[str, dict]:
        return self.info.get("features") or {}


def open_lerobot(root: str | Path) -> LeRobotFolder:
    """Open and check a LeRobot dataset folder; DatasetError names what is wrong."""
    pa, pq = _pa()
    root = Path(root)
    if not root.exists():
        raise DatasetError(root, "no such folder")
    if not root.is_dir():
        raise DatasetError(root, "is a file, not a LeRobot dataset folder")
    info_path = root / "meta" / "info.json"
    if not info_path.is_file():
        raise DatasetError(root, "is not a LeRobot dataset (no meta/info.json)")
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DatasetError(info_path, f"is not valid JSON ({err})") from None
    if not isinstance(info, dict) or "features" not in info or "fps" not in info:
        raise DatasetError(info_path, "has no features or fps: not a LeRobot info.json")
    version = str(info.get("codebase_version"))
    if version not in READ_VERSIONS:
        raise DatasetError(
            info_path,
            f"codebase_version {version!r} is not one iltk reads ({', '.join(READ_VERSIONS)}); "
            "convert it with LeRobot's own converter first",
        )
    try:
        if version == "v3.0":
            files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
            if not files:
                raise DatasetError(root, "has no meta/episodes/*/*.parquet (v3.0 episode table)")
            rows = []
            for p in files:
                t = pq.read_table(p)
                keep = [c for c in t.column_names if not c.startswith("stats/")]
                rows += t.select(keep).to_pylist()
            tasks_path = root / "meta" / "tasks.parquet"
            tasks = {}
            if tasks_path.is_file():
                t = pq.read_table(tasks_path)
                text_col = (
                    "task"
                    if "task" in t.column_names
                    else next((c for c in t.column_names if c != "task_index"), None)
                )
                if text_col is not None:
                    for i, text in zip(
                        t.column("task_index").to_pylist(), t.column(text_col).to_pylist()
                    ):
                        tasks[int(i)] = str(text)
        else:
            ep_path = root / "meta" / "episodes.jsonl"
            if not ep_path.is_file():
                raise DatasetError(root, "has no meta/episodes.jsonl (v2.1 episode table)")
            rows = [json.loads(line) for line in ep_path.read_text().splitlines() if line.strip()]
            tasks = {}
            tasks_path = root / "meta" / "tasks.jsonl"
            if tasks_path.is_file():
                for line in tasks_path.read_text().splitlines():
                    if line.strip():
                        t = json.loads(line)
                        tasks[int(t["task_index"])] = str(t["task"])
    except (OSError, pa.ArrowException, json.JSONDecodeError, KeyError) as err:
        raise DatasetError(root, f"has an unreadable episode or task table ({err})") from None
    rows.sort(key=lambda r: r["episode_index"])
    return LeRobotFolder(root, info, rows, tasks)


@dataclass
class ImportResult:
    out: Path
    episodes: int
    frames: int
    keys: list[str]
    from_iltk: bool


def _numpy(col, n: int, info: dict) -> np.ndarray:
    """A parquet column as (n,) or (n, width) numpy."""
    pa, _ = _pa()
    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    if (
        pa.types.is_fixed_size_list(col.type)
        or pa.types.is_list(col.type)
        or pa.types.is_large_list(col.type)
    ):
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(n, -1)
    arr = col.to_numpy(zero_copy_only=False)
    return arr.reshape(n)


def import_lerobot(
    src: str | Path,
    out: str | Path,
    *,
    env_name: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ImportResult:
    """Write the LeRobot dataset folder ``src`` (v3.0 or v2.1) as the episode file ``out``.

    Args:
        env_name: the task the episodes belong to (default: the one an iltk export records;
            a folder from elsewhere names none, and training then evaluates on no env).
        overwrite: replace an existing ``out``.
    """
    from tqdm import tqdm

    from iltk import __version__

    pa, pq = _pa()
    out = Path(out)
    check_output(out, overwrite=overwrite, what="OUT")
    folder = open_lerobot(src)
    meta = folder.info.get("iltk") or {}
    features = folder.features
    if "action" not in features:
        raise DatasetError(folder.root, "has no 'action' feature; an episode file needs actions")
    total = sum(int(r["length"]) for r in folder.episodes)
    check_files(folder)

    def build(tmp: Path) -> None:
        with (
            h5py.File(tmp, "w") as h5,
            tqdm(total=total, unit="step", disable=not progress, desc="import") as bar,
        ):
            names = _write_episodes(folder, h5, meta, bar)
            data = h5["data"]
            env_args = dict(meta.get("env_args") or {})
            if env_name:
                env_args["env_name"] = env_name
            env_args.setdefault("env_name", env_name or "")
            env_args.setdefault("type", 2)
            env_args.setdefault("env_kwargs", {})
            env_args.setdefault("control_freq", folder.fps)
            for k, v in (meta.get("file_attrs") or {}).items():
                data.attrs[k] = v
            data.attrs["env_args"] = dumps(env_args)
            data.attrs["total"] = total
            data.attrs.setdefault("format_version", FORMAT_VERSION)
            data.attrs.setdefault("iltk_version", __version__)
            data.attrs.setdefault("created", now_iso())
            data.attrs["imported_from"] = dumps(
                {"path": str(folder.root), "codebase_version": folder.version, "at": now_iso()}
            )
            masks = meta.get("masks") if meta else None
            if masks is None:
                masks = _masks_from_splits(folder, names)
            for mask, members in masks.items():
                h5.create_dataset(f"mask/{mask}", data=np.array(members, dtype="S"))

    with WriterLock(out):
        try:
            atomic_write(out, build)
        except (OSError, RuntimeError) as err:
            if not is_disk_error(err):
                raise
            raise DatasetError(out, disk_error(err, out.parent).split(": ", 1)[-1]) from None
    with DemoFile(out) as f:
        keys = sorted(f.step_keys(f.demos[0])) if f.demos else []
    return ImportResult(out, len(folder.episodes), total, keys, bool(meta))


def _video_path(folder: LeRobotFolder, key: str, row: dict) -> Path:
    if folder.version == "v3.0":
        return folder.root / (folder.info.get("video_path") or VIDEO_PATH).format(
            video_key=key,
            chunk_index=int(row.get(f"videos/{key}/chunk_index", 0)),
            file_index=int(row.get(f"videos/{key}/file_index", 0)),
        )
    ep = int(row["episode_index"])
    chunk = ep // int(folder.info.get("chunks_size", CHUNKS_SIZE))
    return folder.root / folder.info["video_path"].format(
        episode_chunk=chunk, video_key=key, episode_index=ep
    )


def _data_path(folder: LeRobotFolder, row: dict) -> Path:
    if folder.version == "v3.0":
        return folder.root / (folder.info.get("data_path") or DATA_PATH).format(
            chunk_index=int(row.get("data/chunk_index", 0)),
            file_index=int(row.get("data/file_index", 0)),
        )
    ep = int(row["episode_index"])
    chunk = ep // int(folder.info.get("chunks_size", CHUNKS_SIZE))
    return folder.root / folder.info["data_path"].format(episode_chunk=chunk, episode_index=ep)


def check_files(folder: LeRobotFolder) -> None:
    """Before anything is written: every data and video file the episode table names is
    there, and each video holds as many frames as its episodes (as its container says)."""
    import av

    for row in folder.episodes:
        path = _data_path(folder, row)
        if not path.is_file():
            raise DatasetError(path, f"is missing (the data of episode {row['episode_index']})")
    for key, spec in folder.features.items():
        if spec.get("dtype") != "video":
            continue
        ends: dict[Path, tuple[float, int]] = {}
        for row in folder.episodes:
            path = _video_path(folder, key, row)
            end = float(row.get(f"videos/{key}/to_timestamp", int(row["length"]) / folder.fps))
            if folder.version != "v3.0":
                end = int(row["length"]) / folder.fps
            last = ends.get(path, (0.0, -1))
            ends[path] = (max(last[0], end), int(row["episode_index"]) if last[1] < 0 else last[1])
        for path, (end, first_ep) in ends.items():
            if not path.is_file():
                raise DatasetError(path, f"is missing (the video of episode {first_ep})")
            try:
                with av.open(str(path)) as c:
                    frames = int(c.streams.video[0].frames)
            except (av.error.FFmpegError, IndexError) as err:
                raise DatasetError(path, f"is not a readable video ({err})") from None
            want = round(end * folder.fps)
            if frames and frames != want:
                raise DatasetError(
                    path,
                    f"holds {frames} frames, its episodes {want} (from episode {first_ep} on): "
                    "the video and the parquet disagree",
                )


def _masks_from_splits(folder: LeRobotFolder, names: list[str]) -> dict[str, list[str]]:
    """LeRobot's splits ("train": "0:90") as masks of the imported demos."""
    masks = {}
    for split, spec in (folder.info.get("splits") or {}).items():
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(spec))
        if not m:
            log.warning("%s: split %r = %r is not a range a:b; left out", folder.root, split, spec)
            continue
        a, b = int(m.group(1)), int(m.group(2))
        masks[split] = names[a:b]
    if set(masks) == {"train"} and len(masks["train"]) == len(names):
        return {}  # the whole dataset: no mask says more than the file
    return masks


def _episode_rows(folder: LeRobotFolder) -> Iterator[tuple[dict, Any]]:
    """Each episode's row of the episode table with its parquet table slice, in order,
    one data file in memory at a time."""
    pa, pq = _pa()
    cache: dict[Path, Any] = {}
    for row in folder.episodes:
        ep = int(row["episode_index"])
        n = int(row["length"])
        path = _data_path(folder, row)
        if path not in cache:
            if not path.is_file():
                raise DatasetError(path, f"is missing (the data of episode {ep})")
            cache.clear()
            try:
                cache[path] = pq.read_table(path)
            except (OSError, pa.ArrowException) as err:
                raise DatasetError(path, f"is not a readable parquet file ({err})") from None
        table = cache[path]
        mask = np.asarray(table.column("episode_index").to_numpy(zero_copy_only=False)) == ep
        rows = np.flatnonzero(mask)
        if len(rows) != n:
            raise DatasetError(
                path, f"holds {len(rows)} rows of episode {ep}, the episode table says {n}"
            )
        if len(rows) and rows[-1] - rows[0] + 1 != n:
            raise DatasetError(path, f"episode {ep}'s rows are not contiguous")
        yield row, table.slice(int(rows[0]) if n else 0, n)


def _write_episodes(folder: LeRobotFolder, h5: h5py.File, meta: dict, bar) -> list[str]:
    """Write every episode of ``folder`` into /data of ``h5``; returns the demo names."""
    images = [k for k, v in folder.features.items() if v.get("dtype") == "image"]
    if images:
        raise DatasetError(
            folder.root,
            f"stores {', '.join(images)} as images in the parquet files; iltk imports video "
            "features (LeRobot's default) only",
        )
    videos = _VideoReaders(folder)
    data = h5.create_group("data")
    names = []
    try:
        for i, (row, table) in enumerate(_episode_rows(folder)):
            n, ep = int(row["length"]), int(row["episode_index"])
            attrs = json.loads(row["iltk/attrs"]) if row.get("iltk/attrs") else {}
            name = row.get("iltk/demo") or f"demo_{i}"
            g = data.create_group(name)
            arrays = _episode_arrays(folder, meta, row, table, videos)
            if "actions" not in arrays:
                raise DatasetError(folder.root, f"episode {ep} has no action column")
            key_info = meta.get("keys") or {}
            for key, arr in arrays.items():
                _store(g, key, _restored(key, arr, key_info.get(key), n))
            if not meta:
                _complete_foreign(g, attrs, row, table, n)
            if row.get("iltk/final_next_obs"):
                with np.load(io.BytesIO(row["iltk/final_next_obs"])) as z:
                    for key in z.files:  # next_obs/<k>: obs/<k> one step on, then the last one
                        obs_key = "obs/" + key.split("/", 1)[1]
                        if obs_key in g:
                            nxt = np.concatenate([g[obs_key][1:], z[key][None]])
                            _store(
                                g, key, nxt.astype(key_info.get(key, {}).get("dtype", nxt.dtype))
                            )
            attrs["num_samples"] = n
            for k, v in attrs.items():
                g.attrs[k] = v if v is not None else ""
            names.append(name)
            bar.update(n)
        videos.check_all_read()
    finally:
        videos.close()
    order = sorted_demos(names)
    return order if len(order) == len(names) else names


class _VideoReaders:
    """The open video of each camera; a camera's file is checked to be read to its end
    when the next episode moves on to another file."""

    def __init__(self, folder: LeRobotFolder):
        self.folder, self.open = folder, {}

    def frames(self, key: str, row: dict) -> np.ndarray:
        path = _video_path(self.folder, key, row)
        ep, n = int(row["episode_index"]), int(row["length"])
        current = self.open.get(key)
        if current is None or current.path != path:
            if current is not None:
                _check_rest(current)
                current.close()
            current = self.open[key] = _VideoIn(path, self.folder.fps, f"episode {ep}")
        from_ts = float(row.get(f"videos/{key}/from_timestamp", 0.0))
        return current.take(from_ts, n, f"episode {ep}")

    def check_all_read(self) -> None:
        for reader in self.open.values():
            _check_rest(reader)

    def close(self) -> None:
        for reader in self.open.values():
            reader.close()


def _episode_arrays(folder, meta, row, table, videos) -> dict[str, np.ndarray]:
    """One episode's arrays by episode-file key (an iltk export's columns split back into
    the keys they concatenate)."""
    n, ep = int(row["length"]), int(row["episode_index"])
    col_map = meta.get("columns") or {}
    arrays: dict[str, np.ndarray] = {}
    for feat, spec in folder.features.items():
        if feat in INDEX_FEATURES or feat == "next.success" or spec.get("dtype") == "string":
            continue
        keys = (col_map.get(feat) or {}).get("keys")
        if spec.get("dtype") == "video":
            arrays[(keys or [_obs_key(feat)])[0]] = videos.frames(feat, row)
            continue
        if feat not in table.column_names:
            raise DatasetError(
                folder.root, f"feature {feat!r} has no column in the data of episode {ep}"
            )
        values = _numpy(table.column(feat), n, spec)
        width = int(np.prod(spec.get("shape") or [1]))
        if values.size != n * width:
            raise DatasetError(
                folder.root,
                f"feature {feat!r} is declared {list(spec.get('shape') or [1])} in "
                f"meta/info.json but episode {ep}'s data holds {values.size // max(n, 1)} "
                "values a step",
            )
        if keys:
            flat, start = values.reshape(n, -1), 0
            for key, width in zip(keys, col_map[feat]["widths"]):
                arrays[key] = flat[:, start : start + width]
                start += width
        else:
            arrays[_foreign_key(feat)] = values
    return arrays


def _restored(key: str, arr: np.ndarray, want: dict | None, n: int) -> np.ndarray:
    """An array in the dtype and shape the episode file had (an iltk export records them),
    or in iltk's conventions (float32 observations and actions, uint8 dones)."""
    arr = np.asarray(arr)
    if want:
        return arr.reshape([n, *want["shape"]]).astype(want["dtype"])
    if key == "dones":
        return arr.astype(np.uint8)
    if (key in ("actions", "rewards") or key.startswith("obs/")) and arr.dtype == np.float64:
        return arr.astype(np.float32)
    return arr


def _store(group: h5py.Group, key: str, arr: np.ndarray) -> None:
    group.create_dataset(key, data=arr, **dataset_options(arr))


def _complete_foreign(g: h5py.Group, attrs: dict, row: dict, table, n: int) -> None:
    """A folder from elsewhere: the per-step fields every iltk episode has (actions
    executed as labelled, no reward, done at the end, no intervention) and its metadata."""
    if "actions_executed" not in g:
        g.create_dataset("actions_executed", data=g["actions"][()])
    if "rewards" not in g:
        g.create_dataset("rewards", data=np.zeros(n, np.float32))
    if "dones" not in g:
        g.create_dataset("dones", data=(np.arange(n) == n - 1).astype(np.uint8))
    if "intervention" not in g:
        g.create_dataset("intervention", data=np.zeros(n, bool))
    if "next.success" in table.column_names and n:
        success = table.column("next.success").to_numpy(zero_copy_only=False)
        attrs.setdefault("success", bool(np.asarray(success).any()))
    if row.get("tasks"):
        attrs.setdefault("task", str(row["tasks"][0]))
    attrs.setdefault("source", "human")
    attrs.setdefault("lerobot_episode_index", int(row["episode_index"]))


def _check_rest(reader: _VideoIn) -> None:
    extra = reader.rest()
    if extra:
        raise DatasetError(
            reader.path,
            f"holds {extra} frames past the last episode it is named for: the video and the parquet disagree",
        )


def _obs_key(feature: str) -> str:
    """observation.images.front -> obs/front; observation.state -> obs/state."""
    name = feature.removeprefix("observation.").removeprefix("images.")
    return f"obs/{name}"


def _foreign_key(feature: str) -> str:
    """A LeRobot feature's key in the episode file."""
    if feature == "action":
        return "actions"
    if feature == "next.reward":
        return "rewards"
    if feature == "next.done":
        return "dones"
    if feature.startswith("observation."):
        return _obs_key(feature)
    if feature.startswith("iltk."):
        return feature.removeprefix("iltk.")
    return feature.replace("/", "_")
