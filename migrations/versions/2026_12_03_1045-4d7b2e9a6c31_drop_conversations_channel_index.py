"""conversations: drop ix_conversations_channel_id (the unique key already leads with it)

Revision ID: 4d7b2e9a6c31
Revises: 9c4e7a1b2d58
Create Date: 2026-12-03 10:45:00

The unique key (channel_id, customer_address, generation) serves every lookup by channel_id
as its leading column. The single-column index only gave PostgreSQL's planner a wrong choice:
with statistics from a smaller table it looked up a customer's conversations through it, with
the customer address as a filter, reading every conversation of the channel for every key of
every accepted batch (tests/mappings/test_lookup_plans.py). One index less to write per
conversation, too.
"""

from collections.abc import Sequence

from alembic import op


revision: str = '4d7b2e9a6c31'
down_revision: str | None = '9c4e7a1b2d58'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_conversations_channel_id', table_name='conversations')


def downgrade() -> None:
    op.create_index('ix_conversations_channel_id', 'conversations', ['channel_id'])
