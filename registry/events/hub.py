"""Fan-out of the event log to Watch streams.

One reader per process follows the event table (the source of truth). It wakes
on :meth:`EventHub.notify` (called after a local commit, and on PostgreSQL
after a NOTIFY from any replica) and otherwise polls, so a missed wake-up only
delays, it never loses. With no stream attached, a wake-up waits for the next
poll: nobody is waiting for the events, and under a burst of commits (every
registration is one) reading them at once would cost a table read per commit
in every process. A stream that attaches wakes the reader itself.

Each new event is encoded ONCE (:class:`Delivery`: the serialized
``WatchResponse``, and on demand the redacted form agents get of their peers)
and handed, as those same bytes, to every attached stream whose filter wants
it. Streams are grouped by filter, so a thousand enforcers watching everything
cost one filter check per event, then one append and one wake-up each.

The hub also keeps the most recent events (:attr:`EventHub.recent`) so that a
stream resuming from a recent sequence catches up from memory: every stream
that reconnects after a blip would otherwise read the same rows from the
table.

A stream whose mailbox is full is detached instead of slowing the reader or
anyone else; it then catches up from the table at its own pace and
re-attaches (see ``registry.events.watch``).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog
from google.protobuf.timestamp_pb2 import Timestamp

from mesh.v1 import events_pb2
from registry.events.state import SANDBOX_RING, to_wire
from registry.events.types import TO_WIRE
from registry.store.records import EventRecord

log = structlog.get_logger(__name__)

#: Events kept in memory for streams resuming close behind the hub.
RECENT_EVENTS = 4096


def _seq(delivery: Delivery) -> int:
    return delivery.seq


class EventSource(Protocol):
    """What the hub needs from the store (blocking calls; run in threads)."""

    def events_since(self, after_seq: int, limit: int) -> Sequence[EventRecord]: ...

    def latest_event_seq(self) -> int: ...


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


def identity_only(state: events_pb2.AgentState) -> events_pb2.AgentState:
    """A peer's state without its trust: status and key only; the sandbox ring, fail-closed."""
    return events_pb2.AgentState(
        did=state.did,
        status=state.status,
        current_kid=state.current_kid,
        effective_ring=SANDBOX_RING,
        granted_ring=SANDBOX_RING,
    )


class Delivery:
    """One event, encoded once for every stream (on first use: with nobody
    watching it, a recompute's burst of events costs no encoding)."""

    __slots__ = ("_data", "_record", "_redacted", "agent_did", "seq", "type")

    def __init__(self, record: EventRecord) -> None:
        self.seq = record.seq
        self.agent_did = record.agent_did
        self.type = TO_WIRE.get(record.type, events_pb2.EVENT_TYPE_UNSPECIFIED)
        self._record: EventRecord | None = record
        self._data: bytes | None = None
        self._redacted: bytes | None = None

    @property
    def data(self) -> bytes:
        """The serialized ``WatchResponse`` carrying the event."""
        data = self._data
        if data is None:
            assert self._record is not None
            data = self._data = events_pb2.WatchResponse(
                event=to_event(self._record)
            ).SerializeToString()
            self._record = None
        return data

    def redacted(self) -> bytes:
        """What an agent watching its peers gets: the state cut to status and key."""
        if self._redacted is None:
            response = events_pb2.WatchResponse.FromString(self.data)
            if response.event.HasField("state"):
                response.event.state.CopyFrom(identity_only(response.event.state))
                self._redacted = response.SerializeToString()
            else:
                self._redacted = self.data
        return self._redacted

    def bytes_for(self, event_filter: EventFilter) -> bytes:
        if event_filter.redact:
            return self.redacted()
        data = self._data
        return data if data is not None else self.data


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What a stream asked for (and may see). Equal filters share one check per event."""

    agent_dids: frozenset[str] = frozenset()
    types: frozenset[int] = frozenset()
    #: Peers' states are cut to status and key (an agent following its peers).
    redact: bool = False

    def matches(self, agent_did: str | None, wire_type: int) -> bool:
        # Registry-wide events (no agent) belong to every stream.
        if self.agent_dids and agent_did and agent_did not in self.agent_dids:
            return False
        return not self.types or wire_type in self.types


class Subscriber:
    """A Watch stream's mailbox: the deliveries not yet written, and its filter.

    A stream with nothing pending parks on :attr:`waiter` (a future it sets);
    the hub completes it when it appends or detaches.
    """

    __slots__ = ("detached", "filter", "pending", "waiter")

    def __init__(self, event_filter: EventFilter) -> None:
        self.filter = event_filter
        self.pending: deque[Delivery] = deque()
        self.waiter: asyncio.Future[None] | None = None
        # Set when the hub dropped this subscriber (it fell behind, or the process stops).
        self.detached = False

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)


class EventHub:
    def __init__(
        self,
        source: EventSource,
        *,
        poll_interval: float = 0.25,
        batch: int = 1000,
        max_queue: int = 10_000,
        recent: int = RECENT_EVENTS,
    ) -> None:
        self._source = source
        self._poll_interval = poll_interval
        self._batch = batch
        self.max_queue = max_queue
        # Attached streams by filter (dicts as ordered sets).
        self._groups: dict[EventFilter, dict[Subscriber, None]] = {}
        self._count = 0
        self._wake = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        # Every event up to here has been handed to the subscribers attached at the time.
        self.position = 0
        #: The newest events, in order; every event after :attr:`_floor` is here.
        self.recent: deque[Delivery] = deque()
        #: How many events :attr:`recent` keeps.
        self.recent_limit = recent
        self._floor = 0
        #: How many times a subscriber was dropped for falling behind.
        self.detachments = 0
        #: Set by :meth:`close_streams`: the process is stopping, streams must end.
        self.closing = False

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.position = await asyncio.to_thread(self._source.latest_event_seq)
        self._floor = self.position
        self._task = asyncio.create_task(self._run(), name="event-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._detach_all()

    def close_streams(self) -> None:
        """Stopping: every attached stream ends (with a resumable UNAVAILABLE) at once."""
        self.closing = True
        self._detach_all()

    def notify(self) -> None:
        """Wake the reader now (safe from any thread)."""
        loop = self.loop
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
        return self._count

    def holds(self, position: int) -> bool:
        """Are all the events after ``position`` in :attr:`recent` (or yet to come)?"""
        return position >= self._floor

    def since(self, position: int, limit: int) -> list[Delivery] | None:
        """Up to ``limit`` recent events after ``position``, in order; None when
        some of them are no longer held (the table has them)."""
        if not self.holds(position):
            return None
        recent = self.recent
        start = bisect.bisect_right(recent, position, key=_seq)
        return list(itertools.islice(recent, start, start + limit))

    def attach(self, subscriber: Subscriber, position: int) -> bool:
        """Deliver to ``subscriber`` every event after ``position`` from now on.

        The events between ``position`` and :attr:`position` are taken from
        :attr:`recent` into its mailbox first. False (not attached) when they
        are no longer all in memory, or are more than its mailbox holds: the
        stream catches up (:meth:`since`, or the table), then tries again. Synchronous, so
        nothing can be delivered between the backlog and the live feed. A
        ``position`` ahead of the hub (a snapshot read a commit the hub has yet
        to read) attaches with no backlog; the stream drops what it already has.
        """
        if not self.holds(position):
            return False
        if self._count == 0:
            # Wake-ups waited for the poll while nobody watched: read what is new now.
            self._wake.set()
        backlog: list[Delivery] = []
        if position < self.position:
            matches = subscriber.filter.matches
            for delivery in reversed(self.recent):
                if delivery.seq <= position:
                    break
                if matches(delivery.agent_did, delivery.type):
                    backlog.append(delivery)
            if len(backlog) > self.max_queue:
                return False
            backlog.reverse()
        subscriber.detached = False
        subscriber.pending.clear()
        subscriber.pending.extend(backlog)
        group = self._groups.setdefault(subscriber.filter, {})
        if subscriber not in group:
            group[subscriber] = None
            self._count += 1
        return True

    def detach(self, subscriber: Subscriber) -> None:
        group = self._groups.get(subscriber.filter)
        if group is not None and subscriber in group:
            del group[subscriber]
            self._count -= 1
            if not group:
                del self._groups[subscriber.filter]

    def _drop(self, subscriber: Subscriber) -> None:
        """Detach and tell it so: its stream re-reads from the table (or stops)."""
        self.detach(subscriber)
        subscriber.detached = True
        subscriber.pending.clear()
        subscriber.wake()

    def _detach_all(self) -> None:
        for group in list(self._groups.values()):
            for subscriber in list(group):
                self._drop(subscriber)
                self.detachments += 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_poll = loop.time() + self._poll_interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_poll - loop.time()))
            if self._wake.is_set() and self._count == 0 and loop.time() < next_poll:
                self._wake.clear()  # nobody watching: the poll will read it
                continue
            self._wake.clear()
            next_poll = loop.time() + self._poll_interval
            try:
                await self._drain()
            except Exception as error:  # the store is down: keep trying, streams wait
                log.warning("event_hub_read_failed", error=str(error))

    async def _drain(self) -> None:
        while True:
            records = await asyncio.to_thread(self._source.events_since, self.position, self._batch)
            if records:
                self._deliver([Delivery(record) for record in records])
            if len(records) < self._batch:
                return

    def _deliver(self, deliveries: list[Delivery]) -> None:
        recent = self.recent
        for delivery in deliveries:
            recent.append(delivery)
        while len(recent) > self.recent_limit:
            self._floor = recent.popleft().seq
        self.position = deliveries[-1].seq
        limit = self.max_queue
        behind: list[Subscriber] = []
        for event_filter, group in self._groups.items():
            wanted = [d for d in deliveries if event_filter.matches(d.agent_did, d.type)]
            if not wanted:
                continue
            count = len(wanted)
            for subscriber in group:
                pending = subscriber.pending
                if len(pending) + count > limit:
                    behind.append(subscriber)
                    continue
                if count == 1:
                    pending.append(wanted[0])
                else:
                    pending.extend(wanted)
                waiter = subscriber.waiter  # Subscriber.wake(), inlined: once per stream
                if waiter is not None:
                    subscriber.waiter = None
                    if not waiter.done():
                        waiter.set_result(None)
        for subscriber in behind:
            self._drop(subscriber)
            self.detachments += 1
