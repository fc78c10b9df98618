"""Alembic migrations for every Postgres table; applied by ``core.db.migrate``."""
