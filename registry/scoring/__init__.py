"""Trust in the registry: signals from the store -> ``trust`` -> scores, rings and events.

``trust`` (pure) does the arithmetic; this package loads its inputs in bulk,
persists what changed (batched), and writes score/tier/ring events in the same
transaction as the change.
"""

from registry.scoring.lock import RecomputeLock
from registry.scoring.recompute import Recomputer, RecomputeResult
from registry.scoring.state import current_state, state_payload

__all__ = ["RecomputeLock", "RecomputeResult", "Recomputer", "current_state", "state_payload"]
