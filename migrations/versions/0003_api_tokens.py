"""API tokens: who may call the API, with which scopes, in which namespaces.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # token_hash is the sha256 hex of the whole token. A fast hash is right here, unlike for
    # passwords: tokens are 256 random bits (secrets.token_urlsafe(32)), so there is nothing
    # to brute-force or look up in a dictionary, and a slow KDF would only make every request
    # slower. An unsalted digest also lets us find the row by an indexed equality lookup.
    #
    # name is the actor shown in events and promotions; it stays taken after a revoke so that
    # an old actor name can never come to mean someone else.
    #
    # namespaces NULL means all namespaces. An admin token manages tokens and replays the
    # whole log, which spans every namespace, so it cannot be limited to some.
    op.execute(
        """
        CREATE TABLE api_tokens (
            id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
            name          text        NOT NULL UNIQUE,
            token_hash    text        NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
            prefix        text        NOT NULL,
            scopes        text[]      NOT NULL CHECK (cardinality(scopes) > 0),
            namespaces    text[],
            created_at    timestamptz NOT NULL DEFAULT now(),
            revoked_at    timestamptz,
            last_used_at  timestamptz,
            CONSTRAINT api_tokens_admin_spans_all_namespaces
                CHECK (namespaces IS NULL OR NOT ('admin' = ANY (scopes)))
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE api_tokens")
