"""Chat addresses (where a platform reaches a person: Teams conversation references), a school's
chosen platform for people registered on two, and room for Teams message references.

Revision ID: 0005
Revises: 0004
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chat_addresses',
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('user_id', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(length=1000), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('platform', 'user_id')
    )
    with op.batch_alter_table('schools') as batch:
        batch.add_column(sa.Column('chat_platform', sa.String(length=16), nullable=True))
    with op.batch_alter_table('outbox') as batch:
        batch.alter_column('sent_ref', type_=sa.String(length=600), existing_type=sa.String(length=200),
                           existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table('outbox') as batch:
        batch.alter_column('sent_ref', type_=sa.String(length=200), existing_type=sa.String(length=600),
                           existing_nullable=True)
    with op.batch_alter_table('schools') as batch:
        batch.drop_column('chat_platform')
    op.drop_table('chat_addresses')
