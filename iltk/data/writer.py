"""Crash-safe episode writer.

HDF5 files are not crash safe: a process killed while h5py updates a file can leave it
unopenable. So a file is never modified in place while recording. Instead:

- each saved episode goes to its own shard file ``<out>.episodes/demo_<i>.hdf5``, written
  to a temporary name, fsynced, then atomically renamed;
- ``<out>`` itself is a small *index* HDF5 file whose ``data/demo_<i>`` entries are HDF5
  external links into the shards; it is rewritten whole to a temporary file and atomically
  renamed over ``<out>`` after every save (its size grows with the number of episodes, not
  their length);
- an episode is *reported saved* only after the index naming it has been renamed in place.

Killed at any moment (SIGKILL, power loss), ``<out>`` is therefore either the previous
index or the new one, both valid files naming only complete shards. h5py, robomimic and
iltk's reader follow the links transparently. ``close()`` consolidates the index and its
shards into one self-contained file (again via a temporary file and a rename) and removes
the shards. Appending to an existing file hard-links it into the shard folder and indexes
its episodes, so resuming costs no copy.

Saves run on a background thread so that a real-time control loop never waits on disk;
``save()`` returns a future and ``saved`` counts episodes whose save completed.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from iltk.data.format import (
    FORMAT_VERSION,
    SOURCES,
    DatasetError,
    demo_index,
    dumps,
    now_iso,
    settings_differences,
    shard_problem,
    sorted_demos,
)
from iltk.files import (
    WriterLock,
    atomic_write,
    disk_error,
    disk_reason,
    ensure_free_space,
    is_disk_error,
    write_bytes,
)


@dataclass
class _Entry:
    """Where an indexed demo lives: a shard file (relative to the index) and a group path."""

    name: str
    file: str
    group: str
    num_samples: int


@dataclass
class WriterTimings:
    """Seconds the caller's thread spent in the writer, and the background save times."""

    submit_s: list[float] = field(default_factory=list)
    save_s: list[float] = field(default_factory=list)


def hdf5_image(build: Any) -> tuple[bytes, Any]:
    """Build an HDF5 file in memory with ``build(file)``; returns (its bytes, build's result).

    Shards and indexes are built in memory and written with plain ``os.write``: HDF5 never
    writes to the disk itself, so a full disk is one clean ``OSError(ENOSPC)`` on our
    side, never an HDF5 library in a half-flushed state (which printed errors from its
    destructors and crashed the process at exit).
    """
    with h5py.File(f"iltk-{uuid.uuid4().hex}.hdf5", "w", driver="core", backing_store=False) as f:
        result = build(f)
        f.flush()
        return f.id.get_file_image(), result


def dataset_options(arr: np.ndarray) -> dict[str, Any]:
    """h5py options of a per-step array: images are chunked by frame and compressed."""
    if arr.dtype == np.uint8 and arr.ndim >= 3:
        return {"chunks": (1,) + arr.shape[1:], "compression": "lzf"}
    return {}


def write_episode_group(group: h5py.Group, episode: Any, attrs: dict[str, Any]) -> int:
    """Write one episode (a :class:`iltk.rollout.Episode` or a dict of arrays) into ``group``.

    Returns the number of samples.
    """
    ep = episode if isinstance(episode, dict) else _episode_dict(episode)
    actions = np.asarray(ep["actions"], dtype=np.float32)
    if actions.ndim != 2:
        raise ValueError(f"actions must be (T, A), got shape {actions.shape}")
    t = actions.shape[0]
    group.create_dataset("actions", data=actions)
    for key in ("obs", "next_obs"):
        for name, arr in (ep.get(key) or {}).items():
            arr = np.asarray(arr)
            if arr.dtype == np.float64:
                arr = arr.astype(np.float32)
            group.create_dataset(f"{key}/{name}", data=arr, **dataset_options(arr))
    exec_ = ep.get("actions_executed")
    group.create_dataset(
        "actions_executed",
        data=actions if exec_ is None else np.asarray(exec_, dtype=np.float32),
    )
    group.create_dataset("rewards", data=np.asarray(ep.get("rewards", np.zeros(t)), np.float32))
    group.create_dataset("dones", data=np.asarray(ep.get("dones", np.zeros(t)), np.uint8))
    if ep.get("states") is not None:
        group.create_dataset("states", data=np.asarray(ep["states"], dtype=np.float64))
    fields = dict(ep.get("fields") or {})
    intervention = fields.pop("intervention", np.zeros(t, dtype=bool))
    group.create_dataset("intervention", data=np.asarray(intervention, dtype=bool))
    for name, arr in fields.items():
        group.create_dataset(name, data=np.asarray(arr))
    group.attrs["num_samples"] = t
    for k, v in attrs.items():
        group.attrs[k] = v if v is not None else ""
    return t


def _episode_dict(ep) -> dict[str, Any]:
    return {
        "obs": ep.obs,
        "next_obs": ep.next_obs,
        "actions": ep.actions,
        "actions_executed": ep.actions_executed,
        "rewards": ep.rewards,
        "dones": ep.dones,
        "states": ep.states,
        "fields": ep.fields,
    }


class DemoWriter:
    """Appends episodes to an iltk HDF5 file without ever risking the saved ones.

    Args:
        path: the dataset file (created, or appended to when it exists).
        env_args: ``make_env_args(...)`` of the env the episodes come from; checked
            against an existing file's when appending.
        model_file: the MJCF of the scene, stored on every demo.
        operator: default operator name stored on every demo.
        background: save on a background thread (``save()`` returns at once).
        durable: fsync files and folders (survive power loss, not only a killed process).
        overwrite: replace an existing file instead of appending to it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        env_args: dict[str, Any],
        *,
        model_file: str = "",
        operator: str = "",
        background: bool = True,
        durable: bool = True,
        overwrite: bool = False,
    ):
        from iltk import __version__

        self.path = Path(path)
        self.shard_dir = self.path.with_name(self.path.name + ".episodes")
        self.env_args = dict(env_args)
        self.model_file = model_file
        self.operator = operator
        self.durable = durable
        self.iltk_version = __version__
        self.timings = WriterTimings()
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []
        self._masks: dict[str, list[str]] = {}
        self._created = now_iso()
        self._closed = False
        self.saved = 0
        self.failure: BaseException | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one writer per file, taken before anything is touched (a second writer would
        # rewrite the index without the first one's episodes)
        self._writer_lock = WriterLock(self.path).acquire()
        for leftover in self.path.parent.glob(f".{self.path.name}.tmp*"):
            leftover.unlink(missing_ok=True)  # an index being written when a writer was killed
        try:
            if overwrite and self.path.exists():
                self.path.unlink()
                shutil.rmtree(self.shard_dir, ignore_errors=True)
            if self.path.exists():
                self._adopt_existing()
            else:
                shutil.rmtree(self.shard_dir, ignore_errors=True)
                self.shard_dir.mkdir()
                self._write_index()
        except BaseException as err:
            self._writer_lock.release()
            if is_disk_error(err):
                raise DatasetError(self.path, disk_error(err, self.path.parent)) from None
            raise
        self._next = max((demo_index(e.name) for e in self._entries), default=-1) + 1
        self._pool = ThreadPoolExecutor(max_workers=1) if background else None

    # ------------------------------------------------------------------ public
    def save(
        self,
        episode: Any,
        *,
        source: str = "scripted",
        operator: str | None = None,
        success: bool | None = None,
        seed: int | None = None,
        partial: bool | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> Future:
        """Queue an episode for saving; the future's result is its demo name once it is safe."""
        if self._closed:
            raise RuntimeError(f"{self.path}: writer is closed")
        self.check()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        t0 = time.perf_counter()
        name = f"demo_{self._next}"
        self._next += 1
        demo_attrs = {
            "source": source,
            "operator": self.operator if operator is None else operator,
            "success": bool(getattr(episode, "success", False) if success is None else success),
            "seed": int(getattr(episode, "seed", -1) if seed is None else seed),
            "partial": bool(getattr(episode, "partial", False) if partial is None else partial),
            "model_file": self.model_file,
            "created": now_iso(),
            **(attrs or {}),
        }
        if self._pool is None:
            future: Future = Future()
            try:
                future.set_result(self._save_now(name, episode, demo_attrs))
            except BaseException as err:
                future.set_exception(err)
                raise
        else:
            future = self._pool.submit(self._save_now, name, episode, demo_attrs)
        self.timings.submit_s.append(time.perf_counter() - t0)
        return future

    def flush(self) -> None:
        """Wait until every queued episode is saved (raises if a save failed)."""
        if self._pool is not None:
            self._pool.submit(lambda: None).result()
        self.check()

    def check(self) -> None:
        """Raise the first failed save as one clear error (the saved episodes are safe).

        After a failure the writer takes no more episodes: a recorder stops at the first
        one instead of filling a full disk with broken files.
        """
        err = self.failure
        if err is None:
            return
        if isinstance(err, DatasetError):
            raise err
        raise DatasetError(
            self.path,
            f"saving an episode failed: {disk_reason(err)}; all {self.num_demos} episodes in "
            f"{self.path.name} are safe ({self.saved} of them saved by this run); fix that "
            "and run the same command again to add more (numbering continues)",
        ) from None

    def set_masks(self, masks: dict[str, list[str]]) -> None:
        with self._lock:
            self._masks = {k: list(v) for k, v in masks.items()}
            self._write_index()

    def close(self, consolidate: bool = True) -> None:
        """Finish queued saves, then (by default) fold the shards into one file.

        When folding fails (a full disk) the episodes stay in the index and its shard
        folder, a valid dataset as it is; ``iltk dataset consolidate`` folds it later.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            if consolidate and self.failure is None:
                try:
                    consolidate_file(self.path, durable=self.durable)
                except OSError as err:
                    raise DatasetError(
                        self.path,
                        f"{disk_reason(err)} while folding the "
                        f"shards into one file; all {self.num_demos} episodes are safe in "
                        f"{self.path.name} and {self.shard_dir.name}/; run 'iltk dataset "
                        "consolidate' once the cause is fixed",
                    ) from None
        finally:
            self._writer_lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def num_demos(self) -> int:
        return len(self._entries)

    # ----------------------------------------------------------------- private
    def _save_now(self, name: str, episode: Any, attrs: dict[str, Any]) -> str:
        if self.failure is not None:  # queued behind a failed save: do not try again
            raise DatasetError(self.path, f"{name} not saved: an earlier save failed")
        t0 = time.perf_counter()
        shard = self.shard_dir / f"{name}.hdf5"
        try:
            image, n = hdf5_image(
                lambda f: write_episode_group(f.create_group(f"data/{name}"), episode, attrs)
            )
            atomic_write(shard, lambda tmp: write_bytes(tmp, image, durable=False), self.durable)
            with self._lock:
                entry = _Entry(name, f"{self.shard_dir.name}/{shard.name}", f"/data/{name}", n)
                self._entries.append(entry)
                try:
                    self._write_index()
                except BaseException:
                    self._entries.remove(entry)  # the old index on disk does not name it
                    raise
                self.saved += 1
        except BaseException as err:
            if self.failure is None:
                self.failure = err
            raise
        self.timings.save_s.append(time.perf_counter() - t0)
        return name

    def _write_index(self) -> None:
        entries = sorted(self._entries, key=lambda e: demo_index(e.name))
        image, _ = hdf5_image(lambda f: self._build_index(f, entries))
        atomic_write(self.path, lambda tmp: write_bytes(tmp, image, durable=False), self.durable)

    def _build_index(self, f: h5py.File, entries: list[_Entry]) -> None:
        data = f.create_group("data")
        for e in entries:
            data[e.name] = h5py.ExternalLink(e.file, e.group)
        data.attrs["total"] = int(sum(e.num_samples for e in entries))
        data.attrs["env_args"] = dumps(self.env_args)
        data.attrs["format_version"] = FORMAT_VERSION
        data.attrs["iltk_version"] = self.iltk_version
        data.attrs["created"] = self._created
        for mask, names in self._masks.items():
            f.create_dataset(f"mask/{mask}", data=np.array(names, dtype="S"))

    def _check_same_settings(self, old: dict[str, Any]) -> None:
        """Refuse to append episodes made under other env settings.

        The file-level ``env_args`` say how every episode of the file is re-created
        (replay, ``verify``, evaluation after training); episodes recorded with another
        ``init_spread`` or ``obs_mode`` would no longer re-simulate under them.
        """
        diffs = settings_differences(old, self.env_args)
        if diffs:
            raise DatasetError(
                self.path,
                "holds episodes recorded with other settings ("
                + "; ".join(diffs)
                + "); append with the same settings, or write to another file",
            )

    def _adopt_existing(self) -> None:
        """Index the episodes of an existing file (consolidated or a crashed session's)."""
        from iltk.data.reader import DemoFile

        with DemoFile(self.path, validate="structure") as existing:
            old_env = existing.env_args.get("env_name")
            if old_env and old_env != self.env_args.get("env_name"):
                raise DatasetError(
                    self.path,
                    f"holds episodes of {old_env!r}; cannot append episodes of "
                    f"{self.env_args.get('env_name')!r} (use another --out file)",
                )
            self._check_same_settings(existing.env_args)
            self._created = existing.attrs.get("created", self._created)
            self._masks = existing.masks
            links = existing.external_links()
            counts = {d: existing.num_samples(d) for d in existing.demos}
        self.shard_dir.mkdir(exist_ok=True)
        for tmp in self.shard_dir.glob("*.tmp*"):  # leftovers of a killed save
            tmp.unlink(missing_ok=True)
        if links and len(links) == len(counts):
            # a crashed session's index: keep indexing the same shards
            for name, (file, group) in links.items():
                self._entries.append(_Entry(name, file, group, counts[name]))
            return
        if links:
            raise DatasetError(
                self.path, "mixes linked and stored demos; run 'iltk dataset consolidate'"
            )
        # a self-contained file: hard-link it into the shard folder (no copy) and index it
        base = self.shard_dir / f"base-{uuid.uuid4().hex[:8]}.hdf5"
        try:
            os.link(self.path, base)
        except OSError:
            shutil.copy2(self.path, base)
        for name, n in counts.items():
            self._entries.append(
                _Entry(name, f"{self.shard_dir.name}/{base.name}", f"/data/{name}", n)
            )
        self._write_index()


def consolidate_file(
    path: str | os.PathLike, durable: bool = True, skip_damaged: bool = False
) -> list[str]:
    """Fold an index file and its shards into one self-contained file, atomically.

    The free space is checked first: HDF5 that runs out of disk mid-copy leaves the library
    in a broken state, so a copy that cannot fit is refused before it starts (the index and
    its shards stay a valid dataset). An episode whose shard is missing or unreadable stops
    it with a line naming the shard, unless ``skip_damaged``: then the other episodes are
    folded in, the damaged shards are moved to ``<path>.damaged/`` (never deleted) and the
    masks forget the episodes left out. Returns the names of the episodes left out.
    """
    path = Path(path)
    shard_dir = path.with_name(path.name + ".episodes")
    damaged: list[str] = []
    with h5py.File(path, "r") as src:
        links = {
            n: link
            for n in src["data"]
            if isinstance(link := src["data"].get(n, getlink=True), h5py.ExternalLink)
        }
        for name, link in links.items():
            try:
                src["data"][name]
            except (KeyError, OSError):
                if not skip_damaged:
                    raise DatasetError(
                        path, shard_problem(path, link.filename), demo=name
                    ) from None
                damaged.append(name)
        if links:
            size = (
                sum(f.stat().st_size for f in shard_dir.glob("*.hdf5")) if shard_dir.is_dir() else 0
            )
            ensure_free_space(path.parent, size)
            if len(damaged) == len(sorted_demos(src["data"])):
                raise DatasetError(path, "no episode of it is readable; nothing to consolidate")

            def fold(tmp: Path) -> None:
                with h5py.File(tmp, "w") as dst:
                    data = dst.create_group("data")
                    for k, v in src["data"].attrs.items():
                        data.attrs[k] = v
                    total = 0
                    for name in sorted_demos(src["data"]):
                        if name not in damaged:
                            src.copy(src["data"][name], data, name=name)
                            total += int(data[name].attrs.get("num_samples", 0))
                    if damaged and "total" in data.attrs:
                        data.attrs["total"] = total
                    if "mask" in src and not damaged:
                        src.copy(src["mask"], dst, name="mask")
                    elif "mask" in src:
                        mask = dst.create_group("mask")
                        for key, names in src["mask"].items():
                            kept = [n for n in names[()] if _name(n) not in damaged]
                            mask.create_dataset(key, data=np.array(kept, dtype="S"))

            atomic_write(path, fold, durable)
    if damaged:
        aside = path.with_name(path.name + ".damaged")
        aside.mkdir(exist_ok=True)
        for name in damaged:
            shard = path.parent / links[name].filename
            if shard.is_file():
                os.replace(shard, aside / shard.name)
    shutil.rmtree(shard_dir, ignore_errors=True)
    return damaged


def _name(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
