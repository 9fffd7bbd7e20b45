"""The peer verifier: rotation and revocation races, grace, events, outage and staleness.

The registry cannot rotate keys over its API yet, so these tests give the
verifier a small in-process :class:`DIDSource` serving real, signed key
histories (the same ``Resolution`` values the registry client returns).
The events are the protobuf messages ``EventService.Watch`` streams.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mesh.client.errors import NotFound, RegistryUnavailable
from mesh.client.types import Agent, AgentStatus, KeyInfo, Resolution
from mesh.envelope import RevokedKey, UnknownKey, Verifier, sign_message
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.v1 import events_pb2, types_pb2
from mesh.verifier import KeyStatusUnavailable, PeerVerifier
from mesh.verifier.peer import _Follower

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
ROTATED = T0 + timedelta(days=30)
ME = "spiffe://example.org/agent/me"
OLD = IdentityKey.from_seed(bytes(range(32)))
NEW = IdentityKey.from_seed(bytes(range(2, 34)))
SENDER = str(OLD.did())
INCEPTED = KeyHistory.incept(OLD, T0)
ROTATED_HISTORY = INCEPTED.rotate(OLD, NEW, ROTATED)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, at: datetime) -> None:
        self.now = at.timestamp()


class Histories:
    """A DIDSource over signed key histories; ``down`` makes it unreachable."""

    def __init__(self, *histories: KeyHistory) -> None:
        self.histories = {str(h.did): h for h in histories}
        self.status: dict[str, AgentStatus] = {}
        self.compromised: dict[str, datetime] = {}
        self.down = False
        self.calls = 0

    def resolve_did(self, did: str) -> Resolution:
        self.calls += 1
        if self.down:
            raise RegistryUnavailable("cannot reach the registry at 127.0.0.1:1: refused")
        history = self.histories.get(did)
        if history is None:
            raise NotFound(f"registry refused the call (NOT_FOUND): {did} is not registered")
        keys = tuple(
            KeyInfo(
                p.kid, p.public_key, p.index, p.valid_from, p.rotated_at,
                self.compromised.get(p.kid),
            )
            for p in history.periods
        )
        agent = Agent(
            did=did, name="a", spiffe_id="", status=self.status.get(did, AgentStatus.ACTIVE),
            granted_ring=2, current_key=keys[-1], metadata={}, created_at=T0, updated_at=T0,
            revoked_at=None, revoke_reason="",
        )
        return Resolution(agent, keys, history.to_json(), None)


def make(source: Histories, clock: Clock, **kwargs: object) -> tuple[PeerVerifier, _Follower]:
    kwargs.setdefault("retry_after", timedelta(0))
    peer = PeerVerifier(source, clock=clock, **kwargs)  # type: ignore[arg-type]
    return peer, _Follower(peer)


def go_live(follower: _Follower, sequence: int = 1, *dids: str) -> None:
    """What a fresh Watch stream does: connect, snapshot (SENDER and ``dids``), done."""
    follower.connected()
    follower.begin_snapshot()
    for did in (SENDER, *dids):
        follower.snapshot(events_pb2.AgentState(did=did, status=types_pb2.AGENT_STATUS_ACTIVE))
    follower.snapshot_done(sequence)


def event(
    kind: int, at: datetime, sequence: int, *, status: int = types_pb2.AGENT_STATUS_ACTIVE,
    kid: str = "", details: dict[str, object] | None = None, did: str = SENDER,
) -> events_pb2.Event:
    ts = Timestamp()
    ts.FromDatetime(at)
    return events_pb2.Event(
        sequence=sequence, type=kind, agent_did=did, at=ts,  # type: ignore[arg-type]
        state=events_pb2.AgentState(did=did, status=status, current_kid=kid),  # type: ignore[arg-type]
        details_json=json.dumps(details or {}),
    )


def verify(peer: PeerVerifier, clock: Clock, key: IdentityKey, issued: datetime) -> None:
    envelope = sign_message(key, SENDER, "t", b"x", ME, now=issued)
    Verifier(peer, audience=ME, clock=clock).verify(envelope)


# -- warm cache ---------------------------------------------------------------------------


def test_a_sender_is_fetched_once_then_answered_from_memory() -> None:
    source, clock = Histories(INCEPTED), Clock(T0 + timedelta(hours=1))
    peer, follower = make(source, clock)
    go_live(follower)
    for _ in range(5):
        verify(peer, clock, OLD, T0 + timedelta(hours=1))
    assert source.calls == 1
    assert len(peer) == 1


def test_an_unregistered_sender_is_unknown_and_remembered_briefly() -> None:
    # Without the stream's list of agents (not live), strangers are asked about once.
    stranger = IdentityKey.from_seed(bytes(range(5, 37)))
    source, clock = Histories(INCEPTED), Clock(T0)
    peer, follower = make(source, clock)
    envelope = sign_message(stranger, str(stranger.did()), "t", b"x", ME, now=T0)
    verifier = Verifier(peer, audience=ME, clock=clock)
    for _ in range(3):
        with pytest.raises(UnknownKey, match="not registered"):
            verifier.verify(envelope)
    assert source.calls == 1
    # It registers: the event clears the negative answer at once.
    source.histories[str(stranger.did())] = KeyHistory.incept(stranger, T0)
    follower.event(event(events_pb2.EVENT_TYPE_AGENT_REGISTERED, T0, 2, did=str(stranger.did())))
    verifier.verify(envelope)


# -- rotation race and grace ------------------------------------------------------------


def test_rotation_race_signed_just_before_is_accepted_just_after_is_refused() -> None:
    source, clock = Histories(ROTATED_HISTORY), Clock(ROTATED + timedelta(seconds=30))
    peer, follower = make(source, clock)
    go_live(follower)
    verify(peer, clock, OLD, ROTATED - timedelta(seconds=1))
    with pytest.raises(RevokedKey, match="signed after"):
        verify(peer, clock, OLD, ROTATED)
    with pytest.raises(RevokedKey, match="signed after"):
        verify(peer, clock, OLD, ROTATED + timedelta(seconds=1))
    verify(peer, clock, NEW, ROTATED)
    with pytest.raises(UnknownKey, match="introduced"):
        verify(peer, clock, NEW, ROTATED - timedelta(seconds=1))


def test_the_grace_window_bounds_how_long_old_key_messages_are_accepted() -> None:
    grace = timedelta(minutes=10)
    source = Histories(ROTATED_HISTORY)
    clock = Clock(ROTATED + grace)
    peer, follower = make(source, clock, grace=grace)
    go_live(follower)
    verifier = Verifier(peer, audience=ME, clock=clock)
    # Signed a second before the rotation, verified at the very end of the grace window.
    before = ROTATED - timedelta(seconds=1)
    verifier.verify(sign_message(OLD, SENDER, "t", b"x", ME, now=before, ttl=timedelta(hours=1)))
    clock.set(ROTATED + grace + timedelta(seconds=1))
    late = sign_message(OLD, SENDER, "t", b"y", ME, now=before, ttl=timedelta(hours=1))
    with pytest.raises(RevokedKey, match="0:10:00 ago"):
        verifier.verify(late)
    # The new key is unaffected.
    verifier.verify(sign_message(NEW, SENDER, "t", b"z", ME, now=ROTATED + grace))


def test_a_rotation_event_retires_the_old_key_at_once_even_while_the_registry_is_down() -> None:
    source, clock = Histories(INCEPTED), Clock(ROTATED - timedelta(minutes=1))
    peer, follower = make(source, clock)
    go_live(follower)
    verify(peer, clock, OLD, ROTATED - timedelta(minutes=1))
    # The registry rotates the key and then becomes unreachable before we can fetch.
    source.histories[SENDER] = ROTATED_HISTORY
    source.down = True
    clock.set(ROTATED + timedelta(seconds=2))
    follower.event(event(events_pb2.EVENT_TYPE_KEY_ROTATED, ROTATED, 2, kid=NEW.kid))
    with pytest.raises(RevokedKey, match="signed after"):
        verify(peer, clock, OLD, ROTATED + timedelta(seconds=1))
    # A message signed just before the rotation still passes (within grace).
    verify(peer, clock, OLD, ROTATED - timedelta(seconds=1))
    # Once the registry answers, the new key is learnt from the new history.
    source.down = False
    verify(peer, clock, NEW, ROTATED + timedelta(seconds=1))


# -- revocation race ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "word"),
    [
        (events_pb2.EVENT_TYPE_AGENT_REVOKED, types_pb2.AGENT_STATUS_REVOKED, "revoked"),
        (events_pb2.EVENT_TYPE_AGENT_TERMINATED, types_pb2.AGENT_STATUS_TERMINATED, "terminated"),
    ],
)
def test_revocation_stops_verification_on_the_event_without_a_fetch(
    kind: int, status: int, word: str
) -> None:
    source, clock = Histories(INCEPTED), Clock(T0 + timedelta(hours=1))
    peer, follower = make(source, clock)
    go_live(follower)
    signed_before = sign_message(OLD, SENDER, "t", b"a", ME, now=T0 + timedelta(hours=1))
    signed_after = sign_message(OLD, SENDER, "t", b"b", ME, now=T0 + timedelta(hours=1))
    verifier = Verifier(peer, audience=ME, clock=clock)
    verifier.verify(signed_before)
    source.down = True  # whatever the registry does next, the event alone must suffice
    follower.event(event(kind, T0 + timedelta(hours=1), 2, status=status, kid=OLD.kid))
    with pytest.raises(RevokedKey, match=word):
        verifier.verify(signed_after)


def test_a_revocation_seen_only_in_a_fresh_snapshot_is_applied() -> None:
    source, clock = Histories(INCEPTED), Clock(T0 + timedelta(hours=1))
    peer, follower = make(source, clock)
    go_live(follower)
    verify(peer, clock, OLD, T0 + timedelta(hours=1))
    follower.disconnected("UNAVAILABLE: gone")
    source.status[SENDER] = AgentStatus.REVOKED
    # The stream comes back after its position was pruned: a fresh snapshot.
    follower.begin_snapshot()
    follower.snapshot(events_pb2.AgentState(did=SENDER, status=types_pb2.AGENT_STATUS_REVOKED))
    follower.snapshot_done(50)
    with pytest.raises(RevokedKey, match="revoked"):
        verify(peer, clock, OLD, T0 + timedelta(hours=1))


# -- compromise ---------------------------------------------------------------------------


def test_a_compromise_event_refuses_signatures_at_and_after_its_time() -> None:
    source, clock = Histories(INCEPTED), Clock(T0 + timedelta(hours=2))
    peer, follower = make(source, clock)
    go_live(follower)
    since = T0 + timedelta(hours=2) - timedelta(seconds=10)
    verify(peer, clock, OLD, since - timedelta(seconds=5))
    source.compromised[OLD.kid] = since
    source.down = True
    follower.event(
        event(
            events_pb2.EVENT_TYPE_KEY_COMPROMISED, since, 2, kid=OLD.kid,
            details={"kid": OLD.kid, "compromised_at": since.isoformat()},
        )
    )
    verify(peer, clock, OLD, since - timedelta(seconds=1))
    with pytest.raises(RevokedKey, match="compromised"):
        verify(peer, clock, OLD, since)
    source.down = False
    with pytest.raises(RevokedKey, match="compromised"):
        verify(peer, clock, OLD, since + timedelta(seconds=5))


def test_a_compromise_without_details_suspends_the_sender_until_it_is_fetched() -> None:
    source, clock = Histories(INCEPTED), Clock(T0 + timedelta(hours=2))
    peer, follower = make(source, clock)
    go_live(follower)
    verify(peer, clock, OLD, T0 + timedelta(hours=2))
    since = T0 + timedelta(hours=2) - timedelta(seconds=10)
    source.compromised[OLD.kid] = since
    source.down = True
    follower.event(event(events_pb2.EVENT_TYPE_KEY_COMPROMISED, since, 2, kid=OLD.kid))
    with pytest.raises(RevokedKey, match="reported compromised"):
        verify(peer, clock, OLD, since - timedelta(seconds=1))
    source.down = False
    verify(peer, clock, OLD, since - timedelta(seconds=1))
    with pytest.raises(RevokedKey, match="compromised as of"):
        verify(peer, clock, OLD, since)


# -- outage and staleness -----------------------------------------------------------------


def test_outage_accept_from_cache_within_staleness_then_fail_closed() -> None:
    source, clock = Histories(INCEPTED), Clock(T0 + timedelta(hours=1))
    peer, follower = make(source, clock, max_staleness=timedelta(minutes=5))
    go_live(follower)
    verify(peer, clock, OLD, T0 + timedelta(hours=1))
    # The stream drops and the registry is unreachable.
    follower.disconnected("UNAVAILABLE: connection refused")
    source.down = True
    assert not peer.live
    down_at = T0 + timedelta(hours=1)
    clock.set(down_at + timedelta(minutes=5))
    verify(peer, clock, OLD, down_at + timedelta(minutes=5))
    assert peer.staleness() == pytest.approx(300)
    clock.set(down_at + timedelta(minutes=5, seconds=1))
    with pytest.raises(KeyStatusUnavailable, match="could not be asked") as info:
        verify(peer, clock, OLD, down_at + timedelta(minutes=5, seconds=1))
    assert info.value.reason == "KeyStatusUnavailable"
    assert "registry" in (info.value.hint or "")
    # The registry answers again: fetched afresh, accepted, fresh for another window.
    source.down = False
    verify(peer, clock, OLD, down_at + timedelta(minutes=5, seconds=1))
    source.down = True
    clock.set(down_at + timedelta(minutes=10))
    verify(peer, clock, OLD, down_at + timedelta(minutes=10))


def test_a_sender_never_seen_fails_closed_while_the_registry_is_down() -> None:
    source, clock = Histories(INCEPTED), Clock(T0)
    peer, _ = make(source, clock)
    source.down = True
    with pytest.raises(KeyStatusUnavailable):
        verify(peer, clock, OLD, T0)


def test_a_resumed_stream_is_live_at_once_and_applies_what_it_missed() -> None:
    source, clock = Histories(INCEPTED), Clock(T0 + timedelta(hours=1))
    peer, follower = make(source, clock, max_staleness=timedelta(seconds=10))
    go_live(follower, 7)
    verify(peer, clock, OLD, T0 + timedelta(hours=1))
    follower.disconnected("UNAVAILABLE")
    clock.set(T0 + timedelta(hours=1, minutes=1))
    source.down = True
    with pytest.raises(KeyStatusUnavailable):
        verify(peer, clock, OLD, T0 + timedelta(hours=1, minutes=1))
    assert follower.position() == 7
    follower.connected()
    assert peer.live
    verify(peer, clock, OLD, T0 + timedelta(hours=1, minutes=1))
    follower.event(
        event(
            events_pb2.EVENT_TYPE_AGENT_REVOKED, T0, 8, status=types_pb2.AGENT_STATUS_REVOKED
        )
    )
    assert follower.position() == 8
    with pytest.raises(RevokedKey):
        verify(peer, clock, OLD, T0 + timedelta(hours=1, minutes=1))


def test_a_history_that_does_not_verify_is_refused() -> None:
    source, clock = Histories(INCEPTED), Clock(T0)
    peer, follower = make(source, clock)
    go_live(follower)
    forged = json.loads(INCEPTED.to_json())
    forged["entries"][0]["signature"] = forged["entries"][0]["signature"][::-1]
    original = source.resolve_did

    def tampered(did: str) -> Resolution:
        resolution = original(did)
        return Resolution(resolution.agent, resolution.keys, json.dumps(forged), None)

    source.resolve_did = tampered  # type: ignore[method-assign]
    with pytest.raises(RevokedKey, match="cannot be trusted"):
        verify(peer, clock, OLD, T0)


def test_while_the_registry_is_down_fetches_are_spaced_by_retry_after() -> None:
    source, clock = Histories(INCEPTED), Clock(T0)
    peer, _ = make(source, clock, retry_after=timedelta(seconds=1))
    source.down = True
    for _ in range(20):
        with pytest.raises(KeyStatusUnavailable):
            verify(peer, clock, OLD, T0)
    assert source.calls == 1
    clock.set(T0 + timedelta(seconds=1))
    source.down = False
    verify(peer, clock, OLD, T0 + timedelta(seconds=1))
    assert source.calls == 2


def test_times_within_the_second_of_issued_at_resolve_safely() -> None:
    # issued-at has whole-second resolution: a key rotated out at 12:00:00.3 must not pass
    # an old-key message "issued at 12:00:00" (it may have been signed at 12:00:00.9),
    # while a key incepted at 12:00:00.7 does sign messages issued at 12:00:00.
    rotation = ROTATED + timedelta(milliseconds=300)
    history = KeyHistory.incept(OLD, T0 + timedelta(milliseconds=700)).rotate(OLD, NEW, rotation)
    source, clock = Histories(history), Clock(ROTATED)
    peer, follower = make(source, clock)
    go_live(follower)
    verify(peer, clock, OLD, ROTATED - timedelta(seconds=1))
    with pytest.raises(RevokedKey, match="signed after"):
        verify(peer, clock, OLD, ROTATED)
    verify(peer, clock, NEW, ROTATED)
    source2 = Histories(KeyHistory.incept(OLD, T0 + timedelta(milliseconds=700)))
    source2.compromised[OLD.kid] = T0 + timedelta(hours=1, milliseconds=300)
    clock = Clock(T0 + timedelta(hours=1))
    peer, follower = make(source2, clock)
    go_live(follower)
    verify(peer, clock, OLD, T0 + timedelta(minutes=59, seconds=59))
    with pytest.raises(RevokedKey, match="compromised"):
        verify(peer, clock, OLD, T0 + timedelta(hours=1))


def test_a_live_verifier_refuses_strangers_without_asking_the_registry() -> None:
    stranger = IdentityKey.from_seed(bytes(range(7, 39)))
    source, clock = Histories(INCEPTED), Clock(T0)
    peer, follower = make(source, clock)
    go_live(follower)
    verifier = Verifier(peer, audience=ME, clock=clock)
    for i in range(50):
        did = str(IdentityKey.from_seed(bytes([i]) * 32).did())
        with pytest.raises(UnknownKey, match="as of its event stream"):
            verifier.verify(sign_message(stranger, did, "t", b"x", ME, now=T0))
    assert source.calls == 0
    verify(peer, clock, OLD, T0)
    assert source.calls == 1
    # A registration event makes the newcomer known at once.
    source.histories[str(stranger.did())] = KeyHistory.incept(stranger, T0)
    follower.event(event(events_pb2.EVENT_TYPE_AGENT_REGISTERED, T0, 2, did=str(stranger.did())))
    verifier.verify(sign_message(stranger, str(stranger.did()), "t", b"x", ME, now=T0))


def test_a_new_key_ahead_of_its_event_is_fetched_at_most_once_a_second() -> None:
    source, clock = Histories(INCEPTED), Clock(ROTATED - timedelta(seconds=5))
    peer, follower = make(source, clock)
    go_live(follower)
    verify(peer, clock, OLD, ROTATED - timedelta(seconds=5))
    # The sender rotates and signs with its new key before the event reaches us.
    source.histories[SENDER] = ROTATED_HISTORY
    clock.set(ROTATED + timedelta(seconds=1))
    verify(peer, clock, NEW, ROTATED + timedelta(seconds=1))
    assert source.calls == 2
    # Made-up kids: refused, and the registry is asked at most once a second.
    stranger = IdentityKey.from_seed(bytes(range(9, 41)))
    verifier = Verifier(peer, audience=ME, clock=clock)
    for second in (0, 0, 0, 1, 1, 1):
        clock.set(ROTATED + timedelta(seconds=1 + second))
        envelope = sign_message(stranger, SENDER, "t", b"x", ME, now=ROTATED)
        with pytest.raises(UnknownKey, match="has no key"):
            verifier.verify(envelope)
    assert source.calls == 3
