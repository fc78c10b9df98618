"""Postgres connections and schema migrations."""

from __future__ import annotations

from pathlib import Path

from psycopg_pool import AsyncConnectionPool

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def sqlalchemy_url(database_url: str) -> str:
    """Alembic talks through SQLAlchemy; point it at the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix):]
    return database_url


def migrate(database_url: str, revision: str = "head") -> None:
    """Apply the alembic migrations up to ``revision`` (idempotent)."""
    # imported here: alembic and SQLAlchemy take a second to import on a busy machine, and
    # only the processes that migrate should pay it (a relay restarted after a crash must not)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    command.upgrade(config, revision)


async def open_pool(database_url: str, *, max_size: int = 10) -> AsyncConnectionPool:
    pool = AsyncConnectionPool(database_url, min_size=1, max_size=max_size, open=False)
    await pool.open(wait=True, timeout=30)
    return pool
