"""An enforcer: subscribes to the registry's events and gates calls on execution rings.

It keeps :class:`EnforcerState` current from ``EventService.Watch``: a snapshot
first, then the live tail. After any disconnect it resumes from the last
sequence it applied, so no event is lost or applied twice; when the registry
says that sequence was pruned (OUT_OF_RANGE) it takes a fresh snapshot, and
the old picture keeps answering until the new one is complete.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import grpc

from mesh.client.channel import DEFAULT_REGISTRY, TLSConfig, mtls_addresses, parse_addresses
from mesh.enforcer.errors import RingDenied
from mesh.enforcer.state import Change, EnforcerState
from mesh.v1 import events_pb2
from mesh.watch import Subscription

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
ChangeCallback = Callable[[Change], None]

#: Files of an enforcer credential directory (``mesh principal create --kind enforcer``).
CERT_FILE, KEY_FILE, BUNDLE_FILE = "enforcer.pem", "enforcer.key", "bundle.pem"


class Enforcer:
    """Live ring enforcement for every agent (or the ``agent_dids`` given)."""

    def __init__(
        self,
        channel_factory: Callable[[], grpc.Channel],
        *,
        agent_dids: Iterable[str] = (),
        name: str = "enforcer",
    ) -> None:
        self.state = EnforcerState()
        self._callbacks: list[ChangeCallback] = []
        self._synced = threading.Event()
        self._progress = threading.Condition()
        self._subscription = Subscription(
            channel_factory, _Follower(self), agent_dids=agent_dids, name=name
        )

    @classmethod
    def connect(
        cls,
        registry: str | Sequence[str] = DEFAULT_REGISTRY,
        *,
        tls: TLSConfig,
        mtls_registry: str | Sequence[str] | None = None,
        agent_dids: Iterable[str] = (),
        name: str = "enforcer",
    ) -> Enforcer:
        """An enforcer over mutual TLS to the registry (not started).

        ``registry`` is the registry's TLS address; the stream goes to its mTLS
        address (``mtls_registry``, by default each address's port + 1). Each
        reconnect tries the next address, so a replica going away fails over.
        """
        if not tls.mutual:
            raise ValueError("an enforcer authenticates with a client certificate (tls.mutual)")
        addresses = parse_addresses(mtls_registry) if mtls_registry else mtls_addresses(registry)
        turn = itertools.count()

        def channel() -> grpc.Channel:
            address = addresses[next(turn) % len(addresses)]
            return grpc.secure_channel(address, tls.credentials(), options=tls.options())

        return cls(channel, agent_dids=agent_dids, name=name)

    @classmethod
    def from_dir(
        cls,
        credential_dir: str | os.PathLike[str],
        registry: str | Sequence[str] = DEFAULT_REGISTRY,
        **kwargs: object,
    ) -> Enforcer:
        """An enforcer with the credential in ``credential_dir`` (enforcer.pem,
        enforcer.key, bundle.pem as written by ``mesh principal create``)."""
        root = Path(credential_dir)
        tls = TLSConfig.from_files(root / BUNDLE_FILE, root / CERT_FILE, root / KEY_FILE)
        return cls.connect(registry, tls=tls, **kwargs)  # type: ignore[arg-type]

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Enforcer:
        if self._subscription.running:
            raise RuntimeError("the enforcer is already running")
        self._subscription.start()
        return self

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until the first snapshot is applied; False on timeout."""
        return self._synced.wait(timeout)

    def wait_for(self, sequence: int, timeout: float | None = None) -> bool:
        """Block until every event up to ``sequence`` is applied; False on timeout."""
        with self._progress:
            return self._progress.wait_for(
                lambda: self.state.last_sequence >= sequence, timeout=timeout
            )

    def reconnect(self) -> None:
        """Drop the stream now; it resumes at once from the last sequence applied."""
        self._subscription.reconnect()

    def stop(self) -> None:
        self._subscription.stop()

    def __enter__(self) -> Enforcer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- decisions -------------------------------------------------------------------------

    def allowed(self, agent_did: str, required_ring: int) -> bool:
        """True when ``agent_did`` is active and at ``required_ring`` or more privileged."""
        return self.state.allowed(agent_did, required_ring)

    def check(self, agent_did: str, required_ring: int) -> None:
        """Raise :class:`RingDenied` unless the agent may act at ``required_ring``."""
        if not self.state.allowed(agent_did, required_ring):
            reason = self.state.why_denied(agent_did, required_ring) or "denied"
            raise RingDenied(agent_did, int(required_ring), reason)

    def gate(self, required_ring: int) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a tool so that it runs only for agents at ``required_ring`` or better.

        The caller's DID is taken from the ``agent_did`` keyword argument, or
        else the first positional argument.
        """

        def decorate(tool: Callable[P, R]) -> Callable[P, R]:
            @functools.wraps(tool)
            def gated(*args: P.args, **kwargs: P.kwargs) -> R:
                did = kwargs.get("agent_did", args[0] if args else None)
                if not isinstance(did, str):
                    raise TypeError(f"{tool.__name__} is gated: pass the caller as agent_did=...")
                self.check(did, required_ring)
                return tool(*args, **kwargs)

            return gated

        return decorate

    # -- callbacks -------------------------------------------------------------------------

    def on_change(self, callback: ChangeCallback) -> ChangeCallback:
        """Call ``callback(change)`` after every change to an agent (decorator)."""
        self._callbacks.append(callback)
        return callback

    def on_demotion(self, callback: ChangeCallback) -> ChangeCallback:
        """Call ``callback(change)`` when an agent loses privilege (decorator)."""

        def only_demotions(change: Change) -> None:
            if change.demoted:
                callback(change)

        self._callbacks.append(only_demotions)
        return callback

    def on_low_trust(self, min_trust_score: int) -> Callable[[ChangeCallback], ChangeCallback]:
        """Call the decorated function when an agent's score drops below ``min_trust_score``."""

        def register(callback: ChangeCallback) -> ChangeCallback:
            def below(change: Change) -> None:
                new, old = change.new.score, change.old.score if change.old else None
                was_above = old is None or old >= min_trust_score
                if new is not None and new < min_trust_score and was_above:
                    callback(change)

            self._callbacks.append(below)
            return callback

        return register

    def _fire(self, changes: Iterable[Change]) -> None:
        for change in changes:
            for callback in self._callbacks:
                try:
                    callback(change)
                except Exception:
                    log.exception("enforcer callback failed for %s", change.agent_did)

    # -- the subscription (mesh.watch: one resume loop for every follower) ----------------

    @property
    def reconnects(self) -> int:
        return self._subscription.reconnects

    @property
    def last_error(self) -> str | None:
        return self._subscription.last_error


class _Follower:
    """The enforcer's side of the Watch stream (:class:`mesh.watch.WatchHandler`)."""

    def __init__(self, enforcer: Enforcer) -> None:
        self._e = enforcer

    def position(self) -> int:
        return self._e.state.last_sequence

    def reset(self) -> None:
        self._e.state.last_sequence = 0

    def begin_snapshot(self) -> None:
        self._e.state.begin_snapshot()

    def snapshot(self, state: events_pb2.AgentState) -> None:
        self._e.state.apply_snapshot(state)

    def snapshot_done(self, sequence: int) -> None:
        e = self._e
        with e._progress:
            changes = e.state.finish_snapshot(sequence)
            e._progress.notify_all()
        e._fire(changes)
        e._synced.set()

    def event(self, event: events_pb2.Event) -> None:
        e = self._e
        with e._progress:
            change = e.state.apply_event(event)
            e._progress.notify_all()
        if change is not None:
            e._fire((change,))

    def connected(self) -> None:
        pass

    def disconnected(self, reason: str) -> None:
        pass
