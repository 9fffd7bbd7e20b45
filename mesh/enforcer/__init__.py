"""Enforcement on the agent side: a live map of every agent's ring, fed by the registry's events."""

from mesh.enforcer.enforcer import Enforcer
from mesh.enforcer.errors import RingDenied
from mesh.enforcer.monitor import LowTrust, TrustMonitor
from mesh.enforcer.state import AgentView, Change, EnforcerState

__all__ = [
    "AgentView",
    "Change",
    "Enforcer",
    "EnforcerState",
    "LowTrust",
    "RingDenied",
    "TrustMonitor",
]
