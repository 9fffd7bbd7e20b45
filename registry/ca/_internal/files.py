"""Atomic, permission-aware file writes for the CA's data directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mesh._internal import files
from registry.ca.errors import CAKeyStoreError


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) if needed; refuse one that others can read or write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        raise CAKeyStoreError(
            f"cannot create the CA directory {path}: {exc.strerror}",
            hint="check that the data directory exists and is writable by this user",
        ) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise CAKeyStoreError(
            f"{path} is not a directory", hint="move it away; the CA keeps its keys there"
        )
    if st.st_mode & 0o077:
        raise CAKeyStoreError(
            f"the CA directory {path} is accessible by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o})",
            hint=f"run: chmod 700 {path}",
        )


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half;
    a private key is never readable by others, not even for an instant."""
    files.atomic_write(path, data, mode)


def read_private_file(path: Path) -> bytes:
    """Read a secret file, refusing it when group/other may read or write it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise CAKeyStoreError(
            f"the CA key file {path} is missing",
            hint="restore it from backup; without it the CA cannot sign",
        ) from exc
    except OSError as exc:
        raise CAKeyStoreError(
            f"cannot open the CA key file {path}: {exc.strerror}",
            hint="it must be a regular file (not a symlink) owned by this user",
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CAKeyStoreError(f"{path} is not a regular file", hint="restore the key file")
        if st.st_mode & 0o077:
            raise CAKeyStoreError(
                f"the CA key file {path} is readable or writable by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o})",
                hint=f"run: chmod 600 {path}  (and consider the key exposed: rotate the CA)",
            )
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise CAKeyStoreError(
                f"the CA key file {path} is owned by uid {st.st_uid}, not by this user",
                hint=f"run the registry as that user, or: chown $(id -u) {path}",
            )
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
