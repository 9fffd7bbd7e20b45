"""``TrustMonitor``: the Agent Governance Toolkit idiom over a live :class:`Enforcer`.

    monitor = TrustMonitor(Enforcer.from_dir("enforcer-creds", "127.0.0.1:8443"))
    monitor.watch(agent_did, min_trust_score=400)

    @monitor.on_low_trust
    def quarantine(alert: LowTrust) -> None:
        ...

    with monitor:
        ...

Unlike an in-memory monitor, the scores come from the registry (pushed by its
event stream) and the demotion to the sandbox ring has already happened there
when the callback runs: the registry's ring rules moved the agent, and every
enforcer already refuses what its new ring does not allow. The callback is
for what *you* do about it (page someone, cut a session).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from mesh.enforcer.enforcer import Enforcer
from mesh.enforcer.state import Change

DEFAULT_MIN_TRUST_SCORE = 400


@dataclass(frozen=True, slots=True)
class LowTrust:
    """An agent's score fell below the threshold it is watched with."""

    agent_did: str
    score: int
    min_trust_score: int
    #: The agent's effective ring now (3 = sandbox).
    ring: int
    previous_score: int | None
    change: Change


LowTrustCallback = Callable[[LowTrust], None]


class TrustMonitor:
    """Watch chosen agents' trust scores and call back when one drops below its threshold."""

    def __init__(self, enforcer: Enforcer) -> None:
        self.enforcer = enforcer
        self._thresholds: dict[str, int] = {}
        self._callbacks: list[LowTrustCallback] = []
        self._lock = threading.Lock()
        enforcer.on_change(self._changed)

    def watch(self, agent_id: str, *, min_trust_score: int = DEFAULT_MIN_TRUST_SCORE) -> None:
        """Alert when ``agent_id``'s score drops below ``min_trust_score`` (0..1000)."""
        if isinstance(min_trust_score, bool) or not 0 <= int(min_trust_score) <= 1000:
            raise ValueError(f"min_trust_score must be 0..1000, got {min_trust_score!r}")
        with self._lock:
            self._thresholds[agent_id] = int(min_trust_score)

    def unwatch(self, agent_id: str) -> None:
        with self._lock:
            self._thresholds.pop(agent_id, None)

    def on_low_trust(self, callback: LowTrustCallback) -> LowTrustCallback:
        """Decorator: call ``callback(alert)`` each time a watched agent crosses below."""
        self._callbacks.append(callback)
        return callback

    def score(self, agent_id: str) -> int | None:
        """The agent's last pushed score (None: unknown or not scored yet)."""
        view = self.enforcer.state.get(agent_id)
        return None if view is None else view.score

    def allowed(self, agent_id: str, required_ring: int) -> bool:
        return self.enforcer.allowed(agent_id, required_ring)

    def start(self) -> TrustMonitor:
        self.enforcer.start()
        return self

    def stop(self) -> None:
        self.enforcer.stop()

    def __enter__(self) -> TrustMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _changed(self, change: Change) -> None:
        with self._lock:
            threshold = self._thresholds.get(change.agent_did)
        new = change.new.score
        if threshold is None or new is None or new >= threshold:
            return
        old = change.old.score if change.old is not None else None
        if old is not None and old < threshold:
            return  # already below: alert once per crossing
        alert = LowTrust(
            change.agent_did, new, threshold, change.new.effective_ring, old, change
        )
        for callback in list(self._callbacks):
            callback(alert)
