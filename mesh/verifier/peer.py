"""The peer verifier: senders' keys from the registry, kept exact by its event stream.

:class:`PeerVerifier` is a :class:`mesh.envelope.KeyResolver`: give it to a
:class:`mesh.envelope.Verifier` and every message's sender is resolved through
the registry (``ResolveDID``) once, then answered from memory. The answers stay
exact because the verifier follows ``EventService.Watch``:

* agent revoked or terminated — the event carries the new status: the
  sender's messages are refused from the moment the event arrives;
* key rotated — the sender is fetched again (its history now ends in the new
  key); until then the old key is treated as rotated out at the event's time;
* key compromised — the sender is fetched again for ``compromised_at``; until
  then every message from it is refused.

While the stream is down the cache keeps answering, for at most
``max_staleness`` after it last was known exact; past that the verifier
fetches the sender again, and if the registry cannot be reached it fails
closed with :class:`KeyStatusUnavailable`.

Key rules (docs/verification.md): a key is valid for a message issued at
``at`` when ``valid_from <= at``, the key was not reported compromised at or
before ``at``, and either it is the current key, or it was rotated out after
``at`` (signed before the rotation) and the rotation is no more than ``grace``
ago (default 24 h).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from mesh.client.channel import DEFAULT_REGISTRY, TLSConfig
from mesh.client.errors import NotFound, RegistryError
from mesh.client.types import AgentStatus
from mesh.envelope.errors import RevokedKey, UnknownKey
from mesh.errors import MeshError
from mesh.v1 import events_pb2, types_pb2
from mesh.verifier.errors import KeyStatusUnavailable
from mesh.verifier.record import (
    KeyRecord,
    ResolutionError,
    SenderRecord,
    record_from_resolution,
    whole_second,
)
from mesh.verifier.source import DIDSource, RegistrySource
from mesh.watch import Subscription, WatchHandler

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=24)
DEFAULT_MAX_STALENESS = timedelta(minutes=5)
# How long "not registered" is remembered (cleared at once by a registration event).
DEFAULT_NEGATIVE_TTL = timedelta(seconds=5)
DEFAULT_MAX_SENDERS = 100_000
_FETCH_STRIPES = 64
# After a failed fetch, answer from the cache (or refuse) without asking again for this long.
DEFAULT_RETRY_AFTER = timedelta(seconds=1)

_STATUS = {
    types_pb2.AGENT_STATUS_ACTIVE: AgentStatus.ACTIVE,
    types_pb2.AGENT_STATUS_REVOKED: AgentStatus.REVOKED,
    types_pb2.AGENT_STATUS_TERMINATED: AgentStatus.TERMINATED,
}
# The events that change what a sender's keys verify.
WATCHED_TYPES = (
    events_pb2.EVENT_TYPE_AGENT_REGISTERED,
    events_pb2.EVENT_TYPE_KEY_ROTATED,
    events_pb2.EVENT_TYPE_AGENT_REVOKED,
    events_pb2.EVENT_TYPE_AGENT_TERMINATED,
    events_pb2.EVENT_TYPE_KEY_COMPROMISED,
)


def _seconds(value: timedelta, name: str) -> float:
    seconds = value.total_seconds()
    if seconds < 0:
        raise ValueError(f"{name} must not be negative")
    return seconds


class PeerVerifier:
    """A :class:`~mesh.envelope.KeyResolver` over the registry, exact by its event stream.

    ``source`` resolves DIDs (:class:`RegistrySource`, or an ``OperatorClient``);
    ``watch`` makes a channel for the Watch stream (``source.watch_channel``);
    without it the verifier follows no events and every cached sender is
    fetched again once it is ``max_staleness`` old. ``clock`` returns Unix
    seconds (give the :class:`~mesh.envelope.Verifier` the same one).
    """

    def __init__(
        self,
        source: DIDSource,
        *,
        watch: Callable[[], grpc.Channel] | None = None,
        grace: timedelta = DEFAULT_GRACE,
        max_staleness: timedelta = DEFAULT_MAX_STALENESS,
        negative_ttl: timedelta = DEFAULT_NEGATIVE_TTL,
        max_senders: int = DEFAULT_MAX_SENDERS,
        retry_after: timedelta = DEFAULT_RETRY_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._grace = grace
        _seconds(grace, "grace")
        self._max_staleness = _seconds(max_staleness, "max_staleness")
        self._negative_ttl = _seconds(negative_ttl, "negative_ttl")
        self._retry_after = _seconds(retry_after, "retry_after")
        if max_senders < 1:
            raise ValueError("max_senders must be at least 1")
        self._max_senders = max_senders
        self._clock = clock
        self._records: dict[str, SenderRecord] = {}
        self._missing: dict[str, float] = {}
        # did -> changes seen; a fetch that raced with a change is not trusted as current.
        self._generation: dict[str, int] = {}
        self._lock = threading.Lock()
        # Fetches of one sender are serialised; a fixed set of locks bounds the memory
        # whatever DIDs strangers send.
        self._fetch_locks = tuple(threading.Lock() for _ in range(_FETCH_STRIPES))
        # did -> when a fetch last failed: no new attempt for RETRY_AFTER seconds.
        self._failed: dict[str, float] = {}
        # The stream: live means every change reaches us as it is committed.
        self._live = False
        self._exact_until = clock()  # when the cache was last known exact (stream down)
        self._position = 0
        self._snapshot_started = 0.0
        self._synced = threading.Event()
        # Every registered DID, from the stream's snapshot and registration events (None
        # until a snapshot completes): lets a live verifier refuse strangers' DIDs
        # without asking the registry about each.
        self._known: set[str] | None = None
        self._staging: set[str] | None = None
        self._subscription = (
            Subscription(watch, _Follower(self), types=WATCHED_TYPES, name="peer-verifier")
            if watch is not None
            else None
        )
        self.fetches = 0

    @classmethod
    def connect(
        cls,
        registry: str | Sequence[str] = DEFAULT_REGISTRY,
        *,
        tls: TLSConfig,
        mtls_registry: str | Sequence[str] | None = None,
        watch: bool | None = None,
        **options: Any,
    ) -> PeerVerifier:
        """A verifier resolving through the registry at ``registry`` over mutual TLS.

        With ``watch`` (the default) it follows the event stream (call
        :meth:`start`): an enforcer or operator credential sees every event, an
        agent's X.509-SVID sees its peers' identity events (all the verifier
        needs). Without it the cache is refreshed by age (``max_staleness``).
        ``options`` are the constructor's keyword arguments.
        """
        if watch is None:
            watch = True
        source = RegistrySource.connect(registry, tls=tls, mtls_registry=mtls_registry)
        return cls(source, watch=source.watch_channel if watch else None, **options)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> PeerVerifier:
        """Start following the event stream (no-op without ``watch``)."""
        if self._subscription is not None:
            self._subscription.start()
        return self

    def stop(self) -> None:
        if self._subscription is not None:
            self._subscription.stop()
        self._go_down()

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Block until the stream is live (first snapshot applied); False on timeout."""
        return self._synced.wait(timeout)

    def __enter__(self) -> PeerVerifier:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def live(self) -> bool:
        """True while the event stream is up: the cache is exact."""
        return self._live

    def staleness(self) -> float:
        """Seconds since the cache was last known exact (0 while the stream is live)."""
        return 0.0 if self._live else max(0.0, self._clock() - self._exact_until)

    def __len__(self) -> int:
        return len(self._records)

    # -- KeyResolver ---------------------------------------------------------------------

    def resolve(self, sender: str, kid: str, at: datetime) -> bytes:
        record = self._records.get(sender)
        if record is None or record.dirty or not self._live:
            record = self._current(sender, record)
        if record.status is not AgentStatus.ACTIVE or record.suspended:
            raise self._refused(record)
        key = record.keys.get(kid)
        if key is None:
            key = self._unknown_kid(record, kid)
        if at < key.valid_from:
            raise UnknownKey(
                f"{sender}'s key {kid} was introduced at {key.valid_from.isoformat()}, after "
                f"the message's issued-at {at.isoformat()}",
                hint="the message claims a time before its key existed; refuse it",
            )
        compromised = key.compromised_at
        if compromised is not None and at >= compromised:
            raise RevokedKey(
                f"key {kid} of {sender} was reported compromised as of "
                f"{compromised.isoformat()}; the message claims {at.isoformat()}",
                hint="whoever holds that key may sign anything; the sender must use its new key",
            )
        rotated = key.rotated_at
        if rotated is not None:
            self._check_rotated(sender, kid, at, rotated)
        return key.public_key

    def _check_rotated(self, sender: str, kid: str, at: datetime, rotated: datetime) -> None:
        if at >= rotated:
            raise RevokedKey(
                f"key {kid} of {sender} was rotated out at {rotated.isoformat()}; the message "
                f"was signed after that ({at.isoformat()})",
                hint="the sender must sign with its current key (reload it after a rotation)",
            )
        now = datetime.fromtimestamp(self._clock(), UTC)
        if now > rotated + self._grace:
            raise RevokedKey(
                f"key {kid} of {sender} was rotated out at {rotated.isoformat()}, more than "
                f"{self._grace} ago; messages signed with it are no longer accepted",
                hint="the sender must sign with its current key",
            )

    def _refused(self, record: SenderRecord) -> RevokedKey:
        if record.suspended:
            return RevokedKey(
                f"a key of {record.did} was reported compromised; its messages are refused "
                "until the registry says which key and since when",
                hint="retry shortly; the verifier is fetching the sender's keys",
            )
        return RevokedKey(
            f"{record.did} is {record.status.value}; its messages are never accepted",
            hint="the agent's identity was revoked in the registry",
        )

    def _unknown_kid(self, record: SenderRecord, kid: str) -> KeyRecord:
        # A kid we do not hold: perhaps a rotation whose event has not reached us yet (the
        # sender may sign with its new key the moment the registry accepts it). Ask again,
        # at most once a second per sender, so made-up kids cannot flood the registry.
        if self._clock() - record.fetched_at >= 1.0:
            record = self._fetch(record.did, record)
            key = record.keys.get(kid)
            if key is not None and record.active and not record.suspended:
                return key
            if not record.active or record.suspended:
                raise self._refused(record)
        raise UnknownKey(
            f"{record.did} has no key {kid} (its current key is {record.current_kid})",
            hint="the message was signed with a key the sender's history does not hold",
        )

    # -- the cache -----------------------------------------------------------------------

    def _current(self, sender: str, record: SenderRecord | None) -> SenderRecord:
        """A record exact enough to answer from, fetching when needed."""
        now = self._clock()
        if record is not None and not record.dirty:
            # Stream down: the record is as exact as the later of its fetch and the
            # moment the stream was last known live.
            if now - max(record.fetched_at, self._exact_until) <= self._max_staleness:
                return record
        elif record is None:
            known = self._known
            if known is not None and self._live and sender not in known:
                raise UnknownKey(
                    f"{sender} is not registered with the registry (as of its event stream)",
                    hint="the sender must register first (`mesh register`)",
                )
            missing = self._missing.get(sender)
            if missing is not None and now - missing < self._negative_ttl:
                raise UnknownKey(
                    f"{sender} is not registered with the registry",
                    hint="the sender must register first (`mesh register`)",
                )
        failed = self._failed.get(sender)
        if failed is not None and now - failed < self._retry_after:
            if record is not None and record.dirty and self._usable_while_dirty(record, now):
                return record
            raise self._unavailable(sender, "a fetch just failed")
        try:
            return self._fetch(sender, record)
        except KeyStatusUnavailable:
            if record is not None and record.dirty and self._usable_while_dirty(record, now):
                return record
            raise

    def _usable_while_dirty(self, record: SenderRecord, now: float) -> bool:
        # A dirty record had the event applied conservatively (status, rotation time);
        # a suspended one refuses everything anyway. Within staleness it may answer.
        if self._live:
            return True
        return now - max(record.fetched_at, self._exact_until) <= self._max_staleness

    def _fetch(self, sender: str, seen: SenderRecord | None = None) -> SenderRecord:
        """Fetch ``sender``, unless another thread replaced ``seen`` (what we found) meanwhile."""
        with self._lock:
            fetch_lock = self._fetch_locks[hash(sender) % _FETCH_STRIPES]
            generation = self._generation.get(sender, 0)
        with fetch_lock:
            held = self._records.get(sender)
            if held is not None and held is not seen and not held.dirty:
                return held
            started = self._clock()
            try:
                resolution = self._source.resolve_did(sender)
            except NotFound:
                with self._lock:
                    _bounded_put(self._missing, sender, started, self._max_senders)
                    self._forget(sender)
                raise UnknownKey(
                    f"{sender} is not registered with the registry",
                    hint="the sender must register first (`mesh register`)",
                ) from None
            except RegistryError as exc:
                with self._lock:
                    _bounded_put(self._failed, sender, self._clock(), self._max_senders)
                raise self._unavailable(sender, str(exc)) from None
            finally:
                self.fetches += 1
            self._failed.pop(sender, None)
            try:
                record = record_from_resolution(sender, resolution, started)
            except (ResolutionError, MeshError) as exc:
                raise RevokedKey(
                    f"the registry's keys for {sender} cannot be trusted: {exc}",
                    hint="treat the identity as compromised",
                ) from None
            with self._lock:
                if self._generation.get(sender, 0) != generation:
                    # An event arrived while we were fetching: use the answer once, fetch again.
                    record.dirty = True
                self._missing.pop(sender, None)
                if sender not in self._records and len(self._records) >= self._max_senders:
                    self._records.pop(next(iter(self._records)))
                self._records[sender] = record
            return record

    def _unavailable(self, sender: str, why: str) -> KeyStatusUnavailable:
        return KeyStatusUnavailable(
            f"cannot establish the keys of {sender}: the registry could not be asked ({why}), "
            "and no cached answer is younger than the allowed staleness "
            f"({self._max_staleness:.0f} s)",
            hint="restore the connection to the registry; messages are refused until "
            "then (or raise max_staleness)",
        )

    def _forget(self, sender: str) -> None:
        self._records.pop(sender, None)

    def follow_feed(self, after_sequence: int) -> WatchHandler:
        """Follow an event feed other than Watch (e.g. the registry's own event log).

        The feed is positioned after ``after_sequence``; the cache counts as exact
        from now on. Give the returned handler every later event in order
        (``handler.event``), and call ``handler.disconnected(why)`` when the feed
        cannot be read (staleness then runs) and ``handler.connected()`` when it
        can again.
        """
        follower = _Follower(self)
        with self._lock:
            self._position = after_sequence
        self._go_live()
        return follower

    def prefetch(self, senders: Iterable[str]) -> None:
        """Resolve ``senders`` now, so their first messages verify from memory."""
        for sender in senders:
            self._fetch(sender, self._records.get(sender))

    # -- the stream (called on the subscription's thread) --------------------------------

    def _go_live(self) -> None:
        self._live = True
        self._synced.set()

    def _go_down(self) -> None:
        if self._live:
            self._exact_until = self._clock()
        self._live = False

    def _apply_event(self, event: events_pb2.Event) -> None:
        did = event.agent_did
        kind = event.type
        with self._lock:
            self._position = max(self._position, event.sequence)
            if not did:
                return
            self._generation[did] = self._generation.get(did, 0) + 1
            if kind == events_pb2.EVENT_TYPE_AGENT_REGISTERED:
                self._missing.pop(did, None)
                if self._known is not None:
                    self._known.add(did)
                if self._staging is not None:
                    self._staging.add(did)
            record = self._records.get(did)
            if record is None:
                return
            record.dirty = True
            if event.HasField("state"):
                status = _STATUS.get(event.state.status)
                if status is not None:
                    record.status = status
            if kind in (
                events_pb2.EVENT_TYPE_AGENT_REVOKED,
                events_pb2.EVENT_TYPE_AGENT_TERMINATED,
            ):
                # Whatever the payload says, a revocation ends the sender.
                if record.status is AgentStatus.ACTIVE:
                    record.status = (
                        AgentStatus.TERMINATED
                        if kind == events_pb2.EVENT_TYPE_AGENT_TERMINATED
                        else AgentStatus.REVOKED
                    )
            elif kind == events_pb2.EVENT_TYPE_KEY_ROTATED:
                self._rotated(record, event)
            elif kind == events_pb2.EVENT_TYPE_KEY_COMPROMISED:
                self._compromised(record, event)

    @staticmethod
    def _rotated(record: SenderRecord, event: events_pb2.Event) -> None:
        # Until the new history arrives, the old current key is rotated out as of the event.
        new_kid = event.state.current_kid if event.HasField("state") else ""
        old = record.keys.get(record.current_kid)
        if old is None or new_kid == record.current_kid:
            return
        # The rotation time in the new history (the event's details), else the event's time.
        at = _parse_time(_details(event).get("rotated_at"))
        if at is None:
            at = event.at.ToDatetime(tzinfo=UTC) if event.HasField("at") else datetime.now(UTC)
        if old.rotated_at is None or old.rotated_at > whole_second(at):
            record.keys[record.current_kid] = KeyRecord.of(
                old.public_key, old.valid_from, at, old.compromised_at
            )

    @staticmethod
    def _compromised(record: SenderRecord, event: events_pb2.Event) -> None:
        details = _details(event)
        kid, since = details.get("kid"), details.get("compromised_at") or details.get("at")
        key = record.keys.get(kid) if isinstance(kid, str) else None
        when = _parse_time(since)
        if key is None or when is None or not isinstance(kid, str):
            record.suspended = True  # which key, since when: unknown until we fetch
            return
        if key.compromised_at is None or key.compromised_at > whole_second(when):
            record.keys[kid] = KeyRecord.of(key.public_key, key.valid_from, key.rotated_at, when)

    def _apply_snapshot_state(self, state: events_pb2.AgentState) -> None:
        with self._lock:
            if self._staging is not None:
                self._staging.add(state.did)
            record = self._records.get(state.did)
            if record is None:
                return
            status = _STATUS.get(state.status)
            if status is not None and status is not record.status:
                record.status = status if status is not AgentStatus.ACTIVE else record.status
                record.dirty = True
            if state.current_kid and state.current_kid != record.current_kid:
                record.dirty = True

    def _finish_snapshot(self, sequence: int) -> None:
        with self._lock:
            self._position = sequence
            if self._staging is not None:
                self._known, self._staging = self._staging, None
            # Records fetched before the snapshot began may predate changes the snapshot
            # summarises without detail (a compromise): fetch them again when next used.
            for record in self._records.values():
                if record.fetched_at < self._snapshot_started:
                    record.dirty = True
        self._go_live()

    def refresh_dirty(self) -> None:
        """Fetch every sender an event marked as changed (the stream thread calls this)."""
        for record in list(self._records.values()):
            if record.dirty:
                try:
                    self._fetch(record.did, record)
                except MeshError as exc:
                    log.info("peer verifier: refresh of %s failed: %s", record.did, exc)


class _Follower:
    """The verifier's side of the Watch stream (:class:`mesh.watch.WatchHandler`)."""

    def __init__(self, verifier: PeerVerifier) -> None:
        self._v = verifier

    def position(self) -> int:
        return self._v._position

    def reset(self) -> None:
        with self._v._lock:
            self._v._position = 0

    def begin_snapshot(self) -> None:
        v = self._v
        with v._lock:
            v._position = 0
            v._snapshot_started = v._clock()
            v._staging = set()

    def snapshot(self, state: events_pb2.AgentState) -> None:
        self._v._apply_snapshot_state(state)

    def snapshot_done(self, sequence: int) -> None:
        self._v._finish_snapshot(sequence)
        self._v.refresh_dirty()

    def event(self, event: events_pb2.Event) -> None:
        self._v._apply_event(event)
        self._v.refresh_dirty()

    def connected(self) -> None:
        # A resumed stream replays what we missed at once; a fresh one is live once
        # its snapshot is applied.
        if self._v._position > 0 or self._v._synced.is_set():
            self._v._go_live()

    def disconnected(self, reason: str) -> None:
        self._v._go_down()
        log.info("peer verifier: event stream down (%s); answering from the cache", reason)



def _bounded_put(table: dict[str, float], key: str, value: float, limit: int) -> None:
    """``table[key] = value``, dropping the oldest entries beyond ``limit`` (strangers' DIDs)."""
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        table.pop(next(iter(table)))


def _details(event: events_pb2.Event) -> dict[str, object]:
    try:
        value = json.loads(event.details_json or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else None
    return None
