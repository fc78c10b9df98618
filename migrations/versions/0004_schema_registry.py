"""Schema registry: JSON Schemas per artifact or namespace + kind, and refused ingests.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MODES = ("NONE", "BACKWARD", "FORWARD", "FULL", "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE",
         "FULL_TRANSITIVE")


def upgrade() -> None:
    # A subject is "artifact:NS/NAME" or "kind:NS/KIND". Its row exists before its first
    # version (a mode can be set first) and is what a registration locks (FOR UPDATE), so
    # that registrations of one subject take turns and never both pick the same number.
    op.execute(
        f"""
        CREATE TABLE schema_subjects (
            subject        text        PRIMARY KEY CHECK (subject ~ '^(artifact|kind):[^/]+/.+$'),
            compatibility  text        NOT NULL CHECK (compatibility IN {MODES!r}),
            updated_at     timestamptz NOT NULL DEFAULT now(),
            updated_by     text        NOT NULL
        )
        """
    )
    # Versions are never updated or deleted: a refused ingest names the version it broke.
    # The fingerprint (sha256 of the canonical JSON) finds an identical re-registration, which
    # returns the version it already has, as in Confluent's registry.
    op.execute(
        """
        CREATE TABLE schema_versions (
            subject      text        NOT NULL REFERENCES schema_subjects (subject),
            version      integer     NOT NULL CHECK (version > 0),
            schema       jsonb       NOT NULL,
            fingerprint  text        NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
            created_at   timestamptz NOT NULL DEFAULT now(),
            created_by   text        NOT NULL,
            PRIMARY KEY (subject, version),
            CONSTRAINT schema_versions_fingerprint_key UNIQUE (subject, fingerprint)
        )
        """
    )
    # Refused ingests never reach the event log (nothing was ingested), so they are kept
    # here, for analytics per producer and for the artifact's own list of refusals.
    op.execute(
        """
        CREATE TABLE ingest_rejections (
            id              bigserial   PRIMARY KEY,
            namespace       text        NOT NULL,
            name            text        NOT NULL,
            producer        text,
            actor           text,
            subject         text        NOT NULL,
            schema_version  integer     NOT NULL,
            violations      jsonb       NOT NULL,
            rejected_at     timestamptz NOT NULL DEFAULT now(),
            FOREIGN KEY (subject, schema_version) REFERENCES schema_versions (subject, version)
        )
        """
    )
    op.execute("CREATE INDEX ingest_rejections_artifact ON ingest_rejections "
               "(namespace, name, rejected_at)")
    op.execute("CREATE INDEX ingest_rejections_producer ON ingest_rejections "
               "(producer, rejected_at)")


def downgrade() -> None:
    op.execute("DROP TABLE ingest_rejections")
    op.execute("DROP TABLE schema_versions")
    op.execute("DROP TABLE schema_subjects")
