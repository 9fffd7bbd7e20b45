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
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import ParamSpec, TypeVar

import grpc

from mesh.client.channel import DEFAULT_REGISTRY, TLSConfig, mtls_addresses, parse_addresses
from mesh.enforcer.errors import RingDenied
from mesh.enforcer.state import Change, EnforcerState
from mesh.v1 import events_pb2, events_pb2_grpc

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
ChangeCallback = Callable[[Change], None]

_RETRY_FIRST, _RETRY_MAX = 0.05, 5.0
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
        self._channel_factory = channel_factory
        self._agent_dids = tuple(agent_dids)
        self._name = name
        self.state = EnforcerState()
        self._callbacks: list[ChangeCallback] = []
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.Future | None = None
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        self._skip_backoff = False
        self.reconnects = 0
        self.last_error: str | None = None

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
        if self._thread is not None:
            raise RuntimeError("the enforcer is already running")
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
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
        with self._lock:
            self._skip_backoff = True
            if self._call is not None:
                self._call.cancel()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

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

    # -- the subscription ------------------------------------------------------------------

    def _run(self) -> None:
        delay = _RETRY_FIRST
        while not self._stop.is_set():
            try:
                self._follow()
                delay = _RETRY_FIRST
            except grpc.RpcError as error:
                if self._stop.is_set():
                    return
                code = error.code()
                self.last_error = f"{code.name}: {error.details()}"
                if code == grpc.StatusCode.OUT_OF_RANGE:
                    # Our position was pruned: take a fresh snapshot at once.
                    self.state.last_sequence = 0
                    delay = 0.0
                elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    delay = 0.0  # fell behind: resume right away from our last sequence
            except Exception as error:  # a callback or a bug: keep enforcing, log, retry
                if self._stop.is_set():
                    return
                self.last_error = repr(error)
                log.exception("enforcer stream failed")
            with self._lock:
                if self._skip_backoff:
                    self._skip_backoff = False
                    delay = 0.0
            self.reconnects += 1
            if delay:
                self._stop.wait(delay * (0.5 + random.random()))
            delay = min(max(delay * 2, _RETRY_FIRST), _RETRY_MAX)

    def _follow(self) -> None:
        channel = self._channel_factory()
        try:
            stub = events_pb2_grpc.EventServiceStub(channel)
            start = self.state.last_sequence
            request = events_pb2.WatchRequest(from_sequence=start, agent_dids=self._agent_dids)
            call = stub.Watch(request)
            with self._lock:
                if self._stop.is_set():
                    call.cancel()
                    return
                self._call = call
            if start == 0:
                self.state.begin_snapshot()
            for item in call:
                kind = item.WhichOneof("item")
                if kind == "event":
                    with self._progress:
                        change = self.state.apply_event(item.event)
                        self._progress.notify_all()
                    if change is not None:
                        self._fire((change,))
                elif kind == "snapshot":
                    self.state.apply_snapshot(item.snapshot)
                elif kind == "snapshot_done":
                    with self._progress:
                        changes = self.state.finish_snapshot(item.snapshot_done.sequence)
                        self._progress.notify_all()
                    self._fire(changes)
                    self._synced.set()
        finally:
            with self._lock:
                self._call = None
            channel.close()
