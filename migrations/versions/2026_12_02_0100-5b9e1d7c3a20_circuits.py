"""circuit breakers: one row per upstream, shared by every worker

Revision ID: 5b9e1d7c3a20
Revises: 3f8a2c6d1e47
Create Date: 2026-12-02 01:00:00

A failing upstream used to be retried by every conversation's head delivery on its own
clock (1,200 attempts on AXP during a 40 s outage). The circuit's state lives in the database
so that every worker and replica stops, pauses and probes together.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '5b9e1d7c3a20'
down_revision: str | None = '3f8a2c6d1e47'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'circuits',
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('consecutive_failures', sa.Integer(), nullable=False),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('next_probe_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('probe_interval_s', sa.Float(), nullable=False),
        sa.Column('paused_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_circuits')),
    )


def downgrade() -> None:
    op.drop_table('circuits')
