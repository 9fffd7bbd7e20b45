"""EventService.Watch: a snapshot, then every event after it, live; resumable.

One stream, in order:

1. ``from_sequence == 0``: every matching agent's state read in ONE snapshot
   together with the last sequence S it reflects (one item per agent, or
   ``SnapshotBatch`` items of up to 1000 when the client asks ``batch_snapshot``),
   then ``SnapshotDone(S)``;
   ``from_sequence == N``: checked to be still in the table (else OUT_OF_RANGE:
   pruned, start again from 0) and not ahead of it;
2. attach to the hub from the stream's position: the events since then come
   from the hub's recent events, all in one synchronous step (so nothing slips
   between them and the live feed); when they are more than a mailbox holds,
   write them from the hub's recent events first, and when those have moved
   past the position, catch up from the event table (the source of truth)
   first; then try again;
3. forward the live tail, dropping anything at or below the last sequence sent;
4. if the hub detaches the stream (its mailbox filled: a slow reader), go back
   to 2: the slow stream catches up at its own pace while the hub and every
   other stream carry on.

Events go out as the bytes the hub encoded once for every stream (see
:func:`add_event_service`: no response serializer; snapshot items are encoded
here), written with ``context.write`` rather than through a response generator.

Filters (agent DIDs, event types) apply to both the snapshot and the events;
registry-wide events (bundle changes) reach every stream that asks for them.
Enforcers and operators may watch everything. An agent may watch itself
fully, and other agents' identity events only (registration, key rotation,
compromise, revocation, termination: what a peer verifier needs); their
states then carry status and current key, never score, tier or ring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from mesh.v1 import events_pb2
from registry.auth import PrincipalKind
from registry.events.hub import Delivery, EventFilter, EventHub, Subscriber, identity_only
from registry.events.state import to_wire
from registry.events.types import FROM_WIRE, TO_WIRE
from registry.interceptor import current_principal
from registry.scoring.state import state_payload
from registry.services import _validate as check
from registry.services._runtime import Runtime
from registry.status import RpcError, denied, invalid
from registry.store.records import EventRecord

SERVICE = "mesh.v1.EventService"
MAX_AGENT_FILTER = 1000
# What an agent may follow about its peers.
IDENTITY_TYPES = frozenset(
    {
        events_pb2.EVENT_TYPE_AGENT_REGISTERED,
        events_pb2.EVENT_TYPE_KEY_ROTATED,
        events_pb2.EVENT_TYPE_AGENT_REVOKED,
        events_pb2.EVENT_TYPE_AGENT_TERMINATED,
        events_pb2.EVENT_TYPE_KEY_COMPROMISED,
        events_pb2.EVENT_TYPE_BUNDLE_CHANGED,
    }
)
CATCH_UP_BATCH = 1000
SNAPSHOT_BATCH = 1000


def pruned(position: int) -> RpcError:
    return RpcError(
        grpc.StatusCode.OUT_OF_RANGE,
        f"events after sequence {position} were pruned from the registry; "
        "start again from sequence 0 for a fresh snapshot",
    )


def shutting_down(position: int) -> RpcError:
    return RpcError(
        grpc.StatusCode.UNAVAILABLE,
        f"this registry replica is shutting down; resume with from_sequence {position} "
        "on another replica (or this one once it is back)",
    )


def add_event_service(service: EventService, server: Any) -> None:
    """Register ``service`` like the generated ``add_EventServiceServicer_to_server``,
    but with no response serializer: Watch writes bytes (events as the hub encoded
    them once for every stream)."""
    handlers = {
        "Watch": grpc.unary_stream_rpc_method_handler(
            service.Watch,
            request_deserializer=events_pb2.WatchRequest.FromString,
            response_serializer=None,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class EventService:
    """``mesh.v1.EventService``; register it with :func:`add_event_service`."""

    def __init__(self, runtime: Runtime, hub: EventHub) -> None:
        self._rt = runtime
        self._hub = hub

    async def Watch(self, request: events_pb2.WatchRequest, context: Any) -> None:
        # Written with context.write (no response generator): one hop less per message,
        # and events go out as the bytes the hub encoded once for every stream.
        event_filter = self._filters(request)
        write = context.write
        dids = sorted(event_filter.agent_dids)
        position = int(request.from_sequence)
        hub = self._hub
        if position == 0:
            rows, position = await self._rt.run(self._snapshot, dids or None)
            if event_filter.redact:
                rows = [identity_only(row) for row in rows]
            if request.batch_snapshot:
                # One message per SNAPSHOT_BATCH states: a stream's cost is per message.
                for start in range(0, len(rows), SNAPSHOT_BATCH):
                    batch = events_pb2.SnapshotBatch(states=rows[start : start + SNAPSHOT_BATCH])
                    await write(events_pb2.WatchResponse(snapshot_batch=batch).SerializeToString())
            else:
                for row in rows:
                    await write(events_pb2.WatchResponse(snapshot=row).SerializeToString())
            done = events_pb2.SnapshotDone(sequence=position)
            await write(events_pb2.WatchResponse(snapshot_done=done).SerializeToString())
        else:
            # The table decides what was pruned, even when the hub still holds the events.
            await self._rt.run(self._check_resumable, position)
        only = dids[0] if len(dids) == 1 else None
        matches = event_filter.matches
        subscriber = Subscriber(event_filter)
        pending = subscriber.pending
        loop = hub.loop
        assert loop is not None
        try:
            while True:
                if hub.closing:
                    raise shutting_down(position)
                # Attach, taking what we missed from the hub's recent events. Further
                # behind than a mailbox holds: catch up from those events first, or from
                # the table once they have moved on (and try again).
                while not hub.attach(subscriber, position):
                    held = hub.since(position, CATCH_UP_BATCH)
                    if held:
                        for delivery in held:
                            if matches(delivery.agent_did, delivery.type):
                                await write(delivery.bytes_for(event_filter))
                            position = delivery.seq
                    else:
                        records, position = await self._rt.run(self._catch_up, position, only)
                        for record in records:
                            if matches(record.agent_did, _wire_type(record)):
                                await write(Delivery(record).bytes_for(event_filter))
                    if hub.closing:
                        raise shutting_down(position)
                # Live: whatever the hub appended, in order.
                while True:
                    if not pending:
                        if subscriber.detached:
                            break  # fell behind (or stopping): back to the table
                        # Parked until the hub appends or detaches (a cancelled stream
                        # leaves a cancelled future the hub skips).
                        subscriber.waiter = waiter = loop.create_future()
                        await waiter
                        continue
                    delivery = pending.popleft()
                    if delivery.seq <= position:
                        continue
                    position = delivery.seq
                    await write(delivery.bytes_for(event_filter))
        finally:
            hub.detach(subscriber)

    def _filters(self, request: events_pb2.WatchRequest) -> EventFilter:
        principal = current_principal()
        if len(request.agent_dids) > MAX_AGENT_FILTER:
            raise invalid("agent_dids", f"at most {MAX_AGENT_FILTER} agents per stream")
        dids: list[str] = []
        for i, text in enumerate(request.agent_dids):
            did = str(check.did(f"agent_dids[{i}]", text))
            if did not in dids:
                dids.append(did)
        types: list[int] = []
        for i, value in enumerate(request.types):
            if value not in FROM_WIRE:
                raise invalid(f"types[{i}]", f"unknown event type {value}")
            types.append(int(value))
        redact = False
        if principal.kind is PrincipalKind.AGENT and dids != [principal.did]:
            identity_only = bool(types) and set(types) <= IDENTITY_TYPES
            if not dids and not identity_only:
                dids = [principal.did]  # an agent's default stream: itself
            elif not identity_only:
                raise denied(
                    f"an agent may watch itself ({principal.did}) fully, and other agents' "
                    "identity events only: name types among registered, key rotated, key "
                    "compromised, revoked, terminated and bundle changed"
                )
            else:
                redact = True
        return EventFilter(frozenset(dids), frozenset(types), redact)

    def _snapshot(self, dids: Sequence[str] | None) -> tuple[list[events_pb2.AgentState], int]:
        with self._rt.store.read() as view:
            # One read snapshot: the rows and the sequence they reflect agree.
            sequence = view.events.latest_seq()
            rows = view.trust.snapshot(dids)
        return [
            to_wire(
                row.did,
                dict(
                    state_payload(
                        status=row.status,
                        granted_ring=row.granted_ring,
                        current_kid=row.current_kid,
                        score=row.score,
                        tier=row.tier,
                        effective_ring=row.effective_ring if row.score is not None else None,
                    )
                ),
            )
            for row in rows
        ], sequence

    def _check_resumable(self, position: int) -> None:
        with self._rt.store.read() as view:
            latest = view.events.latest_seq()
            oldest = view.trust.oldest_event_seq()
        if position > latest:
            raise RpcError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"from_sequence {position} is ahead of this registry (last event {latest}); "
                "start again from sequence 0 for a fresh snapshot",
            )
        if position < latest and (oldest is None or oldest > position + 1):
            raise pruned(position)

    def _catch_up(self, position: int, only: str | None) -> tuple[list[EventRecord], int]:
        """Events after ``position`` (only ``only``'s when set) and the new position."""
        with self._rt.store.read() as view:
            latest = view.events.latest_seq()
            oldest = view.trust.oldest_event_seq()
            if position < latest and (oldest is None or oldest > position + 1):
                raise pruned(position)
            records = view.events.since(position, limit=CATCH_UP_BATCH, agent_did=only)
        if len(records) < CATCH_UP_BATCH:
            # Everything up to `latest` was scanned in this snapshot.
            return records, max(latest, position)
        return records, records[-1].seq


def _wire_type(record: EventRecord) -> int:
    return TO_WIRE.get(record.type, events_pb2.EVENT_TYPE_UNSPECIFIED)
