"""misp fixer runs

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-24 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import puffin.core.types

revision: str = "0005"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "misp_fixer_run",
        sa.Column("id", puffin.core.types.GUID(length=36), nullable=False),
        sa.Column("organisation_id", puffin.core.types.GUID(length=36), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_uuid", sa.String(length=64), nullable=False),
        sa.Column("event_info", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.Column("started_at", puffin.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", puffin.core.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_seconds", sa.Float(), nullable=False),
        sa.Column("attributes", sa.Integer(), nullable=False),
        sa.Column("false_positives", sa.Integer(), nullable=False),
        sa.Column("changes_count", sa.Integer(), nullable=False),
        sa.Column("lookups", sa.Integer(), nullable=False),
        sa.Column("not_looked_up", sa.Integer(), nullable=False),
        sa.Column("misp_write_calls", sa.Integer(), nullable=False),
        sa.Column("decisions", puffin.core.types.JSONDocument(), nullable=False),
        sa.Column("changes", puffin.core.types.JSONDocument(), nullable=False),
        sa.Column("errors", puffin.core.types.JSONDocument(), nullable=False),
        sa.ForeignKeyConstraint(
            ["organisation_id"],
            ["organisation.id"],
            name=op.f("fk_misp_fixer_run_organisation_id_organisation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_misp_fixer_run")),
    )
    with op.batch_alter_table("misp_fixer_run", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_misp_fixer_run_organisation_id"), ["organisation_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_misp_fixer_run_event_id"), ["event_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_misp_fixer_run_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_misp_fixer_run_started_at"), ["started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("misp_fixer_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_misp_fixer_run_started_at"))
        batch_op.drop_index(batch_op.f("ix_misp_fixer_run_status"))
        batch_op.drop_index(batch_op.f("ix_misp_fixer_run_event_id"))
        batch_op.drop_index(batch_op.f("ix_misp_fixer_run_organisation_id"))
    op.drop_table("misp_fixer_run")
