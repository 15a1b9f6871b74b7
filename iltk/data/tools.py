"""Whole-file operations: merge, filter, split. Each writes a new file atomically.

An existing output is refused unless ``overwrite``; an output that is one of the inputs
is refused always; the output is locked against other writers while it is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from iltk.data.format import DatasetError, dumps, settings_differences
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
