"""Choosing a replay guard from configuration: ``replay: memory`` or ``replay: redis://...``."""

from __future__ import annotations

from mesh.errors import MeshError
from mesh.replay.guard import ReplayGuard
from mesh.replay.memory import DEFAULT_MAX_ENTRIES, MemoryReplayGuard
from mesh.replay.redis import DEFAULT_NAMESPACE, RedisReplayGuard

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def replay_guard_from_config(
    spec: str | None = "memory",
    *,
    namespace: str = DEFAULT_NAMESPACE,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> ReplayGuard:
    """The guard a ``replay`` setting names.

    ``memory`` (the default; also empty or None): an in-process guard — right
    for one process. ``redis://HOST:PORT/DB`` (``rediss://`` for TLS,
    ``unix:///path``): a guard shared by every process of the service that
    uses the same URL and ``namespace``.
    """
    value = (spec or "memory").strip()
    if value.lower() == "memory":
        return MemoryReplayGuard(max_entries)
    if value.lower().startswith(_REDIS_SCHEMES):
        return RedisReplayGuard(value, namespace)
    raise MeshError(
        f"unknown replay guard {value[:80]!r}",
        hint="set replay to 'memory' (one process) or a Redis URL such as "
        "redis://127.0.0.1:6379/0 (shared by every process of the service)",
    )
