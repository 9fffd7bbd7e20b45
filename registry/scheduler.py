"""The registry's scheduled jobs (APScheduler): trust recompute and event pruning.

* recompute, every ``trust_recompute_interval_seconds`` (default 60 s): only
  agents that are due (see :mod:`registry.scoring.recompute`). The job skips its
  turn when another run holds the recompute lock (another replica, or a manual
  ``mesh trust recompute``), so replicas never compute twice.
* ca-rotation, every minute: the CA schedule (registry.ca.schedule) — prepare,
  activate, prune authorities when due; each change is announced as an event.
* prune, hourly: events older than ``event_retention_seconds`` (0 keeps
  everything). A Watch that resumes from a pruned sequence is told to re-snapshot.

Jobs run in the server's worker pool, never on the event loop; ``coalesce`` and
``max_instances=1`` keep a slow run from piling up behind itself. With several
replicas every one schedules the jobs, but only the leader (``leader()``, see
registry.replica) runs them; the others skip their turns until they lead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from registry.logs import get_logger
from registry.scoring import Recomputer

PRUNE_INTERVAL_SECONDS = 3600.0
CA_ROTATION_INTERVAL_SECONDS = 60.0

_log = get_logger("registry.scheduler")


class Scheduler:
    def __init__(
        self,
        recomputer: Recomputer,
        executor: Executor,
        *,
        recompute_interval: float,
        event_retention: float = 0.0,
        ca_rotator: Any = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self._recomputer = recomputer
        # Replicas: only the leader runs the jobs (registry.replica.Leadership).
        self._leader = leader
        self._executor = executor
        self._interval = recompute_interval
        self._retention = event_retention
        self._scheduler: AsyncIOScheduler | None = None
        self._ca_rotator = ca_rotator
        self.runs = 0

    def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._recompute,
            "interval",
            seconds=self._interval,
            id="trust-recompute",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC) + timedelta(seconds=min(self._interval, 1.0)),
        )
        if self._retention > 0:
            scheduler.add_job(
                self._prune,
                "interval",
                seconds=PRUNE_INTERVAL_SECONDS,
                id="event-prune",
                max_instances=1,
                coalesce=True,
            )
        if self._ca_rotator is not None:
            scheduler.add_job(
                self._rotate_ca,
                "interval",
                seconds=CA_ROTATION_INTERVAL_SECONDS,
                id="ca-rotation",
                max_instances=1,
                coalesce=True,
                next_run_time=datetime.now(UTC) + timedelta(seconds=1),
            )
        scheduler.start()
        self._scheduler = scheduler

    def shutdown(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def _recompute(self) -> None:
        if not self._leads():
            return
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._run_recompute)
        except Exception as exc:  # the store is down: the next turn tries again
            _log.warning("trust.recompute_failed", error=str(exc))
            return
        self.runs += 1
        if result.skipped:
            _log.debug("trust.recompute_skipped", reason="another run holds the lock")
        elif result.examined:
            _log.info(
                "trust.recomputed",
                examined=result.examined,
                changed=result.changed,
                events=result.events,
            )

    def _leads(self) -> bool:
        return self._leader is None or self._leader()

    def _run_recompute(self) -> Any:
        return self._recomputer.run()

    async def _rotate_ca(self) -> None:
        if not self._leads():
            return
        loop = asyncio.get_running_loop()
        try:
            changes = await loop.run_in_executor(self._executor, self._ca_rotator.tick)
        except Exception as exc:  # keep the current authorities; the next turn tries again
            _log.warning("ca.rotation_failed", error=str(exc))
            return
        if changes:
            _log.info("ca.rotated", changes=changes)

    async def _prune(self) -> None:
        if not self._leads():
            return
        loop = asyncio.get_running_loop()
        try:
            deleted = await loop.run_in_executor(self._executor, self._run_prune)
        except Exception as exc:
            _log.warning("events.prune_failed", error=str(exc))
            return
        if deleted:
            _log.info("events.pruned", deleted=deleted)

    def _run_prune(self) -> int:
        store = self._recomputer.store
        before = store.now() - timedelta(seconds=self._retention)
        with store.transaction() as tx:
            return int(tx.trust.prune_events(before=before))
