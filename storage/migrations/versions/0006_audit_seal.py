"""Keyed audit chains: each case event and access-log entry records the id of the key whose
derived audit key sealed it (HMAC-SHA256). Rows from before have none: they were hashed with
plain SHA-256, and `consentbot db upgrade` adopts them once under the key (docs/audit.md).

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case_events') as batch:
        batch.add_column(sa.Column('key_id', sa.String(length=64), nullable=True))
    with op.batch_alter_table('access_log') as batch:
        batch.add_column(sa.Column('key_id', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('access_log') as batch:
        batch.drop_column('key_id')
    with op.batch_alter_table('case_events') as batch:
        batch.drop_column('key_id')
