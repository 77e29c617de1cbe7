"""Key check values: one token per encryption key id, checked at start-up.

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('key_checks',
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('token', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key_id')
    )


def downgrade() -> None:
    op.drop_table('key_checks')
