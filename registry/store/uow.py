"""Unit of work: every repository of one database transaction, together.

    with store.transaction() as tx:
        agent = tx.agents.create(did=..., name=..., spiffe_id=...)
        tx.audit.append("operator:alice", "agent.register", agent.did, {...})
        tx.events.append("agent.registered", agent.did, {...})

Leaving the block commits; an exception rolls back everything written in it
and propagates. ``store.read()`` gives the read-only half of the same
repositories on one consistent snapshot (SQLite) / one connection (PostgreSQL).
A transaction belongs to the thread that opened it.
"""

from __future__ import annotations

from registry.store._internal.unit import Unit
from registry.store.repos import (
    AgentReader,
    AgentRepository,
    AuditReader,
    AuditRepository,
    ChallengeReader,
    ChallengeRepository,
    EventReader,
    EventRepository,
    KeyReader,
    KeyRepository,
    PrincipalReader,
    PrincipalRepository,
    SvidReader,
    SvidRepository,
    TokenReader,
    TokenRepository,
)
from registry.store.repos.trust import TrustReader, TrustRepository


class ReadView:
    """Read-only repositories over one open connection."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self.now = unit.now
        self.agents = AgentReader(unit)
        self.keys = KeyReader(unit)
        self.tokens = TokenReader(unit)
        self.challenges = ChallengeReader(unit)
        self.svids = SvidReader(unit)
        self.principals = PrincipalReader(unit)
        self.events = EventReader(unit)
        self.audit = AuditReader(unit)
        self.trust = TrustReader(unit)


class Transaction:
    """Read-write repositories sharing one database transaction."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        #: The transaction's timestamp: every row it writes carries this time.
        self.now = unit.now
        self.agents = AgentRepository(unit)
        self.keys = KeyRepository(unit)
        self.tokens = TokenRepository(unit)
        self.challenges = ChallengeRepository(unit)
        self.svids = SvidRepository(unit)
        self.principals = PrincipalRepository(unit)
        self.events = EventRepository(unit)
        self.audit = AuditRepository(unit)
        self.trust = TrustRepository(unit)
