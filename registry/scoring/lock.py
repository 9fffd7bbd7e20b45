"""Only one recompute at a time: across replicas on PostgreSQL, across threads everywhere.

PostgreSQL: a session-level advisory lock held on a dedicated connection for
the whole run, so a second replica's scheduler skips its turn (``try``) and a
manual recompute waits for the running one. SQLite: the same between the
processes on the database file (``--workers``), with a lock file beside it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from registry.filelock import FileLock

#: Advisory lock key: the first 8 bytes of sha256("trustmesh.recompute"), as a signed int64.
ADVISORY_KEY = 0x2F1C6B3A5D7E9041


class RecomputeLock:
    def __init__(self, store: Any) -> None:
        self._store = store
        self._local = threading.Lock()
        database = store.engine.url.database if store.dialect == "sqlite" else None
        self._file_path = Path(database + "-recompute.lock") if database else None

    @contextmanager
    def hold(self, *, wait: float = 0.0) -> Iterator[bool]:
        """Yield True when this caller holds the lock, False when another run has it
        (after waiting up to ``wait`` seconds)."""
        if wait > 0:
            acquired = self._local.acquire(timeout=wait)
        else:
            acquired = self._local.acquire(blocking=False)
        if not acquired:
            yield False
            return
        try:
            if self._file_path is not None:
                with FileLock(self._file_path, keep_open=False).hold(timeout=wait) as got:
                    yield got
                return
            if self._store.dialect != "postgresql":
                yield True
                return
            with self._store.engine.connect() as conn:
                deadline = time.monotonic() + wait
                while True:
                    got = conn.execute(
                        text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}
                    ).scalar_one()
                    conn.commit()
                    if got or time.monotonic() >= deadline:
                        break
                    time.sleep(0.05)
                if not got:
                    yield False
                    return
                try:
                    yield True
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                    conn.commit()
        finally:
            self._local.release()
