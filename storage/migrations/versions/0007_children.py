"""Children: one record per child (encrypted name and date of birth, a blind index to find them),
and on each case the child it is about and the earlier case it was raised from.

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa
from sqlmodel.sql.sqltypes import AutoString


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('children',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sa.String(length=16), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('name', AutoString(), nullable=False),
    sa.Column('date_of_birth', AutoString(), nullable=True),
    sa.Column('name_index', sa.String(length=64), nullable=False),
    sa.Column('index_key_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ref')
    )
    op.create_index('ix_children_school_name', 'children', ['school_id', 'name_index'], unique=False)
    with op.batch_alter_table('cases') as batch:
        batch.add_column(sa.Column('child_id', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('linked_case_id', sa.Integer(), nullable=True))
        batch.create_index('ix_cases_child_id', ['child_id'], unique=False)
        batch.create_index('ix_cases_linked_case_id', ['linked_case_id'], unique=False)
        batch.create_foreign_key('fk_cases_child_id_children', 'children', ['child_id'], ['id'])
        batch.create_foreign_key('fk_cases_linked_case_id_cases', 'cases', ['linked_case_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('cases') as batch:
        batch.drop_constraint('fk_cases_linked_case_id_cases', type_='foreignkey')
        batch.drop_constraint('fk_cases_child_id_children', type_='foreignkey')
        batch.drop_index('ix_cases_linked_case_id')
        batch.drop_index('ix_cases_child_id')
        batch.drop_column('linked_case_id')
        batch.drop_column('child_id')
    op.drop_index('ix_children_school_name', table_name='children')
    op.drop_table('children')
