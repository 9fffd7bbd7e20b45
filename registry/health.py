"""Health that follows the database: NOT_SERVING while the store cannot be reached.

A replica whose database is away can answer nothing useful, so a balancer
should send callers elsewhere; when the database returns, the replica reports
SERVING again by itself (no restart). The probe is one trivial query per
``interval`` on a pooled connection (pre-pinged, so a restarted PostgreSQL is
noticed rather than failing a caller's request).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from grpc_health.v1 import health_pb2

from registry.logs import get_logger

_log = get_logger("registry.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StoreHealth:
    """Sets every service's health from a periodic ``ping()``."""

    def __init__(
        self,
        health: Any,
        services: Sequence[str],
        ping: Callable[[], Awaitable[None]],
        *,
        interval: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self._health = health
        self._services = ("", *services)
        self._ping = ping
        self._interval = interval
        self._timeout = timeout
        self._task: asyncio.Task[None] | None = None
        self.serving = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-health")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def check(self) -> bool:
        """Probe once and publish the result; True when the store answered."""
        try:
            await asyncio.wait_for(self._ping(), self._timeout)
            ok = True
        except Exception as exc:  # unreachable, refused, timed out: all mean "not now"
            ok = False
            if self.serving:
                _log.warning("registry.store_unreachable", error=str(exc))
        if ok != self.serving:
            if ok:
                _log.info("registry.store_reachable")
            self.serving = ok
            for name in self._services:
                await self._health.set(name, SERVING if ok else NOT_SERVING)
        return ok

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check()
