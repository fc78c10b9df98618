"""Snapshots of folded artifacts, so that time travel folds only the events after one.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Derived data (core/snapshots.py): any row may be deleted at any time and is rebuilt from
    # the log by the next fold that passes it; the log never changes (migration 0006), so a
    # row once written stays true. Rows are written only at stream versions that are
    # multiples of the snapshot interval, so concurrent writers of one point write the same
    # key and all but the first insert are no-ops.
    #
    # high_position / high_recorded_at are the largest position and recorded_at among events
    # 1..stream_version: a read bounded by a position or a time may start from a snapshot
    # only when the whole prefix is within the bound. ``state`` is json, not jsonb: it is
    # only ever read whole, and json keeps the text (and the key order of metadata objects,
    # which answers show) exactly as it was written.
    op.execute(
        """
        CREATE TABLE artifact_snapshots (
            namespace         text        NOT NULL,
            name              text        NOT NULL,
            stream_version    integer     NOT NULL CHECK (stream_version > 0),
            high_position     bigint      NOT NULL,
            high_recorded_at  timestamptz NOT NULL,
            format            smallint    NOT NULL,
            state             json        NOT NULL,
            created_at        timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (namespace, name, stream_version)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE artifact_snapshots")
