"""Following ``EventService.Watch`` without losing or repeating an event.

A :class:`Subscription` runs one stream in a thread: a snapshot first (from
sequence 0), then the live tail. After any disconnect it resumes from the last
sequence its handler applied, so nothing is lost or applied twice; when the
registry says that sequence was pruned (OUT_OF_RANGE) it starts over with a
fresh snapshot; when it fell behind (RESOURCE_EXHAUSTED) it resumes at once.
Other failures are retried with jittered exponential backoff.

What to do with the items is the handler's business (:class:`WatchHandler`);
the enforcer and the peer verifier are two handlers of this one loop.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

import grpc

from mesh.v1 import events_pb2, events_pb2_grpc

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.05, 5.0
# How long a (re)connect may take before the attempt counts as failed.
CONNECT_TIMEOUT = 10.0


class WatchHandler(Protocol):
    """Receives a stream's items, in order, on the subscription's thread."""

    def position(self) -> int:
        """The last sequence applied (0: none yet, start with a snapshot)."""
        ...

    def reset(self) -> None:
        """Our position was pruned: forget it, so the next stream starts with a snapshot.

        The current picture may keep answering until the new snapshot is complete.
        """
        ...

    def begin_snapshot(self) -> None:
        """A snapshot follows (position 0: a fresh start, or after :meth:`reset`)."""
        ...

    def snapshot(self, state: events_pb2.AgentState) -> None: ...

    def snapshot_done(self, sequence: int) -> None:
        """The snapshot is complete and reflects every event up to ``sequence``."""
        ...

    def event(self, event: events_pb2.Event) -> None:
        """One event; afterwards :meth:`position` must return its sequence."""
        ...

    def connected(self) -> None:
        """The stream is established: from now on events arrive as they are committed."""
        ...

    def disconnected(self, reason: str) -> None:
        """The stream ended; the subscription will resume."""
        ...


class Subscription:
    """One resuming Watch stream feeding ``handler``; ``start()`` / ``stop()``."""

    def __init__(
        self,
        channel_factory: Callable[[], grpc.Channel],
        handler: WatchHandler,
        *,
        agent_dids: Iterable[str] = (),
        types: Iterable[events_pb2.EventType] = (),
        name: str = "watch",
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> None:
        self._channel_factory = channel_factory
        self._handler = handler
        self._agent_dids = tuple(agent_dids)
        self._types = tuple(types)
        self._name = name
        self._connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.Future | None = None
        self._thread: threading.Thread | None = None
        self._skip_backoff = False
        self.reconnects = 0
        self.last_error: str | None = None

    def start(self) -> Subscription:
        if self._thread is not None:
            raise RuntimeError("the subscription is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def reconnect(self) -> None:
        """Drop the stream now; it resumes at once from the last sequence applied."""
        with self._lock:
            self._skip_backoff = True
            if self._call is not None:
                self._call.cancel()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    def _run(self) -> None:
        delay = RETRY_FIRST
        while not self._stop.is_set():
            reason = "the stream ended"
            try:
                self._follow()
                delay = RETRY_FIRST
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
                details = error.details() if hasattr(error, "details") else ""
                reason = f"{code.name}: {details}"
                if code == grpc.StatusCode.OUT_OF_RANGE:
                    # Our position was pruned: take a fresh snapshot at once.
                    self._handler.reset()
                    delay = 0.0
                elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    delay = 0.0  # fell behind: resume right away from our last sequence
            except _NotConnected as error:
                reason = str(error)
            except Exception as error:  # a handler bug must not end the subscription
                log.exception("watch handler failed")
                reason = f"handler error: {error}"
            if self._stop.is_set():
                return
            self.last_error = reason
            self._handler.disconnected(reason)
            with self._lock:
                if self._skip_backoff:
                    self._skip_backoff = False
                    delay = 0.0
            self.reconnects += 1
            if delay:
                self._stop.wait(delay * (0.5 + random.random()))
            delay = min(max(delay * 2, RETRY_FIRST), RETRY_MAX)

    def _follow(self) -> None:
        channel = self._channel_factory()
        try:
            stub = events_pb2_grpc.EventServiceStub(channel)
            start = self._handler.position()
            request = events_pb2.WatchRequest(
                from_sequence=start,
                agent_dids=self._agent_dids,
                types=self._types,
                batch_snapshot=True,
            )
            call = stub.Watch(request)
            with self._lock:
                if self._stop.is_set():
                    call.cancel()
                    return
                self._call = call
            try:
                # The channel connects (TLS included) for the call; once it is READY and the
                # call still runs, the server holds our stream and will push what follows.
                grpc.channel_ready_future(channel).result(timeout=self._connect_timeout)
            except grpc.FutureTimeoutError:
                call.cancel()
                raise _NotConnected(
                    f"could not connect within {self._connect_timeout:.0f} s"
                ) from None
            if not call.done():
                self._handler.connected()
            if start == 0:
                self._handler.begin_snapshot()
            for item in call:
                kind = item.WhichOneof("item")
                if kind == "event":
                    self._handler.event(item.event)
                elif kind == "snapshot_batch":
                    for state in item.snapshot_batch.states:
                        self._handler.snapshot(state)
                elif kind == "snapshot":
                    self._handler.snapshot(item.snapshot)
                elif kind == "snapshot_done":
                    self._handler.snapshot_done(item.snapshot_done.sequence)
        finally:
            with self._lock:
                self._call = None
            channel.close()


class _NotConnected(Exception):
    pass
