"""Projection bookkeeping and the version-history read model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE projection_checkpoints (
            projection  text        NOT NULL,
            partition   integer     NOT NULL,
            position    bigint      NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (projection, partition)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE projection_parked (
            projection  text        NOT NULL,
            event_id    text        NOT NULL,
            position    bigint      NOT NULL,
            namespace   text,
            name        text,
            partition   integer     NOT NULL,
            error       text        NOT NULL,
            message     text        NOT NULL,
            parked_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (projection, event_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE vh_artifacts (
            namespace          text        NOT NULL,
            name               text        NOT NULL,
            kind               text        NOT NULL,
            latest_number      integer     NOT NULL,
            production_number  integer,
            stream_version     integer     NOT NULL,
            position           bigint      NOT NULL,
            created_at         timestamptz NOT NULL,
            updated_at         timestamptz NOT NULL,
            PRIMARY KEY (namespace, name)
        )
        """
    )
    op.execute("CREATE INDEX vh_artifacts_kind ON vh_artifacts (kind, namespace, name)")
    op.execute(
        """
        CREATE TABLE vh_versions (
            namespace     text        NOT NULL,
            name          text        NOT NULL,
            number        integer     NOT NULL,
            label         text        NOT NULL,
            stage         text        NOT NULL,
            digest        text        NOT NULL,
            size          bigint      NOT NULL,
            media_type    text,
            content_type  text        NOT NULL,
            metadata      jsonb       NOT NULL,
            producer      text,
            created_at    timestamptz NOT NULL,
            position      bigint      NOT NULL,
            PRIMARY KEY (namespace, name, number),
            CONSTRAINT vh_versions_label_key UNIQUE (namespace, name, label)
        )
        """
    )
    op.execute("CREATE INDEX vh_versions_stage ON vh_versions (namespace, name, stage, number)")
    op.execute("CREATE INDEX vh_versions_metadata ON vh_versions USING gin (metadata)")
    op.execute(
        """
        CREATE TABLE vh_promotions (
            position   bigint      PRIMARY KEY,
            namespace  text        NOT NULL,
            name       text        NOT NULL,
            number     integer     NOT NULL,
            previous   integer,
            reason     text,
            actor      text,
            at         timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX vh_promotions_artifact ON vh_promotions (namespace, name, position)")
    op.execute(
        """
        CREATE TABLE vh_lineage (
            parent_namespace  text    NOT NULL,
            parent_name       text    NOT NULL,
            parent_number     integer NOT NULL,
            child_namespace   text    NOT NULL,
            child_name        text    NOT NULL,
            child_number      integer NOT NULL,
            position          bigint  NOT NULL,
            PRIMARY KEY (parent_namespace, parent_name, parent_number,
                         child_namespace, child_name, child_number)
        )
        """
    )
    op.execute(
        "CREATE INDEX vh_lineage_child ON vh_lineage (child_namespace, child_name, child_number)")


def downgrade() -> None:
    op.execute(
        "DROP TABLE vh_lineage, vh_promotions, vh_versions, vh_artifacts, projection_parked,"
        " projection_checkpoints")
