"""Chooses the content store the settings name (ARTIFACTLOG_CONTENT_STORE)."""

from __future__ import annotations

from psycopg_pool import AsyncConnectionPool

from core.content_store_pg import PostgresContentStore
from core.errors import ValidationError
from core.ports import ContentStore
from core.settings import Settings


def content_store_for(settings: Settings, pool: AsyncConnectionPool) -> ContentStore:
    """``postgres`` (the default): the content table; ``s3://bucket/prefix``: an object store."""
    chosen = settings.content_store.strip()
    if chosen in ("", "postgres"):
        return PostgresContentStore(pool)
    if chosen.startswith("s3://"):
        # Imported here: boto3 costs a noticeable import time that Postgres users need not pay.
        from core.content_store_s3 import S3ContentStore

        return S3ContentStore.connect(chosen, endpoint=settings.s3_endpoint)
    raise ValidationError(f"ARTIFACTLOG_CONTENT_STORE={chosen!r}: give postgres or "
                          "s3://bucket/prefix")
