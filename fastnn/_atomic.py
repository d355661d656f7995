"""Atomic file writes and path checks, shared by fastnn.io (model files) and fastnn.onnx.

A write goes to a temporary file ``.<name>.<host>.<pid>.<random>.tmp`` in the target's directory,
which is flushed, fsync'ed and renamed onto the target (``os.replace``); if anything fails the
temporary file is removed and an existing file at the target is left untouched. A process killed
while saving cannot remove its temporary file, so each write first removes the temporary files of
the same target left by writers on this host whose process no longer exists (a live writer's file,
or one from another host, is never touched). The path is used as given (no suffix is added); a
path that is not a str/PathLike, is empty, holds a NUL character or names a directory raises
TypeError/ValueError naming ``path``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile


def _fspath(path, what: str = "path") -> str:
    if isinstance(path, str):
        out = path
    elif isinstance(path, os.PathLike):
        out = os.fspath(path)
        if isinstance(out, bytes):
            out = os.fsdecode(out)
    else:
        raise TypeError(f"{what} must be a str or os.PathLike, got {type(path).__name__}")
    if not out:
        raise ValueError(f"{what} must not be empty")
    if "\0" in out:
        raise ValueError(f"{what} must not contain a NUL character, got {out!r}")
    if os.path.isdir(out):
        raise ValueError(f"{what} must name a model file, got {out!r}, which is a directory")
    return out


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", os.uname().nodename if hasattr(os, "uname") else "") or "host"


def _pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (a zombie counts as alive; unknown counts as alive)."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: it exists, owned by another user
        return True
    return True


def _remove_stale_temporaries(directory: str, base: str) -> None:
    """Remove the temporary files of target `base` whose writer (this host, pid in the name) is gone."""
    prefix, host = "." + base + ".", _host()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        parts = name[len(prefix):-4].split(".")
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not _pid_alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def _atomic_write(path: str, write) -> None:
    """Run write(fileobj) on a temporary file beside `path`, fsync it, then rename it onto `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save a model to '{path}': directory '{directory}' does not exist")
    try:
        mode = os.stat(path).st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    base = os.path.basename(path)
    _remove_stale_temporaries(directory, base)
    tmp = tempfile.NamedTemporaryFile(mode="wb", delete=False, dir=directory,
                                      prefix=f".{base}.{_host()}.{os.getpid()}.", suffix=".tmp")
    try:
        with tmp:
            write(tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp.name, mode)
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
