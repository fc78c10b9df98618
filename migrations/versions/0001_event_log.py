"""The event log, content store, idempotency keys and relay checkpoint.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE events (
            position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id        uuid        NOT NULL UNIQUE,
            namespace       text        NOT NULL,
            name            text        NOT NULL,
            stream_version  integer     NOT NULL CHECK (stream_version > 0),
            type            text        NOT NULL,
            payload         jsonb       NOT NULL,
            metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
            recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
            CONSTRAINT events_stream_version_key UNIQUE (namespace, name, stream_version)
        )
        """
    )
    # The log is the system of record: the database itself refuses to change history.
    op.execute(
        """
        CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'events are immutable: % refused on the event log', TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events "
        "FOR EACH ROW EXECUTE FUNCTION events_are_immutable()"
    )
    op.execute(
        "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable()"
    )
    op.execute(
        """
        CREATE TABLE content (
            digest      text   PRIMARY KEY,
            size        bigint NOT NULL,
            media_type  text,
            data        bytea  NOT NULL
        )
        """
    )
    op.execute(
        """
        CREATE TABLE idempotency_keys (
            key          text        PRIMARY KEY,
            fingerprint  text        NOT NULL,
            namespace    text        NOT NULL,
            name         text        NOT NULL,
            number       integer     NOT NULL,
            position     bigint      NOT NULL,
            created      boolean     NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE relay_checkpoints (
            name        text        PRIMARY KEY,
            position    bigint      NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE relay_checkpoints, idempotency_keys, content")
    op.execute("DROP TRIGGER events_no_truncate ON events")
    op.execute("DROP TABLE events")
    op.execute("DROP FUNCTION events_are_immutable()")
