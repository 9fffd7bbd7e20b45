"""Fan-out of the event log to Watch streams.

One reader per process follows the event table (the source of truth) and
hands each new event to every attached subscriber's bounded queue. It wakes
on :meth:`EventHub.notify` (called after a local commit) and otherwise polls,
so events committed by another replica arrive too; a missed wake-up only
delays, it never loses.

A subscriber whose queue is full is detached instead of slowing the reader or
anyone else; its stream then catches up from the table at its own pace and
re-attaches (see ``registry.events.watch``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Protocol

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from mesh.v1 import events_pb2
from registry.events.state import to_wire
from registry.events.types import TO_WIRE
from registry.store.records import EventRecord

log = structlog.get_logger(__name__)


class EventSource(Protocol):
    """What the hub needs from the store (blocking calls; run in threads)."""

    def events_since(self, after_seq: int, limit: int) -> Sequence[EventRecord]: ...

    def latest_event_seq(self) -> int: ...


class Delivery:
    """One event, converted to its wire form once for every subscriber."""

    __slots__ = ("agent_did", "response", "seq", "type")

    def __init__(self, record: EventRecord) -> None:
        self.seq = record.seq
        self.agent_did = record.agent_did
        self.type = TO_WIRE.get(record.type, events_pb2.EVENT_TYPE_UNSPECIFIED)
        self.response = events_pb2.WatchResponse(event=to_event(record))


def to_event(record: EventRecord) -> events_pb2.Event:

    at = Timestamp()
    at.FromDatetime(record.created_at)
    payload = dict(record.payload)
    state = payload.pop("state", None)
    event = events_pb2.Event(
        sequence=record.seq,
        type=TO_WIRE.get(record.type, events_pb2.EVENT_TYPE_UNSPECIFIED),
        agent_did=record.agent_did or "",
        at=at,
        details_json=json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str),
    )
    if record.agent_did and isinstance(state, dict):
        event.state.CopyFrom(to_wire(record.agent_did, state))
    return event


#: A subscriber's filter: (agent DID or None, wire event type) -> wanted?
Matcher = Callable[[str | None, int], bool]


class Subscriber:
    """A Watch stream's mailbox: a bounded queue plus the filter it asked for."""

    __slots__ = ("detached", "matches", "queue")

    def __init__(self, matches: Matcher, max_queue: int) -> None:
        self.matches = matches
        self.queue: asyncio.Queue[Delivery | None] = asyncio.Queue(max_queue)
        # Set when the hub dropped this subscriber for falling behind.
        self.detached = False


class EventHub:
    def __init__(
        self,
        source: EventSource,
        *,
        poll_interval: float = 0.25,
        batch: int = 1000,
        max_queue: int = 10_000,
    ) -> None:
        self._source = source
        self._poll_interval = poll_interval
        self._batch = batch
        self.max_queue = max_queue
        self._subscribers: set[Subscriber] = set()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # Every event up to here has been handed to the subscribers attached at the time.
        self.position = 0
        #: How many times a subscriber was dropped for falling behind.
        self.detachments = 0
        #: Set by :meth:`close_streams`: the process is stopping, streams must end.
        self.closing = False

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.position = await asyncio.to_thread(self._source.latest_event_seq)
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for subscriber in list(self._subscribers):
            self._detach(subscriber)

    def close_streams(self) -> None:
        """Stopping: every attached stream ends (with a resumable UNAVAILABLE) at once."""
        self.closing = True
        for subscriber in list(self._subscribers):
            self._detach(subscriber)

    def notify(self) -> None:
        """Wake the reader now (safe from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def attach(self, subscriber: Subscriber) -> None:
        """Start delivering events after :attr:`position` to ``subscriber``.

        Call it with no ``await`` between reading :attr:`position` and this
        call, so the subscriber's own catch-up and the hub's deliveries meet.
        """
        subscriber.detached = False
        self._subscribers.add(subscriber)

    def detach(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def _detach(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        subscriber.detached = True
        self.detachments += 1
        # Make room for the wake-up marker: the stream re-reads from the table anyway.
        while not subscriber.queue.empty():
            subscriber.queue.get_nowait()
        subscriber.queue.put_nowait(None)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()
            try:
                await self._drain()
            except Exception as error:  # the store is down: keep trying, streams wait
                log.warning("event_hub_read_failed", error=str(error))

    async def _drain(self) -> None:
        while True:
            records = await asyncio.to_thread(self._source.events_since, self.position, self._batch)
            for record in records:
                if self._subscribers:
                    self._deliver(record)
                self.position = record.seq
            if len(records) < self._batch:
                return

    def _deliver(self, record: EventRecord) -> None:
        # Converted once, and only when someone wants it.
        wire_type = TO_WIRE.get(record.type, events_pb2.EVENT_TYPE_UNSPECIFIED)
        delivery: Delivery | None = None
        for subscriber in list(self._subscribers):
            if not subscriber.matches(record.agent_did, wire_type):
                continue
            if delivery is None:
                delivery = Delivery(record)
            try:
                subscriber.queue.put_nowait(delivery)
            except asyncio.QueueFull:
                self._detach(subscriber)
