"""Whole-file operations: merge, filter, split, delete, edit. Each writes a new file
atomically (or replaces its input through a temporary file: never an edit in place).

An existing output is refused unless ``overwrite``; an output that is one of the inputs
is refused always; the output is locked against other writers while it is written.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from iltk.data.format import DatasetError, dumps, now_iso, settings_differences
from iltk.data.reader import DemoFile
from iltk.data.writer import consolidate_file
from iltk.files import (
    WriterLock,
    atomic_write,
    check_output,
    disk_error,
    ensure_free_space,
    is_disk_error,
)


def _write_atomically(out: Path, build: Callable[[h5py.File], None], size_hint: int = 0) -> None:
    """Write ``out`` through a temporary file, after checking ``size_hint`` bytes fit."""
    out.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            build(f)

    try:
        ensure_free_space(out.parent, size_hint)
        atomic_write(out, write)
    except (OSError, RuntimeError) as err:
        if not is_disk_error(err):
            raise
        raise DatasetError(out, disk_error(err, out.parent).split(": ", 1)[-1]) from None


def copy_demos(
    sources: list[tuple[DemoFile, str]], out: str | Path, masks: dict[str, list[str]] | None = None
) -> list[str]:
    """Write the given demos, renumbered demo_0.., into a new self-contained file."""
    out = Path(out)
    if not sources:
        raise DatasetError(out, "no episodes to write")
    first = sources[0][0]
    names = [f"demo_{i}" for i in range(len(sources))]

    def build(f: h5py.File):
        data = f.create_group("data")
        for k, v in first.data.attrs.items():
            data.attrs[k] = v
        total = 0
        for (src, demo), name in zip(sources, names):
            src.h5.copy(src.group(demo), data, name=name)
            total += src.num_samples(demo)
        data.attrs["total"] = total
        for mask, members in (masks or {}).items():
            f.create_dataset(f"mask/{mask}", data=np.array(members, dtype="S"))

    size = sum(
        int(np.prod(ds.shape)) * ds.dtype.itemsize
        for src, demo in sources
        for ds in _datasets(src.group(demo))
    )
    _write_atomically(out, build, size)
    return names


def _datasets(group: h5py.Group) -> list[h5py.Dataset]:
    out: list[h5py.Dataset] = []
    group.visititems(lambda _n, obj: out.append(obj) if isinstance(obj, h5py.Dataset) else None)
    return out


def merge_files(inputs: list[str | Path], out: str | Path, *, overwrite: bool = False) -> int:
    """Concatenate the demos of several files of the same env into ``out``."""
    out = Path(out)
    if not inputs:
        raise DatasetError(out, "no input files to merge")
    seen: dict[str, Path] = {}
    for p in map(Path, inputs):
        key = str(p.resolve())
        if key in seen:
            raise DatasetError(
                p,
                "is given twice; merging it twice would duplicate its episodes (pass each "
                "file once)",
            )
        seen[key] = p
    check_output(out, overwrite=overwrite, inputs=inputs, what="OUT")
    files = []
    try:
        for p in inputs:
            files.append(DemoFile(p))
        envs = {f.env_name for f in files if f.env_name}
        if len(envs) > 1:
            raise DatasetError(out, f"cannot merge files of different envs: {sorted(envs)}")
        for f in files[1:]:
            diffs = settings_differences(
                files[0].env_args, f.env_args, (f"in {files[0].path.name}", "in this file")
            )
            if diffs:
                raise DatasetError(
                    f.path,
                    "was recorded with other settings ("
                    + "; ".join(diffs)
                    + "); its episodes would not re-simulate in the merged file",
                )
        sources = [(f, d) for f in files for d in f.demos]
        with WriterLock(out):
            copy_demos(sources, out)
        return len(sources)
    finally:
        for f in files:
            f.close()


def filter_file(
    path: str | Path,
    out: str | Path,
    *,
    success_only: bool = False,
    sources: list[str] | None = None,
    min_length: int = 0,
    overwrite: bool = False,
) -> int:
    """Copy the demos of ``path`` that pass the filters into ``out``."""
    check_output(out, overwrite=overwrite, inputs=[path], what="OUT")
    with DemoFile(path) as f:
        keep = []
        for demo in f.demos:
            attrs = f.demo_attrs(demo)
            if success_only and not attrs.get("success", False):
                continue
            if sources and attrs.get("source") not in sources:
                continue
            if f.num_samples(demo) < min_length:
                continue
            keep.append((f, demo))
        if not keep:
            raise DatasetError(path, "no episode passes the filters; nothing written")
        with WriterLock(out):
            copy_demos(keep, out)
        return len(keep)


def split_file(path: str | Path, valid_fraction: float, seed: int = 0) -> dict[str, list[str]]:
    """Write ``mask/train`` and ``mask/valid`` into the file (rewritten atomically)."""
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid fraction must be in (0, 1), got {valid_fraction}")
    path = Path(path)
    with DemoFile(path, validate="structure"):
        pass  # a damaged or foreign file is named here, before anything is rewritten
    check_output(path, append=True, what="FILE")
    with WriterLock(path):
        consolidate_file(path)
        return _split_locked(path, valid_fraction, seed)


def _split_locked(path: Path, valid_fraction: float, seed: int) -> dict[str, list[str]]:
    with DemoFile(path) as f:
        demos = f.demos
        if len(demos) < 2:
            raise DatasetError(path, f"has {len(demos)} demo(s); a split needs at least 2")
        order = np.random.default_rng(seed).permutation(len(demos))
        n_valid = min(len(demos) - 1, max(1, int(round(valid_fraction * len(demos)))))
        valid = sorted((demos[i] for i in order[:n_valid]), key=demos.index)
        train = [d for d in demos if d not in valid]
        masks = {**f.masks, "train": train, "valid": valid}

        def build(dst: h5py.File):
            f.h5.copy(f.data, dst, name="data")
            for mask, members in masks.items():
                dst.create_dataset(f"mask/{mask}", data=np.array(members, dtype="S"))
            dst["data"].attrs["split"] = dumps({"valid_fraction": valid_fraction, "seed": seed})

        size = sum(int(np.prod(ds.shape)) * ds.dtype.itemsize for ds in _datasets(f.data))
        _write_atomically(path.with_name(path.name + ".split"), build, size)
    os.replace(path.with_name(path.name + ".split"), path)
    return {"train": train, "valid": valid}


def _demo_names(f: DemoFile, episodes: list[int | str]) -> list[str]:
    """Demo names from indices (3 -> demo_3) or names; unknown ones refused in one line."""
    names = [e if isinstance(e, str) and not e.isdigit() else f"demo_{int(e)}" for e in episodes]
    missing = [n for n in names if n not in f.demos]
    if missing:
        span = f"{f.demos[0]}..{f.demos[-1]}" if f.demos else "none"
        raise DatasetError(
            f.path, f"has no {', '.join(missing)} (its episodes: {span}, {len(f.demos)} in all)"
        )
    return list(dict.fromkeys(names))


def _rewrite(
    path: Path,
    out: Path | None,
    change: Callable[[DemoFile], tuple[list[str], dict[str, dict], dict]],
    overwrite: bool,
) -> Path:
    """Write ``path``'s demos that ``change`` keeps, with its attribute updates, to ``out``
    (a new file) or over ``path`` itself (a temporary sibling renamed into place: never an
    edit in place). ``change`` returns (kept demos, {demo: attrs to set}, note for the
    file's edit history)."""
    path = Path(path)
    with DemoFile(path, validate="structure"):
        pass  # a damaged or foreign file is named here, before anything is written
    target = path if out is None else Path(out)
    if out is None:
        check_output(path, append=True, what="FILE")
    else:
        check_output(target, overwrite=overwrite, inputs=[path], what="--out")
    with WriterLock(path), WriterLock(target) if target != path else contextlib.nullcontext():
        if out is None:
            consolidate_file(path)
        with DemoFile(path) as f:
            keep, updates, note = change(f)
            masks = {m: [d for d in members if d in keep] for m, members in f.masks.items()}

            def build(dst: h5py.File):
                data = dst.create_group("data")
                for k, v in f.data.attrs.items():
                    data.attrs[k] = v
                total = 0
                for demo in keep:
                    f.h5.copy(f.group(demo), data, name=demo)
                    for k, v in updates.get(demo, {}).items():
                        data[demo].attrs[k] = v
                    total += f.num_samples(demo)
                data.attrs["total"] = total
                history = json.loads(f.attrs.get("edits", "[]") or "[]")
                data.attrs["edits"] = dumps([*history, {"at": now_iso(), **note}])
                for mask, members in masks.items():
                    dst.create_dataset(f"mask/{mask}", data=np.array(members, dtype="S"))

            size = sum(
                int(np.prod(ds.shape)) * ds.dtype.itemsize
                for d in keep
                for ds in _datasets(f.group(d))
            )
            tmp = target.with_name(f".{target.name}.edit")
            _write_atomically(tmp, build, size)
        os.replace(tmp, target)
    return target


def delete_episodes(
    path: str | Path,
    episodes: list[int | str],
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Drop the given episodes (indices or demo names). The others keep their names, masks
    lose the dropped ones, ``total`` and the file's edit history are updated; written to
    ``out`` or over ``path`` through a temporary file. Returns the dropped names."""
    dropped: list[str] = []

    def change(f: DemoFile):
        names = _demo_names(f, episodes)
        if not names:
            raise DatasetError(f.path, "no episodes given (--episodes 3 7 ...)")
        if len(names) == len(f.demos):
            raise DatasetError(
                f.path, f"deleting all {len(names)} episodes would leave an empty file"
            )
        dropped.extend(names)
        return [d for d in f.demos if d not in set(names)], {}, {"deleted": names}

    _rewrite(Path(path), None if out is None else Path(out), change, overwrite)
    return dropped


EDITABLE = ("operator", "task", "success")


def edit_episodes(
    path: str | Path,
    episodes: list[int | str],
    updates: dict,
    *,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> list[str]:
    """Set episode metadata (operator, task text, success flag) on the given episodes (all
    when none are given); written like :func:`delete_episodes`. Returns the edited names."""
    unknown = sorted(set(updates) - set(EDITABLE))
    if unknown or not updates:
        raise ValueError(
            f"editable episode fields are {', '.join(EDITABLE)}"
            + (f"; got {', '.join(unknown)}" if unknown else "; none given")
        )
    values = {k: (bool(v) if k == "success" else str(v)) for k, v in updates.items()}
    edited: list[str] = []

    def change(f: DemoFile):
        names = _demo_names(f, episodes) if episodes else list(f.demos)
        edited.extend(names)
        return list(f.demos), {d: values for d in names}, {"edited": names, "set": values}

    _rewrite(Path(path), None if out is None else Path(out), change, overwrite)
    return edited
