"""Replay guards: remember each sender's nonces for as long as their messages are valid."""

from mesh.replay.errors import ReplayGuardFull
from mesh.replay.guard import ReplayGuard
from mesh.replay.memory import MemoryReplayGuard

__all__ = ["MemoryReplayGuard", "ReplayGuard", "ReplayGuardFull"]
