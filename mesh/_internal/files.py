"""Crash-safe file writes, shared by every module that keeps keys or certificates on disk."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path


def atomic_write(path: Path, data: bytes, mode: int, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The temporary file is created with ``mode`` from the start (O_EXCL, with a
    random name so concurrent writers never share it), so a private key is
    never readable by others, not even for an instant. With ``overwrite=False``
    an existing ``path`` raises :class:`FileExistsError` and is left alone.
    Raises :class:`OSError` for anything the file system refuses.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, mode)
    try:
        try:
            # The umask can only narrow the mode; set it exactly.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_replace(tmp, path)
        fsync_directory(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _link_no_replace(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (atomic where hard links work)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # No hard links on this file system: check, then rename (a small race, not a leak).
        if path.exists():
            raise FileExistsError(str(path)) from None
        os.replace(tmp, path)


def fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (where the platform lets us open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
