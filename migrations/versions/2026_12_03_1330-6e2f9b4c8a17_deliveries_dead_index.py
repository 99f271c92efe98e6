"""deliveries: an index of the dead rows not yet skipped, for the claim's last step

Revision ID: 6e2f9b4c8a17
Revises: 4d7b2e9a6c31
Create Date: 2026-12-03 13:30:00

Every claim flags the dead deliveries that a claimed later one passes over
(`status = 'dead' AND NOT skipped`, same partition, earlier sequence). Finished deliveries stay
for `retention_attempts_days` and dead ones are a handful among them, so with statistics that
count none the planner scanned the whole table for them on every claim, even one that claimed
nothing: 3 ms at 20,000 rows, 17 ms at 100,000 (scratch runs, docs/performance.md ninth
round; the plan is held by tests/relay/test_claim_plan.py). A partial index holds only those
few rows; the claim reads them and nothing else.

Built in the upgrade's transaction (not CONCURRENTLY): building it reads the table once, and
writes to the outbox wait for that read, a few seconds on a table of millions of rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6e2f9b4c8a17"
down_revision: str | None = "4d7b2e9a6c31"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEAD_UNSKIPPED = sa.text("status = 'dead' AND NOT skipped")


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_dead_unskipped",
        "deliveries",
        ["partition_key", "sequence"],
        postgresql_where=DEAD_UNSKIPPED,
        sqlite_where=DEAD_UNSKIPPED,
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_dead_unskipped", table_name="deliveries")
