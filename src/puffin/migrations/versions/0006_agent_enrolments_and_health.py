"""agent enrolments, configuration hash, allowed actions, inventory time, bound tokens

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import puffin.core.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("inventory_at", puffin.core.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("config_applied", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("allowed_actions", puffin.core.types.JSONDocument(), nullable=True)
        )
        batch_op.add_column(
            sa.Column("enrolments", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.alter_column("events_received", existing_type=sa.Integer(), type_=sa.BigInteger())
        batch_op.drop_column("config_version_applied")
    with op.batch_alter_table("enrollment_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_id", puffin.core.types.GUID(length=36), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_enrollment_token_agent_id_agent"),
            "agent",
            ["agent_id"],
            ["id"],
            ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollment_token", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_enrollment_token_agent_id_agent"), type_="foreignkey"
        )
        batch_op.drop_column("agent_id")
    with op.batch_alter_table("agent", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("config_version_applied", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.alter_column("events_received", existing_type=sa.BigInteger(), type_=sa.Integer())
        batch_op.drop_column("enrolments")
        batch_op.drop_column("allowed_actions")
        batch_op.drop_column("config_applied")
        batch_op.drop_column("inventory_at")
