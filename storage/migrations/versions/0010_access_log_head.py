"""The access log's last entry, read under its lock in one round trip (PostgreSQL only).

Appending to the access log takes a transaction-level advisory lock, then reads the last entry
to chain from. Both in one SELECT would not do: under READ COMMITTED a statement's snapshot is
taken before it waits for the lock, so it could miss the entry its predecessor just committed.
A VOLATILE PL/pgSQL function takes a fresh snapshot for each of its statements: the read after
PERFORM sees everything committed by whoever held the lock. One round trip instead of two on
every append (issue 12). SQLite has one writer at a time and needs nothing.

Revision ID: 0010
Revises: 0009
"""

from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

LOCK_KEY = 7215001  # the lock every append has taken since the access log began


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE OR REPLACE FUNCTION consentbot_last_access() RETURNS TABLE (seq integer, hash varchar)
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM pg_advisory_xact_lock({LOCK_KEY});
            RETURN QUERY SELECT a.seq, a.hash FROM access_log AS a ORDER BY a.seq DESC LIMIT 1;
        END
        $$
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS consentbot_last_access()")
