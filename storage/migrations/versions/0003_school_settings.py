"""Per-school settings: fallback phone numbers, the escalation contact, the digest time.

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('schools', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dsl_phone', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('front_door_phone', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('escalation_staff_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('digest_time', sa.String(length=5), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('schools', schema=None) as batch_op:
        batch_op.drop_column('digest_time')
        batch_op.drop_column('escalation_staff_id')
        batch_op.drop_column('front_door_phone')
        batch_op.drop_column('dsl_phone')
