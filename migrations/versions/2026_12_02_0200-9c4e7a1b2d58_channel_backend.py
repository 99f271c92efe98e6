"""channels.backend: which Genesys backend a channel talks to (nexus | genesys-cloud)

Revision ID: 9c4e7a1b2d58
Revises: 5b9e1d7c3a20
Create Date: 2026-12-02 02:00:00

Every existing channel is a Nexus channel, so the server default fills them in. For a
genesys-cloud channel `nexus_channel_id` holds the Open Messaging integration id (the id in
its webhook URL); the column keeps its name so no other table or index changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '9c4e7a1b2d58'
down_revision: str | None = '5b9e1d7c3a20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('channels') as batch:
        batch.add_column(
            sa.Column('backend', sa.String(length=32), nullable=False, server_default='nexus')
        )


def downgrade() -> None:
    with op.batch_alter_table('channels') as batch:
        batch.drop_column('backend')
