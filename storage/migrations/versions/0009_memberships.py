"""Memberships: a member of staff's role at schools besides their home one (a trust's DSL who
covers several schools). A digest is recorded per school, so such a DSL gets each school's.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('memberships',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], ),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('staff_id', 'school_id', name='uq_memberships_staff_school')
    )
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_memberships_school_id'), ['school_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_memberships_staff_id'), ['staff_id'], unique=False)
    with op.batch_alter_table('digest_runs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_digest_runs_period', type_='unique')
        batch_op.create_unique_constraint('uq_digest_runs_period', ['recipient_id', 'school_id', 'kind', 'period'])


def downgrade() -> None:
    with op.batch_alter_table('digest_runs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_digest_runs_period', type_='unique')
        batch_op.create_unique_constraint('uq_digest_runs_period', ['recipient_id', 'kind', 'period'])
    with op.batch_alter_table('memberships', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_memberships_staff_id'))
        batch_op.drop_index(batch_op.f('ix_memberships_school_id'))
    op.drop_table('memberships')
