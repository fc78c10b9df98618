"""Samples of projection lag over time, for the dashboard's last-hour chart.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per projection per sample time. sampled_at is the database clock rounded down
    # to the sampling step, so every API replica that samples in the same step writes the
    # same key and all but the first insert are no-ops (ON CONFLICT DO NOTHING).
    #
    # head is the log head the sample saw: it also bounds the dashboard's ingest-rate scan of
    # the events table by position (the primary key) instead of a full scan by recorded_at.
    # Rows older than a day are pruned by the sampler; the primary key, led by sampled_at,
    # serves both that delete and the last-hour read.
    op.execute(
        """
        CREATE TABLE ops_lag_samples (
            sampled_at   timestamptz      NOT NULL,
            projection   text             NOT NULL,
            position     bigint           NOT NULL,
            head         bigint           NOT NULL,
            lag_events   bigint           NOT NULL CHECK (lag_events >= 0),
            lag_seconds  double precision,
            parked       bigint           NOT NULL DEFAULT 0,
            PRIMARY KEY (sampled_at, projection)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE ops_lag_samples")
