"""Initial schema: agents, keys, key histories, join tokens, challenges, SVIDs,
principals, the event log and the hash-chained audit trail.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Migrations use plain SQLAlchemy types only (never the application's models or
type classes), so they keep meaning what they meant when written.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    # timestamptz on PostgreSQL; UTC text on SQLite.
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("did", sa.String(128), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("spiffe_id", sa.String(512), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("granted_ring", sa.Integer(), server_default="2", nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.Column("revoke_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'revoked', 'terminated')", name=op.f("ck_agents_status")
        ),
        sa.CheckConstraint("granted_ring BETWEEN 0 AND 3", name=op.f("ck_agents_granted_ring")),
        sa.PrimaryKeyConstraint("did", name=op.f("pk_agents")),
        sa.UniqueConstraint("spiffe_id", name=op.f("uq_agents_spiffe_id")),
    )
    op.create_index("ix_agents_name", "agents", ["name"])
    op.create_index("ix_agents_created_at_did", "agents", ["created_at", "did"])
    op.create_index("ix_agents_status_created_at_did", "agents", ["status", "created_at", "did"])

    op.create_table(
        "agent_keys",
        sa.Column("did", sa.String(128), nullable=False),
        sa.Column("key_index", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("valid_from", _ts(), nullable=False),
        sa.Column("rotated_at", _ts(), nullable=True),
        sa.Column("compromised_at", _ts(), nullable=True),
        sa.CheckConstraint(
            "length(public_key) = 32", name=op.f("ck_agent_keys_public_key_length")
        ),
        sa.ForeignKeyConstraint(["did"], ["agents.did"], name=op.f("fk_agent_keys_did_agents")),
        sa.PrimaryKeyConstraint("did", "key_index", name=op.f("pk_agent_keys")),
        sa.UniqueConstraint("kid", name=op.f("uq_agent_keys_kid")),
    )

    op.create_table(
        "key_histories",
        sa.Column("did", sa.String(128), nullable=False),
        sa.Column("history", sa.Text(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["did"], ["agents.did"], name=op.f("fk_key_histories_did_agents")
        ),
        sa.PrimaryKeyConstraint("did", name=op.f("pk_key_histories")),
    )

    op.create_table(
        "join_tokens",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("agent_name", sa.String(255), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("used_at", _ts(), nullable=True),
        sa.Column("used_by_did", sa.String(128), nullable=True),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_join_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_join_tokens_token_hash")),
    )
    op.create_index("ix_join_tokens_expires_at", "join_tokens", ["expires_at"])

    op.create_table(
        "challenges",
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("trust_domain", sa.String(255), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("expires_at", _ts(), nullable=False),
        sa.Column("used_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_challenges")),
    )
    op.create_index("ix_challenges_expires_at", "challenges", ["expires_at"])

    op.create_table(
        "svids",
        sa.Column("serial", sa.String(128), nullable=False),
        sa.Column("did", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("not_before", _ts(), nullable=False),
        sa.Column("not_after", _ts(), nullable=False),
        sa.Column("issued_at", _ts(), nullable=False),
        sa.CheckConstraint("kind IN ('x509', 'jwt')", name=op.f("ck_svids_kind")),
        sa.ForeignKeyConstraint(["did"], ["agents.did"], name=op.f("fk_svids_did_agents")),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_svids")),
    )
    op.create_index("ix_svids_did_issued_at", "svids", ["did", "issued_at"])

    op.create_table(
        "principals",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("roles", _json(), nullable=False),
        sa.Column("credential_hash", sa.String(128), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("revoked_at", _ts(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('operator', 'reporter', 'enforcer', 'agent')",
            name=op.f("ck_principals_kind"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_principals")),
        sa.UniqueConstraint("credential_hash", name=op.f("uq_principals_credential_hash")),
        sa.UniqueConstraint("kind", "name", name=op.f("uq_principals_kind_name")),
    )

    # Commit-ordered, gap-free sequences (see registry.store._internal.sequence).
    counters = op.create_table(
        "sequence_counters",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sequence_counters")),
    )
    op.bulk_insert(counters, [{"name": "events", "value": 0}, {"name": "audit", "value": 0}])

    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("agent_did", sa.String(128), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_events")),
    )
    op.create_index("ix_events_agent_did_seq", "events", ["agent_did", "seq"])

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(512), nullable=False),
        sa.Column("details", _json(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )


def downgrade() -> None:
    for table in (
        "audit_log",
        "events",
        "sequence_counters",
        "principals",
        "svids",
        "challenges",
        "join_tokens",
        "key_histories",
        "agent_keys",
        "agents",
    ):
        op.drop_table(table)
