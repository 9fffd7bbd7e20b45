"""The registry's tables, as SQLAlchemy 2.x typed ORM models.

The models are the single source of the schema: Alembic migrations under
``registry/migrations`` must produce exactly this (a test compares them with
autogenerate). Repositories query these tables with Core statements and hand
callers plain dataclasses from ``registry.store.records``, never ORM objects.

Portability rules (SQLite today, PostgreSQL for replicas, a PostgreSQL-compatible
distributed SQL engine later):

* every table has an explicit primary key; no table relies on autoincrement or
  on the absence of gaps in a serial column;
* ``events.seq`` and ``audit_log.seq`` are allocated from ``sequence_counters``
  inside the writing transaction (see ``registry.store.repos.events``);
* JSON is JSONB on PostgreSQL, timestamps are ``timestamptz``;
* constraints are named by convention so batch migrations on SQLite can alter them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from registry.store._internal.types import UTCDateTime, json_type

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AGENT_STATUSES = ("active", "revoked", "terminated")
SVID_KINDS = ("x509", "jwt")
PRINCIPAL_KINDS = ("operator", "reporter", "enforcer", "agent")

#: Names of the rows in ``sequence_counters``.
EVENTS_COUNTER = "events"
AUDIT_COUNTER = "audit"

# Sizes: a did:mesh is ~37 characters and a kid 43; the rest leave room for
# what users name things without inviting unbounded values.
DID_LEN = 128
NAME_LEN = 255
SPIFFE_ID_LEN = 512
KID_LEN = 64
HASH_LEN = 64


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (
        CheckConstraint(_in("status", AGENT_STATUSES), name="status"),
        CheckConstraint("granted_ring BETWEEN 0 AND 3", name="granted_ring"),
        Index("ix_agents_created_at_did", "created_at", "did"),
        Index("ix_agents_status_created_at_did", "status", "created_at", "did"),
    )

    did: Mapped[str] = mapped_column(String(DID_LEN), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LEN), index=True)
    spiffe_id: Mapped[str] = mapped_column(String(SPIFFE_ID_LEN), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    granted_ring: Mapped[int] = mapped_column(Integer, server_default="2")
    # "metadata" is reserved on declarative classes; the column keeps the name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class AgentKey(Base):
    __tablename__ = "agent_keys"
    __table_args__ = (CheckConstraint("length(public_key) = 32", name="public_key_length"),)

    did: Mapped[str] = mapped_column(ForeignKey("agents.did"), primary_key=True)
    key_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(KID_LEN), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime())
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    compromised_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class KeyHistory(Base):
    """The agent's signed key log (``mesh.keyhistory`` JSON), stored verbatim.

    Text, not JSON/JSONB: the log, not this table, is the root of trust, so the
    registry keeps the exact document the agent sent (JSONB would reorder keys
    and drop whitespace) and anyone can re-verify it byte for byte.
    """

    __tablename__ = "key_histories"

    did: Mapped[str] = mapped_column(ForeignKey("agents.did"), primary_key=True)
    history: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class JoinToken(Base):
    """One-time join tokens. Only the SHA-256 of the secret is stored."""

    __tablename__ = "join_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(HASH_LEN), unique=True)
    agent_name: Mapped[str] = mapped_column(String(NAME_LEN))
    created_by: Mapped[str] = mapped_column(String(NAME_LEN))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # No foreign key: the token may be consumed before the agent row is written
    # in the same transaction.
    used_by_did: Mapped[str | None] = mapped_column(String(DID_LEN))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Challenge(Base):
    """Registry-issued nonces for proof of possession; each is used at most once."""

    __tablename__ = "challenges"

    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(64))
    trust_domain: Mapped[str] = mapped_column(String(NAME_LEN))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Svid(Base):
    """Every SVID issued (X.509 serial in hex, or a JWT-SVID's id), for audit
    and renewal accounting."""

    __tablename__ = "svids"
    __table_args__ = (
        CheckConstraint(_in("kind", SVID_KINDS), name="kind"),
        Index("ix_svids_did_issued_at", "did", "issued_at"),
    )

    serial: Mapped[str] = mapped_column(String(128), primary_key=True)
    did: Mapped[str] = mapped_column(ForeignKey("agents.did"))
    kind: Mapped[str] = mapped_column(String(8))
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Principal(Base):
    """Operators, reporters, enforcers and agents known to authorisation."""

    __tablename__ = "principals"
    __table_args__ = (
        CheckConstraint(_in("kind", PRINCIPAL_KINDS), name="kind"),
        UniqueConstraint("kind", "name"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(NAME_LEN))
    roles: Mapped[list[str]] = mapped_column(json_type())
    credential_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SequenceCounter(Base):
    """One row per gap-free, commit-ordered sequence (``events``, ``audit``).

    Writers do ``UPDATE ... SET value = value + 1 RETURNING value`` inside their
    transaction; the row lock makes every later writer wait until the holder
    commits or rolls back, so sequence order is commit order and a rollback
    leaves no gap.
    """

    __tablename__ = "sequence_counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class Event(Base):
    """Append-only log of state changes, read by Watch streams from a sequence."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_agent_did_seq", "agent_did", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(64))
    agent_did: Mapped[str | None] = mapped_column(String(DID_LEN))
    payload: Mapped[dict[str, Any]] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Append-only, hash-chained audit trail (see ``registry.store.audit``)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(NAME_LEN))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(SPIFFE_ID_LEN))
    details: Mapped[dict[str, Any]] = mapped_column(json_type())
    prev_hash: Mapped[str] = mapped_column(String(HASH_LEN))
    hash: Mapped[str] = mapped_column(String(HASH_LEN))


class ReplicaSecret(Base):
    """Material every registry replica must share (the CA, the challenge key, the
    operator key), sealed with the operator's replica key (see ``registry.replica``).
    One row per bundle; ``version`` follows the CA's bundle sequence."""

    __tablename__ = "replica_secrets"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


metadata = Base.metadata


# -- trust (migration 0002) ---------------------------------------------------

SIGNAL_KINDS = ("success_rate", "error_budget_remaining", "audit_log_completeness", "violation")
SEVERITIES = ("low", "medium", "high", "critical")
REPORT_ID_LEN = 128


class TrustReport(Base):
    """One ReportSignals call, kept for idempotency: (reporter, report_id) is unique,
    and ``digest`` tells a retry (same content) from a reused id (other content)."""

    __tablename__ = "trust_reports"
    __table_args__ = (Index("ix_trust_reports_agent_did_received_at", "agent_did", "received_at"),)

    reporter: Mapped[str] = mapped_column(String(SPIFFE_ID_LEN), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(REPORT_ID_LEN), primary_key=True)
    agent_did: Mapped[str] = mapped_column(ForeignKey("agents.did"))
    digest: Mapped[str] = mapped_column(String(HASH_LEN))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TrustSignal(Base):
    """Every reported signal, as reported (the raw log behind ``trust_states``)."""

    __tablename__ = "trust_signals"
    __table_args__ = (
        CheckConstraint(_in("kind", SIGNAL_KINDS), name="kind"),
        CheckConstraint(f"severity IS NULL OR {_in('severity', SEVERITIES)}", name="severity"),
        Index("ix_trust_signals_agent_did_kind_observed_at", "agent_did", "kind", "observed_at"),
    )

    reporter: Mapped[str] = mapped_column(String(SPIFFE_ID_LEN), primary_key=True)
    report_id: Mapped[str] = mapped_column(String(REPORT_ID_LEN), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    agent_did: Mapped[str] = mapped_column(ForeignKey("agents.did"))
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TrustState(Base):
    """Per agent: the newest fading inputs, the last computed score and ring, and
    when it must be recomputed (``dirty``: new input; ``next_due_at``: time alone)."""

    __tablename__ = "trust_states"
    __table_args__ = (
        CheckConstraint("effective_ring BETWEEN 0 AND 3", name="effective_ring"),
        CheckConstraint("score IS NULL OR score BETWEEN 0 AND 1000", name="score"),
        Index("ix_trust_states_dirty_next_due_at", "dirty", "next_due_at"),
    )

    did: Mapped[str] = mapped_column(ForeignKey("agents.did"), primary_key=True)
    score: Mapped[int | None] = mapped_column(Integer)
    tier: Mapped[str | None] = mapped_column(String(16))
    effective_ring: Mapped[int] = mapped_column(Integer)
    candidate_ring: Mapped[int | None] = mapped_column(Integer)
    candidate_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ring_reason: Mapped[str | None] = mapped_column(Text)
    breakdown: Mapped[list[Any] | None] = mapped_column(json_type())
    success_rate: Mapped[float | None] = mapped_column(Float)
    success_rate_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    success_rate_by: Mapped[str | None] = mapped_column(String(SPIFFE_ID_LEN))
    error_budget: Mapped[float | None] = mapped_column(Float)
    error_budget_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error_budget_by: Mapped[str | None] = mapped_column(String(SPIFFE_ID_LEN))
    audit_completeness: Mapped[float | None] = mapped_column(Float)
    audit_completeness_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    audit_completeness_by: Mapped[str | None] = mapped_column(String(SPIFFE_ID_LEN))
    dirty: Mapped[bool] = mapped_column(Boolean)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    computed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TrustScoreHistory(Base):
    """Every computed score that differed from the one before (score, tier or ring)."""

    __tablename__ = "trust_score_history"

    did: Mapped[str] = mapped_column(ForeignKey("agents.did"), primary_key=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    tier: Mapped[str] = mapped_column(String(16))
    effective_ring: Mapped[int] = mapped_column(Integer)
