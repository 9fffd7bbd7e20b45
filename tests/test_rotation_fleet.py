"""A fleet of 100 agents rotating keys while exchanging signed messages, in compressed time.

Real parts on one injected clock: the store (SQLite), the registry's RotateKey
and compromise logic (:mod:`registry.rotation.keys`, what KeyService runs),
the peer verifier (:class:`mesh.verifier.PeerVerifier`) kept exact by the
registry's event log exactly as VerifyService keeps it, the envelope verifier,
and each agent's :class:`mesh.rotation.RotatingSigner`. Messages are in flight
for 0-3 s, some for many minutes (past the rotation grace). An independent
oracle says which messages are valid; the verifier must agree on every one:
zero rejected valid messages, and zero accepted messages signed by a key at or
after its compromise time (an attacker holding the key keeps signing).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mesh.envelope import ANY_AUDIENCE, Envelope, EnvelopeError, Verifier, sign_message
from mesh.keyhistory import KeyHistory
from mesh.keys import IdentityKey
from mesh.rotation import RotatingSigner, RotationSchedule, rotation_due_at
from mesh.rotation.schedule import next_whole_second
from mesh.spiffeid import TrustDomain, agent_spiffe_id
from mesh.verifier import PeerVerifier
from registry.events.hub import to_event
from registry.rotation import keys as rotation
from registry.services.verify import StoreSource
from registry.store import open_store

T0 = datetime(2026, 6, 1, tzinfo=UTC)
GRACE = timedelta(minutes=5)
SCHEDULE = RotationSchedule(period=timedelta(minutes=3), jitter=timedelta(minutes=1))
FLEET = 100
SIM_SECONDS = 10 * 60
MESSAGES_PER_SECOND = 10
COMPROMISES = 6


@dataclass
class FleetAgent:
    index: int
    key: IdentityKey = field(repr=False)
    signer: RotatingSigner
    serial: str
    due: datetime
    # Compromised keys: kid -> compromise time (the attacker holds those keys).
    stolen: dict[str, datetime] = field(default_factory=dict)
    paused_until: datetime | None = None

    @property
    def did(self) -> str:
        return self.signer.did


@dataclass(order=True)
class InFlight:
    deliver_at: datetime
    seq: int
    envelope: Envelope = field(compare=False)
    sender: int = field(compare=False)
    forged: bool = field(compare=False, default=False)


class Fleet:
    def __init__(self, tmp: Path, seed: int = 7) -> None:
        self.now = T0
        self.rng = random.Random(seed)
        self.store = open_store(None, tmp, clock=lambda: self.now)
        self.store.upgrade()
        td = TrustDomain.parse("fleet.mesh")
        self.agents: list[FleetAgent] = []
        for i in range(FLEET):
            key = IdentityKey.generate()
            incepted = self.now - timedelta(seconds=self.rng.randrange(0, 3 * 60))
            history = KeyHistory.incept(key, incepted.replace(microsecond=0))
            did = str(history.did)
            serial = f"{i + 1:032x}"
            with self.store.transaction() as tx:
                tx.agents.create(did=did, name=f"fleet/{i}", spiffe_id=str(
                    agent_spiffe_id(td, history.did)))
                tx.keys.add(did=did, index=0, kid=key.kid, public_key=key.public_key,
                            valid_from=history.inception.valid_from)
                tx.keys.put_history(did, history.to_json())
                tx.svids.record(serial=serial, did=did, kind="x509", not_before=self.now,
                                not_after=self.now + timedelta(days=1))
            self.agents.append(FleetAgent(
                i, key, RotatingSigner(key, history, clock=lambda: self.now), serial,
                rotation_due_at(history.current.valid_from, SCHEDULE, self.rng),
            ))
        seconds = lambda: self.now.timestamp()  # noqa: E731
        self.peer = PeerVerifier(StoreSource(self.store), grace=GRACE, clock=seconds)
        self.feed = self.peer.follow_feed(self.store.latest_event_seq())
        self.verifier = Verifier(self.peer, audience=ANY_AUDIENCE, clock=seconds)
        self.queue: list[InFlight] = []
        self.sent = 0
        self.stats = {"valid_accepted": 0, "valid_rejected": 0, "invalid_rejected": 0,
                      "invalid_accepted": 0, "forged_rejected": 0, "forged_accepted": 0,
                      "rotations": 0, "compromises": 0}
        self.mistakes: list[str] = []

    # -- the registry's side, exactly as the services do it -----------------------------

    def sync(self) -> None:
        """Apply the events committed since the last call (VerifyService._sync)."""
        while True:
            records = self.store.events_since(self.feed.position(), 1000)
            for record in records:
                self.feed.event(to_event(record))
            if len(records) < 1000:
                return

    def rotate(self, agent: FleetAgent) -> None:
        """The agent rotates (RotateKey over mTLS with its SVID)."""
        next_key = IdentityKey.generate()
        at = next_whole_second(self.now + timedelta(seconds=1))
        history = agent.signer.history.rotate(agent.key, next_key, at)
        result = rotation.rotate_key(
            self.store, history, history.to_json(), caller_did=agent.did,
            caller_serial=agent.serial, actor=f"agent:{agent.index}",
        )
        assert result.rotated and result.current.kid == next_key.kid
        agent.signer.adopt(next_key, history)  # signs with it from `at` on
        agent.key = next_key
        agent.due = rotation_due_at(at, SCHEDULE, self.rng)
        self.stats["rotations"] += 1

    def compromise(self, agent: FleetAgent) -> None:
        """An operator marks the agent's current key compromised now; the agent rotates."""
        at = self.now.replace(microsecond=0)
        rotation.mark_compromised(self.store, agent.did, None, at, reason="sim", actor="op")
        agent.stolen[agent.key.kid] = at
        stolen_key = agent.key
        self.rotate(agent)
        # Until the rotation time it would sign with the compromised key: it waits.
        agent.paused_until = agent.signer.history.current.valid_from
        self.stats["compromises"] += 1
        self._attacker_keys.append((agent, stolen_key))

    _attacker_keys: list[tuple[FleetAgent, IdentityKey]]

    # -- traffic ----------------------------------------------------------------------

    def send(self, agent: FleetAgent, delay: timedelta, ttl: timedelta) -> None:
        envelope = agent.signer.sign(b'{"op":"ping"}', audience="fleet", ttl=ttl)
        self.sent += 1
        heapq.heappush(self.queue, InFlight(self.now + delay, self.sent, envelope, agent.index))

    def forge(self, agent: FleetAgent, key: IdentityKey) -> None:
        """The attacker signs with the stolen key, as of now."""
        envelope = sign_message(key, agent.did, "application/json", b'{"op":"drain"}', "fleet",
                                ttl=timedelta(minutes=5), now=self.now)
        self.sent += 1
        delay = timedelta(seconds=self.rng.uniform(0, 3))
        heapq.heappush(self.queue,
                       InFlight(self.now + delay, self.sent, envelope, agent.index, forged=True))

    def deliver(self) -> None:
        self.sync()
        while self.queue and self.queue[0].deliver_at <= self.now:
            item = heapq.heappop(self.queue)
            self._check(item)

    def _check(self, item: InFlight) -> None:
        envelope = item.envelope
        try:
            self.verifier.verify(envelope)
            accepted, why = True, ""
        except EnvelopeError as exc:
            accepted, why = False, f"{exc.reason}: {exc}"
        if item.forged:
            self.stats["forged_accepted" if accepted else "forged_rejected"] += 1
            if accepted:
                self.mistakes.append(f"forged message accepted: {envelope.kid} {why}")
            return
        reason = self.oracle(self.agents[item.sender], envelope)
        valid = reason == "valid"
        if valid == accepted:
            self.stats["valid_accepted" if valid else "invalid_rejected"] += 1
            if not valid:
                self.stats[f"rejected_{reason}"] = self.stats.get(f"rejected_{reason}", 0) + 1
            return
        self.stats["valid_rejected" if valid else "invalid_accepted"] += 1
        self.mistakes.append(
            f"{'rejected valid' if valid else 'accepted invalid'} message from agent "
            f"{item.sender} kid {envelope.kid} issued {envelope.issued_at} at {self.now}: {why}"
        )

    def oracle(self, agent: FleetAgent, envelope: Envelope) -> str:
        """Says "valid" when the key was the sender's current key at issued-at (whole seconds),
        not compromised by then, within the grace if rotated since, and the message is alive;
        otherwise why not."""
        issued = datetime.fromtimestamp(envelope.issued_at, UTC)
        period = agent.signer.history.period_for(envelope.kid)
        if period is None or issued < period.valid_from.replace(microsecond=0):
            return "unknown_key"
        compromised = agent.stolen.get(envelope.kid)
        if compromised is not None and issued >= compromised:
            return "compromised"
        if period.rotated_at is not None:
            if issued >= period.rotated_at:
                return "after_rotation"
            if self.now > period.rotated_at + GRACE:
                return "past_grace"
        if not envelope.issued_at <= self.now.timestamp() <= envelope.expires_at + 60:
            return "expired"
        return "valid"

    # -- the run ------------------------------------------------------------------------

    def run(self) -> None:
        self._attacker_keys = []
        compromise_at = sorted(self.rng.sample(range(60, SIM_SECONDS - 60), COMPROMISES))
        for second in range(SIM_SECONDS):
            self.now = T0 + timedelta(seconds=second, microseconds=self.rng.randrange(10**6))
            for agent in self.agents:
                if self.now >= agent.due:
                    self.rotate(agent)
            if compromise_at and second >= compromise_at[0]:
                compromise_at.pop(0)
                victims = [a for a in self.agents if a.paused_until is None]
                self.compromise(self.rng.choice(victims))
            for _ in range(MESSAGES_PER_SECOND):
                agent = self.rng.choice(self.agents)
                if agent.paused_until is not None:
                    if self.now < agent.paused_until:
                        continue
                    agent.paused_until = None
                if self.rng.random() < 0.03:  # held up for minutes, some past the grace
                    delay = timedelta(minutes=self.rng.uniform(1, 12))
                    self.send(agent, delay, ttl=timedelta(minutes=50))
                else:
                    delay = timedelta(seconds=self.rng.uniform(0, 3))
                    self.send(agent, delay, ttl=timedelta(minutes=5))
            for agent, key in self._attacker_keys:
                if self.rng.random() < 0.5:
                    self.forge(agent, key)
            self.deliver()
        self.now += timedelta(minutes=15)
        self.deliver()


def test_fleet_rotates_under_traffic_without_a_wrong_verdict(tmp_path: Path) -> None:
    fleet = Fleet(tmp_path)
    fleet.run()
    stats = fleet.stats
    assert fleet.mistakes == [], fleet.mistakes[:5]
    assert stats["valid_rejected"] == 0 and stats["invalid_accepted"] == 0
    assert stats["forged_accepted"] == 0 and stats["forged_rejected"] > 100
    # It really happened: every agent rotated several times under traffic; compromises;
    # messages in flight across rotations; late ones past the grace were refused.
    assert stats["rotations"] >= FLEET * 3 and stats["compromises"] == COMPROMISES
    assert stats["valid_accepted"] > 5_000
    # Messages held up past the grace: the rotated-out key no longer verifies them.
    assert stats.get("rejected_past_grace", 0) > 0
    with fleet.store.read() as view:
        kinds = [e.type for e in view.events.since(0, limit=10_000)]
    assert kinds.count("agent.key_rotated") == stats["rotations"]
    assert kinds.count("agent.key_compromised") == COMPROMISES
    fleet.store.close()
