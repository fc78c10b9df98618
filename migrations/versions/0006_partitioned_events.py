"""The events table partitioned by position range.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

``events`` becomes a range-partitioned table on ``position``; the existing rows are copied
into it. What the single table guaranteed stays guaranteed:

- Positions still come from one sequence (``events_position_seq``, continuing where the
  identity column stopped), handed out under the append advisory lock (core/eventlog_pg.py).
- A partitioned table's unique index must contain the partition key, so unique event ids and
  unique (namespace, name, stream_version) live in ``event_keys``, an unpartitioned table the
  append writes in the same statement as the events (a data-modifying CTE, one multi-row
  insert each). Its constraint names are the ones the error mapping knows. A statement
  trigger with a transition table would fill it too, also for SQL that bypasses the store,
  but measured 2-3x slower per batch; only core/eventlog_pg.py appends events.
- UPDATE, DELETE and TRUNCATE are refused on ``events``, on every partition and on
  ``event_keys``. Row triggers on a partitioned table are cloned onto each partition; the
  TRUNCATE statement trigger is not, so each partition gets its own.

Partitions. ``event_partitioning`` holds the partition size (positions per partition), how
many partitions to keep ahead of the head, and the horizon (the exclusive upper bound of the
last partition). ``events_ensure_partitions(through)`` creates partitions until
``through + ahead * size`` fits; the append path calls it through ``events_before_append``
under the append lock, so a batch never lands beyond the last partition. A partition is
created as a plain table and then ATTACHed, which takes only a SHARE UPDATE EXCLUSIVE lock on
``events``: readers and the relay are never blocked by it (CREATE TABLE ... PARTITION OF would
take an ACCESS EXCLUSIVE lock). The size is read from ARTIFACTLOG_EVENT_PARTITION_SIZE when
this migration runs; changing ``event_partitioning.size`` later affects new partitions only.

Known limit: an INSERT into ``events`` that does not come from the store claims no key, so
the database alone does not stop hand-written SQL from adding a duplicate.
"""

from alembic import op

from core.settings import Settings

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PARTITIONS_AHEAD = 2


def upgrade() -> None:
    size = Settings.from_env().event_partition_size
    op.execute("ALTER TABLE events RENAME TO events_unpartitioned")
    op.execute(
        """
        CREATE TABLE events (
            position        bigint      NOT NULL,
            event_id        uuid        NOT NULL,
            namespace       text        NOT NULL,
            name            text        NOT NULL,
            stream_version  integer     NOT NULL CHECK (stream_version > 0),
            type            text        NOT NULL,
            payload         jsonb       NOT NULL,
            metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
            recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp()
        ) PARTITION BY RANGE (position)
        """
    )
    op.execute(
        f"""
        CREATE TABLE event_partitioning (
            singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            size       bigint  NOT NULL CHECK (size > 0),
            ahead      integer NOT NULL CHECK (ahead > 0),
            horizon    bigint  NOT NULL
        );
        INSERT INTO event_partitioning (size, ahead, horizon)
            VALUES ({int(size)}, {PARTITIONS_AHEAD}, 0)
        """
    )
    _create_partition_functions()
    op.execute("SELECT events_ensure_partitions("
               "(SELECT coalesce(max(position), 0) FROM events_unpartitioned))")
    op.execute("INSERT INTO events SELECT position, event_id, namespace, name, stream_version,"
               " type, payload, metadata, recorded_at FROM events_unpartitioned ORDER BY position")
    _create_keys()
    _continue_positions("events_unpartitioned")
    op.execute("DROP TABLE events_unpartitioned")
    op.execute("ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (position)")
    op.execute("CREATE INDEX events_stream ON events (namespace, name, stream_version)")
    _create_immutability_triggers()


def _create_partition_functions() -> None:
    op.execute(
        """
        CREATE FUNCTION events_ensure_partitions(through bigint) RETURNS bigint
        LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
        DECLARE
            config event_partitioning;
            part text;
        BEGIN
            SELECT * INTO config FROM event_partitioning FOR UPDATE;
            WHILE config.horizon <= through + config.ahead * config.size LOOP
                part := 'events_from_' || config.horizon;
                EXECUTE format('CREATE TABLE %I (LIKE events INCLUDING DEFAULTS'
                               ' INCLUDING CONSTRAINTS)', part);
                EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON %I'
                               ' FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable()',
                               part);
                EXECUTE format('ALTER TABLE events ATTACH PARTITION %I FOR VALUES FROM (%s)'
                               ' TO (%s)', part, config.horizon, config.horizon + config.size);
                config.horizon := config.horizon + config.size;
            END LOOP;
            UPDATE event_partitioning SET horizon = config.horizon;
            RETURN config.horizon;
        END $$
        """
    )
    # The one call an append makes before inserting: take the lock that orders appends (see
    # core/eventlog_pg.py), then make sure the batch's positions, and ``ahead`` partitions
    # more, have partitions. Under the lock nothing else takes positions, so the batch gets
    # at most last_value + batch_size.
    op.execute(
        """
        CREATE FUNCTION events_before_append(lock_key bigint, batch_size integer) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
            last bigint;
        BEGIN
            PERFORM pg_advisory_xact_lock(lock_key);
            SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO last
                FROM events_position_seq;
            IF EXISTS (SELECT FROM event_partitioning
                       WHERE horizon <= last + batch_size + ahead * size) THEN
                PERFORM events_ensure_partitions(last + batch_size);
            END IF;
        END $$
        """
    )


def _create_keys() -> None:
    op.execute("ALTER TABLE events_unpartitioned DROP CONSTRAINT events_stream_version_key")
    op.execute(
        """
        CREATE TABLE event_keys (
            event_id        uuid    NOT NULL,
            namespace       text    NOT NULL,
            name            text    NOT NULL,
            stream_version  integer NOT NULL,
            CONSTRAINT event_keys_pkey PRIMARY KEY (event_id),
            CONSTRAINT events_stream_version_key UNIQUE (namespace, name, stream_version)
        )
        """
    )
    op.execute("INSERT INTO event_keys SELECT event_id, namespace, name, stream_version"
               " FROM events_unpartitioned")


def _continue_positions(old_table: str) -> None:
    """A sequence that continues where the old table's stopped (no position reused)."""
    op.execute(
        """
        CREATE SEQUENCE events_position_seq_new AS bigint;
        SELECT setval('events_position_seq_new',
                      coalesce((SELECT last_value FROM events_position_seq
                                WHERE is_called), 0) + 1, false)
        """
    )
    op.execute(f"ALTER TABLE {old_table} ALTER COLUMN position DROP IDENTITY")
    op.execute("ALTER SEQUENCE events_position_seq_new RENAME TO events_position_seq")
    op.execute("ALTER SEQUENCE events_position_seq OWNED BY events.position")
    op.execute("ALTER TABLE events ALTER COLUMN position"
               " SET DEFAULT nextval('events_position_seq')")


def _create_immutability_triggers() -> None:
    for table in ("events", "event_keys"):
        op.execute(f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}"
                   " FOR EACH ROW EXECUTE FUNCTION events_are_immutable()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                   " FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable()")


def downgrade() -> None:
    op.execute("ALTER TABLE events RENAME TO events_partitioned")
    op.execute("ALTER TABLE events_partitioned RENAME CONSTRAINT events_pkey"
               " TO events_partitioned_pkey")
    op.execute("ALTER SEQUENCE events_position_seq RENAME TO events_position_seq_old")
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
            CONSTRAINT events_stream_version_key_new UNIQUE (namespace, name, stream_version)
        )
        """
    )
    op.execute("INSERT INTO events OVERRIDING SYSTEM VALUE SELECT * FROM events_partitioned"
               " ORDER BY position")
    op.execute("SELECT setval(pg_get_serial_sequence('events', 'position'),"
               " coalesce((SELECT last_value FROM events_position_seq_old WHERE is_called), 0)"
               " + 1, false)")
    op.execute("DROP TABLE events_partitioned, event_keys, event_partitioning")
    op.execute("ALTER TABLE events RENAME CONSTRAINT events_stream_version_key_new"
               " TO events_stream_version_key")
    op.execute("DROP FUNCTION events_before_append(bigint, integer),"
               " events_ensure_partitions(bigint)")
    op.execute("CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events "
               "FOR EACH ROW EXECUTE FUNCTION events_are_immutable()")
    op.execute("CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events "
               "FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable()")
