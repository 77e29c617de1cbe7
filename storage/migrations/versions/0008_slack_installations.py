"""Slack installations: the workspaces that installed the app through OAuth (several workspaces
mode), each with its encrypted bot token and the school it serves.

Revision ID: 0008
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa
from sqlmodel.sql.sqltypes import AutoString


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('slack_installations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('enterprise_id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.String(length=32), nullable=False),
    sa.Column('team_name', sa.String(length=200), nullable=False),
    sa.Column('app_id', sa.String(length=32), nullable=False),
    sa.Column('is_enterprise_install', sa.Boolean(), nullable=False),
    sa.Column('bot_token', AutoString(), nullable=False),
    sa.Column('bot_id', sa.String(length=32), nullable=False),
    sa.Column('bot_user_id', sa.String(length=32), nullable=False),
    sa.Column('bot_scopes', sa.String(length=2000), nullable=False),
    sa.Column('installed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['school_id'], ['schools.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('enterprise_id', 'team_id', name='uq_slack_installations_workspace'),
    sa.UniqueConstraint('school_id')
    )


def downgrade() -> None:
    op.drop_table('slack_installations')
