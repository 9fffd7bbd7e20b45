"""Trust: reports and signals, per-agent trust state, score history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Plain SQLAlchemy types only (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "trust_reports",
        sa.Column("reporter", sa.String(512), nullable=False),
        sa.Column("report_id", sa.String(128), nullable=False),
        sa.Column("agent_did", sa.String(128), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("received_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_did"], ["agents.did"], name=op.f("fk_trust_reports_agent_did_agents")
        ),
        sa.PrimaryKeyConstraint("reporter", "report_id", name=op.f("pk_trust_reports")),
    )
    op.create_index(
        "ix_trust_reports_agent_did_received_at", "trust_reports", ["agent_did", "received_at"]
    )

    op.create_table(
        "trust_signals",
        sa.Column("reporter", sa.String(512), nullable=False),
        sa.Column("report_id", sa.String(128), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("agent_did", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("severity", sa.String(16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("observed_at", _ts(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('success_rate', 'error_budget_remaining', 'audit_log_completeness', "
            "'violation')",
            name=op.f("ck_trust_signals_kind"),
        ),
        sa.CheckConstraint(
            "severity IS NULL OR severity IN ('low', 'medium', 'high', 'critical')",
            name=op.f("ck_trust_signals_severity"),
        ),
        sa.ForeignKeyConstraint(
            ["agent_did"], ["agents.did"], name=op.f("fk_trust_signals_agent_did_agents")
        ),
        sa.PrimaryKeyConstraint("reporter", "report_id", "position", name=op.f("pk_trust_signals")),
    )
    op.create_index(
        "ix_trust_signals_agent_did_kind_observed_at",
        "trust_signals",
        ["agent_did", "kind", "observed_at"],
    )

    op.create_table(
        "trust_states",
        sa.Column("did", sa.String(128), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("tier", sa.String(16), nullable=True),
        sa.Column("effective_ring", sa.Integer(), nullable=False),
        sa.Column("candidate_ring", sa.Integer(), nullable=True),
        sa.Column("candidate_since", _ts(), nullable=True),
        sa.Column("ring_reason", sa.Text(), nullable=True),
        sa.Column("breakdown", _json(), nullable=True),
        sa.Column("success_rate", sa.Float(), nullable=True),
        sa.Column("success_rate_at", _ts(), nullable=True),
        sa.Column("success_rate_by", sa.String(512), nullable=True),
        sa.Column("error_budget", sa.Float(), nullable=True),
        sa.Column("error_budget_at", _ts(), nullable=True),
        sa.Column("error_budget_by", sa.String(512), nullable=True),
        sa.Column("audit_completeness", sa.Float(), nullable=True),
        sa.Column("audit_completeness_at", _ts(), nullable=True),
        sa.Column("audit_completeness_by", sa.String(512), nullable=True),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.Column("next_due_at", _ts(), nullable=True),
        sa.Column("computed_at", _ts(), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.CheckConstraint(
            "effective_ring BETWEEN 0 AND 3", name=op.f("ck_trust_states_effective_ring")
        ),
        sa.CheckConstraint(
            "score IS NULL OR score BETWEEN 0 AND 1000", name=op.f("ck_trust_states_score")
        ),
        sa.ForeignKeyConstraint(["did"], ["agents.did"], name=op.f("fk_trust_states_did_agents")),
        sa.PrimaryKeyConstraint("did", name=op.f("pk_trust_states")),
    )
    op.create_index(
        "ix_trust_states_dirty_next_due_at", "trust_states", ["dirty", "next_due_at"]
    )

    op.create_table(
        "trust_score_history",
        sa.Column("did", sa.String(128), nullable=False),
        sa.Column("computed_at", _ts(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("effective_ring", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["did"], ["agents.did"], name=op.f("fk_trust_score_history_did_agents")
        ),
        sa.PrimaryKeyConstraint("did", "computed_at", name=op.f("pk_trust_score_history")),
    )


def downgrade() -> None:
    op.drop_table("trust_score_history")
    op.drop_index("ix_trust_states_dirty_next_due_at", table_name="trust_states")
    op.drop_table("trust_states")
    op.drop_index("ix_trust_signals_agent_did_kind_observed_at", table_name="trust_signals")
    op.drop_table("trust_signals")
    op.drop_index("ix_trust_reports_agent_did_received_at", table_name="trust_reports")
    op.drop_table("trust_reports")
