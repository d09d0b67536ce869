"""a batch keeps its end of production; a batch's records are indexed by kind

Batches get `ended_at`, the latest harvest or slaughter record's time (filled in from the
records already stored), so that judging the flags of new records needs a batch's earlier
applications only when the end of production moves. internal_traces' index on batch_id
becomes (batch_id, activity): the same look-ups by batch, and the applications directly.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE batches SET ended_at = (SELECT max(t.occurred_at) FROM internal_traces t "
        "WHERE t.batch_id = batches.batch_id AND t.activity IN ('HARVEST', 'SLAUGHTER'))")
    with op.batch_alter_table('internal_traces', schema=None) as batch_op:
        batch_op.drop_index('ix_internal_traces_batch_id')
        batch_op.create_index('ix_internal_traces_batch_activity', ['batch_id', 'activity'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('internal_traces', schema=None) as batch_op:
        batch_op.drop_index('ix_internal_traces_batch_activity')
        batch_op.create_index('ix_internal_traces_batch_id', ['batch_id'], unique=False)
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_column('ended_at')
