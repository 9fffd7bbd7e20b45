"""An exclusive lock between processes on one host (``flock`` on a file).

The kernel frees the lock when its holder exits, however it exits, so a
crashed process never leaves it taken. One ``FileLock`` object is shared by
the threads of a process (they queue on a thread lock, then the process
queues on the file); two objects on the same path exclude each other too,
since each has its own open file.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A waiter polls: first often (a transaction holds the lock for milliseconds),
# then less often, never longer than this between tries.
_POLL_START, _POLL_MAX = 0.0002, 0.005


class FileLock:
    def __init__(self, path: Path, *, keep_open: bool = True) -> None:
        """``keep_open=False`` closes the file at each release: for a lock that
        lives as long as the process but is taken now and then, so that no
        descriptor stays open for it."""
        self.path = path
        self._keep_open = keep_open
        self._fd: int | None = None
        self._held = False
        # Threads of this process queue here; processes queue on the flock.
        self._guard = threading.Lock()

    @property
    def held(self) -> bool:
        return self._held

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never waits."""
        return self.acquire(timeout=0.0)

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds (None: as long as it takes).

        Returns False when the time ran out. A plain blocking ``flock`` cannot
        time out, and a frozen holder must not freeze every waiter with it.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._guard.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            pause = _POLL_START
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    self._held = True
                    return True
                except BlockingIOError:
                    pass
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(pause)
                pause = min(pause * 2, _POLL_MAX)
        except BaseException:
            self._close_unless_kept()
            self._guard.release()
            raise
        self._close_unless_kept()
        self._guard.release()
        return False

    def _close_unless_kept(self) -> None:
        if not self._keep_open and self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            assert self._fd is not None
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._close_unless_kept()
            self._guard.release()

    def close(self) -> None:
        """Release the lock if held and close the file."""
        self.release()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    @contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[bool]:
        """``with lock.hold(t) as got:`` holds the lock for the block when ``got``."""
        got = self.acquire(timeout)
        try:
            yield got
        finally:
            if got:
                self.release()
