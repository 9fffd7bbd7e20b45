"""Replay guards: remember each sender's nonces for as long as their messages are valid.

``MemoryReplayGuard`` serves one process (the default); ``RedisReplayGuard``
(optional extra ``trustmesh[redis]``) is shared by every process of a service.
``replay_guard_from_config("memory" | "redis://...")`` picks one from settings.
"""

from mesh.replay.config import replay_guard_from_config
from mesh.replay.errors import ReplayGuardFull, ReplayGuardUnavailable
from mesh.replay.guard import ReplayGuard
from mesh.replay.memory import MemoryReplayGuard
from mesh.replay.redis import RedisReplayGuard

__all__ = [
    "MemoryReplayGuard",
    "RedisReplayGuard",
    "ReplayGuard",
    "ReplayGuardFull",
    "ReplayGuardUnavailable",
    "replay_guard_from_config",
]
