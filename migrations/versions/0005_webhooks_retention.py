"""Webhooks, their delivery log, and retention settings per namespace.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The secret is kept as it was given out: signing needs it, so a digest would not do.
    # It never leaves this table except into an HMAC. ``checkpoint`` is the last event
    # position the webhook has taken a delivery for (or skipped as not matching): a receiver
    # that is down only holds deliveries back, it never loses one.
    op.execute(
        """
        CREATE TABLE webhooks (
            id           uuid        PRIMARY KEY,
            url          text        NOT NULL CHECK (url ~ '^https?://'),
            secret       text        NOT NULL,
            event_types  text[]      NOT NULL DEFAULT '{}',
            namespaces   text[]      NOT NULL DEFAULT '{}',
            description  text,
            checkpoint   bigint      NOT NULL CHECK (checkpoint >= 0),
            created_at   timestamptz NOT NULL DEFAULT now(),
            created_by   text        NOT NULL
        )
        """
    )
    # One row per (webhook, event): its id is the idempotency id the receiver sees on every
    # attempt; the body is fixed when the delivery is created, so retries send the same bytes.
    op.execute(
        """
        CREATE TABLE webhook_deliveries (
            id               uuid        PRIMARY KEY,
            webhook_id       uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            position         bigint      NOT NULL,
            event_id         uuid        NOT NULL,
            event_type       text        NOT NULL,
            namespace        text        NOT NULL,
            name             text        NOT NULL,
            body             text        NOT NULL,
            status           text        NOT NULL
                             CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
            attempts         integer     NOT NULL DEFAULT 0,
            next_attempt_at  timestamptz NOT NULL,
            last_error       text,
            created_at       timestamptz NOT NULL DEFAULT now(),
            delivered_at     timestamptz,
            UNIQUE (webhook_id, position)
        )
        """
    )
    op.execute("CREATE INDEX webhook_deliveries_pending ON webhook_deliveries "
               "(webhook_id, position) WHERE status = 'PENDING'")
    op.execute(
        """
        CREATE TABLE webhook_attempts (
            delivery_id  uuid        NOT NULL REFERENCES webhook_deliveries (id)
                                     ON DELETE CASCADE,
            attempt      integer     NOT NULL CHECK (attempt > 0),
            at           timestamptz NOT NULL,
            status_code  integer,
            error        text,
            duration_ms  double precision NOT NULL,
            PRIMARY KEY (delivery_id, attempt)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE retention_policies (
            namespace    text        PRIMARY KEY,
            draft_days   integer     NOT NULL CHECK (draft_days >= 1),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            updated_by   text        NOT NULL
        )
        """
    )
    # The read model marks purged versions and archived artifacts (both come from events).
    op.execute("ALTER TABLE vh_versions ADD COLUMN purged boolean NOT NULL DEFAULT false")
    op.execute("ALTER TABLE vh_artifacts ADD COLUMN archived boolean NOT NULL DEFAULT false")


def downgrade() -> None:
    op.execute("ALTER TABLE vh_artifacts DROP COLUMN archived")
    op.execute("ALTER TABLE vh_versions DROP COLUMN purged")
    op.execute("DROP TABLE retention_policies")
    op.execute("DROP TABLE webhook_attempts")
    op.execute("DROP TABLE webhook_deliveries")
    op.execute("DROP TABLE webhooks")
