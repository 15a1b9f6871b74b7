"""Safe file operations every command uses: nothing recorded is lost, nothing is destroyed
without an explicit flag.

- :func:`atomic_write_text` / :func:`write_dir_atomically`: a file or a whole folder (a
  checkpoint) is written under a temporary name, fsynced and renamed into place, so a kill
  at any moment leaves the complete old or the complete new version. Folders are swapped
  with Linux's ``renameat2(RENAME_EXCHANGE)`` (one atomic step); elsewhere with two
  renames that :func:`recover_dir` repairs after a kill between them.
- :class:`WriterLock`: one writer per dataset. An OS lock (``flock``) dies with its
  process, so SIGKILL never leaves a stale lock; a second writer is refused before any
  work, with the holder's pid.
- :func:`check_output`: refuse an output that exists (unless overwriting), that is an
  input, that is a folder where a file is wanted, or that cannot be written, before any work.
- :func:`disk_error`: one clear line for a full disk, a read-only location or a missing
  permission.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: locks are not enforced
    fcntl = None  # type: ignore[assignment]


class OutputError(ValueError):
    """An output that cannot or must not be written; the message says what to do instead."""


class LockedError(OutputError):
    """Another live process is writing the same file."""


# ------------------------------------------------------------------------- fsync
def fsync_file(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a folder (makes renames in it durable); ignored where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A hidden, unique name next to ``path`` (same filesystem, so a rename is atomic)."""
    return path.with_name(f".{path.name}.{tag}{uuid.uuid4().hex[:8]}")


# ----------------------------------------------------------------- atomic writes
def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], durable: bool = True):
    """Call ``write(tmp)`` to fill a temporary sibling, then rename it over ``path``."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        write(tmp)
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    if durable:
        fsync_dir(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes, durable: bool = True) -> None:
    """Write ``data`` to a new file (fsynced when ``durable``); partial files are removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str, durable: bool = True) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text), durable)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the call is unavailable."""
    libc_name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    res = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if res == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _old_name(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.old")


def recover_dir(dst: str | os.PathLike) -> None:
    """Repair a folder swap cut short by a kill, and drop temporary folders left behind.

    Only the two-rename fallback can be interrupted between its steps (``dst`` moved to
    ``.<dst>.old``, the new folder not yet in place): the old folder is moved back.
    """
    dst = Path(dst)
    old = _old_name(dst)
    if old.is_dir():
        if dst.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, dst)
    if dst.parent.is_dir():
        for tmp in dst.parent.glob(f".{dst.name}.tmp*"):
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def write_dir_atomically(
    dst: str | os.PathLike, build: Callable[[Path], None], durable: bool = True
) -> Path:
    """Fill a temporary sibling folder with ``build(tmp)``, fsync it, swap it in for ``dst``.

    Readers (and a process resuming after a kill at any moment) see the complete old
    folder or the complete new one, never a mix.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(dst)
    tmp = temp_sibling(dst)
    try:
        tmp.mkdir()
        build(tmp)
        if durable:
            for f in tmp.rglob("*"):
                if f.is_file():
                    fsync_file(f)
                elif f.is_dir():
                    fsync_dir(f)
            fsync_dir(tmp)
        if not dst.exists():
            os.rename(tmp, dst)
        elif _exchange(tmp, dst):
            pass  # tmp now holds the old folder; removed below
        else:
            old = _old_name(dst)
            os.rename(dst, old)
            os.rename(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
        if durable:
            fsync_dir(dst.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def remove_outputs(paths: Iterable[str | os.PathLike]) -> None:
    """Delete earlier outputs (``--overwrite``), each first renamed out of the way in one
    atomic step: a kill mid-way leaves every output whole or gone, never half deleted."""
    for path in map(Path, paths):
        if not path.exists() and not path.is_symlink():
            continue
        trash = temp_sibling(path, "deleted")
        os.rename(path, trash)
        if trash.is_dir() and not trash.is_symlink():
            shutil.rmtree(trash, ignore_errors=True)
        else:
            trash.unlink(missing_ok=True)


def remove_leftovers(folder: str | os.PathLike) -> None:
    """Drop what a killed ``remove_outputs`` or folder write left in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for p in folder.glob(".*.deleted*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


# ------------------------------------------------------------------------- locks
class WriterLock:
    """An exclusive, process-bound lock on ``<path>.lock`` (one writer per file).

    Args:
        path: the file (or run folder) being written (the lock file sits next to it).
        what: how the refusal names the holder's job (e.g. "recording").
        hint: what to do instead, for the refusal.
    """

    FILE_HINT = "wait for it to finish, or write to another file and merge them later with 'iltk dataset merge'"

    def __init__(
        self, path: str | os.PathLike, what: str = "writing this file", hint: str = FILE_HINT
    ):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.what, self.hint = what, hint
        self._fd: int | None = None

    def acquire(self) -> WriterLock:
        if fcntl is None:  # pragma: no cover
            return self
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                for _ in range(25):  # the holder writes its pid just after it locks
                    if holder is not None:
                        break
                    time.sleep(0.02)
                    holder = _read_pid(fd)
                os.close(fd)
                raise LockedError(
                    f"{self.path}: another iltk process{f' (pid {holder})' if holder else ''} "
                    f"is {self.what}; {self.hint}"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            # the holder we waited on may have removed the lock file: lock the current one
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._fd = fd
                return self
            os.close(fd)
        raise LockedError(f"{self.path}: could not take the writer lock {self.lock_path}")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------- outputs
def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_writable_dir(folder: str | os.PathLike, what: str = "--out") -> Path:
    """Create ``folder`` if needed and prove a file can be created in it, before any work."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: is a file, not a folder; choose another {what}") from None
    except OSError as err:
        raise OutputError(disk_error(err, folder, f"choose another {what}")) from None
    probe = temp_sibling(folder / "probe", "writable")
    try:
        probe.write_bytes(b"")
    except OSError as err:
        raise OutputError(disk_error(err, folder, f"choose another {what}")) from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    return folder


def check_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    append: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    what: str = "the output",
    kind: str = "file",
    create: bool = True,
) -> Path:
    """Refuse, before any work, an output that would destroy something or cannot be written.

    Args:
        path: the output (a file, or a folder when ``kind="folder"``).
        overwrite: an existing output may be replaced (the user said so).
        append: an existing output is added to (e.g. more episodes in a dataset).
        inputs: files the command reads; the output may never be one of them.
        what: the option naming the output, for the messages (e.g. "--out").
        kind: "file" or "folder".
        create: a folder output is created here (False: only its parent, so a folder that
            is written elsewhere and renamed into place does not appear before it is whole).
    """
    path = Path(path)
    for src in inputs:
        if _same(path, Path(src)) or path.resolve() == Path(src).resolve():
            raise OutputError(
                f"{path}: is also an input; write the result to a new file (inputs are never "
                "overwritten)"
            )
    if kind == "file" and path.is_dir():
        raise OutputError(f"{path}: is a folder; {what} must name a file (e.g. {path}/out.hdf5)")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise OutputError(f"{path}: is a file; {what} must name a folder")
    if path.exists() and not overwrite and not append:
        if kind == "folder" and path.is_dir() and not any(path.iterdir()):
            pass  # an empty folder holds nothing to lose
        else:
            raise OutputError(
                f"{path}: already exists; pass --overwrite to replace it, or choose another {what}"
            )
    check_writable_dir(path if kind == "folder" and create else path.parent, what)
    if path.exists() and kind == "file" and not os.access(path, os.W_OK):
        raise OutputError(f"{path}: is not writable; choose another {what}")
    return path


def disk_reason(err: BaseException) -> str:
    """What went wrong in a failed write, in a few words ("the disk is full")."""
    code = _errno_of(err)
    strerror = getattr(err, "strerror", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        custom = strerror and strerror != os.strerror(code)
        return strerror if custom else "the disk is full"
    if code == errno.EROFS:
        return "the location is read-only"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return strerror or str(err).splitlines()[0]


def disk_error(err: BaseException, path: str | os.PathLike, todo: str = "") -> str:
    """One line for an OS error while writing ``path``: what happened and what to do."""
    if not todo and _errno_of(err) in (errno.ENOSPC, errno.EDQUOT):
        todo = "free some space and run the command again"
    return f"{path}: cannot write: {disk_reason(err)}" + (f"; {todo}" if todo else "")


def _errno_of(err: BaseException) -> int | None:
    """The errno of an OSError, or the one HDF5 names in its message ("errno = 28")."""
    code = getattr(err, "errno", None)
    if code is None:
        match = re.search(r"errno = (\d+)", str(err))
        code = int(match.group(1)) if match else None
    return code


def ensure_free_space(folder: str | os.PathLike, nbytes: int) -> None:
    """Raise OSError(ENOSPC) before writing ``nbytes`` into ``folder`` when they cannot fit."""
    free = shutil.disk_usage(folder).free
    need = int(nbytes * 1.05) + (1 << 20)
    if free < need:
        raise OSError(
            errno.ENOSPC,
            f"not enough free space (needs about {need / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB free)",
            str(folder),
        )


def is_disk_error(err: BaseException) -> bool:
    return isinstance(err, (OSError, RuntimeError)) and _errno_of(err) in (
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.EIO,
    )
