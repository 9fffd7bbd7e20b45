"""The CA schedule: pure rules, then many SVID renewals across two CA rotations in compressed time.

The simulation runs the real CA (``registry.ca``) on an injected clock, the
real rotator (:class:`registry.rotation.ca.CARotator`, as the scheduler runs
it every minute) over a real store, and agents that renew their X.509-SVID at
half life with jitter and keep the bundle that came with it. Every simulated
minute peers authenticate each other as in an mTLS handshake: each side
validates the other's SVID chain against its own bundle at that instant
(SPIFFE X.509-SVID validation) and checks possession of the leaf's key.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mesh.bundle import Bundle
from mesh.client.renewal import renewal_time
from mesh.errors import MeshError
from mesh.svid import verify_x509svid
from registry.ca import AuthorityState, CertificateAuthority
from registry.ca.authority import CA_BACKDATE
from registry.ca.errors import CAStateError
from registry.ca.schedule import (
    ActionKind,
    SchedulePolicy,
    activation_time,
    next_change,
    plan,
    prepare_time,
)
from registry.rotation.ca import CARotator
from registry.store import open_store

T0 = datetime(2026, 3, 1, tzinfo=UTC)
TD = "sim.mesh"


@dataclass
class _A:
    id: str
    state: AuthorityState
    not_before: datetime
    not_after: datetime


def authority(id_: str, state: AuthorityState, start: datetime, ttl: timedelta) -> _A:
    return _A(id_, state, start - CA_BACKDATE, start + ttl)


# -- pure rules ---------------------------------------------------------------------------------


def test_prepare_at_half_life_activate_at_five_sixths() -> None:
    policy = SchedulePolicy(propagation=timedelta(hours=1))
    ttl = timedelta(days=6)
    active = authority("a", AuthorityState.ACTIVE, T0, ttl)
    assert prepare_time(active, policy) == T0 + timedelta(days=3)
    assert plan([active], [], T0 + timedelta(days=2, hours=23), policy) == []
    (action,) = plan([active], [], T0 + timedelta(days=3), policy)
    assert action.kind is ActionKind.PREPARE and action.family == "x509"
    prepared = authority("b", AuthorityState.PREPARED, T0 + timedelta(days=3), ttl)
    assert activation_time(active, prepared, policy) == T0 + timedelta(days=5)
    assert plan([active, prepared], [], T0 + timedelta(days=4, hours=23), policy) == []
    (action,) = plan([active, prepared], [], T0 + timedelta(days=5), policy)
    assert action.kind is ActionKind.ACTIVATE and action.authority_id == "b"
    assert next_change([("x509", [active, prepared])], policy) == (
        T0 + timedelta(days=5), "activate x509 b"
    )


def test_activation_waits_for_propagation_but_not_past_expiry() -> None:
    policy = SchedulePolicy(propagation=timedelta(hours=10))
    active = authority("a", AuthorityState.ACTIVE, T0, timedelta(days=6))
    # Prepared late (the registry was down): activation waits for the propagation delay ...
    late = authority("b", AuthorityState.PREPARED, T0 + timedelta(days=5), timedelta(days=6))
    assert activation_time(active, late, policy) == T0 + timedelta(days=5, hours=10)
    # ... but never past the point where the active one has less than that left.
    later = authority("c", AuthorityState.PREPARED, T0 + timedelta(days=5, hours=20),
                      timedelta(days=6))
    assert activation_time(active, later, policy) == active.not_after - timedelta(hours=10)


def test_retired_authorities_are_pruned_once_expired() -> None:
    policy = SchedulePolicy()
    retired = authority("old", AuthorityState.RETIRED, T0, timedelta(days=1))
    active = authority("new", AuthorityState.ACTIVE, T0 + timedelta(hours=12), timedelta(days=2))
    assert plan([retired, active], [], T0 + timedelta(hours=23), policy) == []
    actions = plan([retired, active], [], T0 + timedelta(days=1), policy)
    assert [(a.kind, a.authority_id) for a in actions] == [(ActionKind.PRUNE, "old")]


def test_policy_validation() -> None:
    with pytest.raises(CAStateError):
        SchedulePolicy(prepare_at=0.9, activate_at=0.5)
    with pytest.raises(CAStateError):
        SchedulePolicy(propagation=timedelta(seconds=-1))
    with pytest.raises(CAStateError, match="propagation"):
        SchedulePolicy(propagation=timedelta(hours=2)).check_lifetime(timedelta(hours=3))
    SchedulePolicy(propagation=timedelta(hours=1)).check_lifetime(timedelta(days=1))


# -- compressed time -----------------------------------------------------------------------------


@dataclass
class SimAgent:
    spiffe_id: str
    key: ec.EllipticCurvePrivateKey = field(repr=False)
    chain: list[x509.Certificate]
    bundle: Bundle
    renew_at: datetime


class Sim:
    def __init__(self, tmp: Path, *, ca_ttl: timedelta, svid_ttl: timedelta, agents: int,
                 seed: int = 1) -> None:
        self.now = T0
        self.rng = random.Random(seed)
        self.svid_ttl = svid_ttl
        self.ca = CertificateAuthority.open(tmp / "ca", TD, clock=lambda: self.now, ca_ttl=ca_ttl)
        self.store = open_store(None, tmp, clock=lambda: self.now)
        self.store.upgrade()
        self.rotator = CARotator(self.ca, self.store, SchedulePolicy(propagation=svid_ttl))
        self.renewals = 0
        self.handshakes = 0
        self.failures: list[str] = []
        self.changes: list[str] = []
        self.agents = [self._new_agent(i) for i in range(agents)]

    def _new_agent(self, i: int) -> SimAgent:
        agent = SimAgent(f"spiffe://{TD}/agent/sim{i}", ec.generate_private_key(ec.SECP256R1()),
                         [], self.ca.bundle(), self.now)
        self._renew(agent)
        return agent

    def _renew(self, agent: SimAgent) -> None:
        # What RenewX509SVID does: a leaf from the agent's CSR, and the current bundle.
        agent.key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
            agent.key, hashes.SHA256()
        )
        agent.chain = self.ca.issue_x509_svid(
            csr.public_bytes(serialization.Encoding.DER), agent.spiffe_id, ttl=self.svid_ttl
        )
        agent.bundle = self.ca.bundle()
        leaf = agent.chain[0]
        agent.renew_at = renewal_time(
            leaf.not_valid_before_utc, leaf.not_valid_after_utc, jitter=0.1, rng=self.rng
        )
        self.renewals += 1

    def handshake(self, a: SimAgent, b: SimAgent) -> None:
        """Mutual authentication: each side validates the other's SVID with its own bundle."""
        for local, remote in ((a, b), (b, a)):
            try:
                verify_x509svid(remote.chain, local.bundle, now=self.now)
            except MeshError as exc:
                self.failures.append(f"{self.now} {local.spiffe_id} <- {remote.spiffe_id}: {exc}")
                continue
            transcript = self.rng.randbytes(32)
            signature = remote.key.sign(transcript, ec.ECDSA(hashes.SHA256()))
            remote.chain[0].public_key().verify(  # type: ignore[union-attr]
                signature, transcript, ec.ECDSA(hashes.SHA256())
            )
        self.handshakes += 1

    def step(self, minutes: int = 1, pairs: int = 4) -> None:
        self.now += timedelta(minutes=minutes)
        self.changes.extend(self.rotator.tick())  # the scheduler's job, every minute
        for agent in self.agents:
            if self.now >= agent.renew_at:
                self._renew(agent)
        for _ in range(pairs):
            a, b = self.rng.sample(self.agents, 2)
            self.handshake(a, b)


def test_many_renewals_across_two_ca_rotations(tmp_path: Path) -> None:
    sim = Sim(tmp_path, ca_ttl=timedelta(hours=24), svid_ttl=timedelta(hours=1), agents=8)
    first = sim.ca.active_x509_authority().id
    activated: list[str] = []
    for _ in range(37 * 30):  # 37 hours in 2-minute steps
        before = sim.ca.sequence
        sim.step(minutes=2, pairs=1)
        if sim.ca.sequence != before:
            # Right after every change to the authority set, every pair shakes hands.
            for i, a in enumerate(sim.agents):
                for b in sim.agents[i + 1 :]:
                    sim.handshake(a, b)
        active = sim.ca.active_x509_authority().id
        if active not in activated and active != first:
            activated.append(active)
    assert sim.failures == []
    assert len(activated) == 2, sim.changes  # two rotations of the signing CA
    assert sim.renewals > 8 * 70 and sim.handshakes > 1_000
    kinds = [c.split()[0] for c in sim.changes]
    assert kinds.count("prepare") >= 4 and kinds.count("activate") >= 4  # X.509 and JWT
    assert "prune" in kinds and first not in {a.id for a in sim.ca.x509_authorities}
    # Every change was announced on the event stream, with the bundle sequence.
    with sim.store.read() as view:
        events = [e for e in view.events.since(0, limit=1000) if e.type == "bundle.changed"]
    assert events and [e.payload["sequence"] for e in events] == sorted(
        e.payload["sequence"] for e in events
    )
    assert sum(len(e.payload["changes"]) for e in events) == len(sim.changes)
    sim.store.close()


def test_activating_without_propagation_breaks_handshakes(tmp_path: Path) -> None:
    """The control: the same simulation fails when a CA signs before peers have it."""
    sim = Sim(tmp_path, ca_ttl=timedelta(hours=24), svid_ttl=timedelta(hours=1), agents=8)
    for _ in range(10):
        sim.step(pairs=0)
    sim.rotator.rotate(activate=True, force=True, actor="test")
    for _ in range(30):  # agents renew around 30 min: some have the new CA, some not yet
        sim.step(pairs=3)
    assert sim.failures, "agents holding only the old bundle must refuse the new CA's SVIDs"
    sim.store.close()
