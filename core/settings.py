"""One Settings object, read from the environment once and passed down.

With none of DATABASE_URL / NATS_URL / CLICKHOUSE_URL set, artifactlog runs its embedded
engines with all data under ARTIFACTLOG_HOME.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from core.errors import ValidationError

# Every variable Settings reads, with the field it fills. compose.yaml is checked against this.
ENVIRONMENT: dict[str, str] = {
    "ARTIFACTLOG_HOME": "home",
    "DATABASE_URL": "database_url",
    "NATS_URL": "nats_url",
    "CLICKHOUSE_URL": "clickhouse_url",
    "ARTIFACTLOG_CLICKHOUSE_CLUSTER": "clickhouse_cluster",
    "ARTIFACTLOG_HOST": "host",
    "ARTIFACTLOG_PORT": "port",
    "ARTIFACTLOG_MAX_CONTENT_BYTES": "max_content_bytes",
    "ARTIFACTLOG_CONTENT_STORE": "content_store",
    "ARTIFACTLOG_S3_ENDPOINT": "s3_endpoint",
    "ARTIFACTLOG_EVENT_PARTITION_SIZE": "event_partition_size",
    "ARTIFACTLOG_STREAM": "stream_name",
    "ARTIFACTLOG_SUBJECT_PREFIX": "subject_prefix",
    "ARTIFACTLOG_DUPLICATE_WINDOW_SECONDS": "duplicate_window_seconds",
    "ARTIFACTLOG_STREAM_REPLICAS": "stream_replicas",
    "ARTIFACTLOG_RELAY_BATCH_SIZE": "relay_batch_size",
    "ARTIFACTLOG_PARTITIONS": "partitions",
    "ARTIFACTLOG_PROJECTION_BATCH_SIZE": "projection_batch_size",
    "ARTIFACTLOG_PROJECTION_MAX_WAIT_SECONDS": "projection_max_wait_seconds",
    "ARTIFACTLOG_READ_WAIT_SECONDS": "read_wait_seconds",
    "ARTIFACTLOG_GRAPHQL_INTROSPECTION": "graphql_introspection",
    "ARTIFACTLOG_GRAPHQL_MAX_DEPTH": "graphql_max_depth",
    "ARTIFACTLOG_GRAPHQL_MAX_ALIASES": "graphql_max_aliases",
    "ARTIFACTLOG_GRAPHQL_MAX_TOKENS": "graphql_max_tokens",
    "ARTIFACTLOG_MAX_BODY_BYTES": "max_body_bytes",
    "ARTIFACTLOG_LOG_LEVEL": "log_level",
    "ARTIFACTLOG_LAG_ALERT_EVENTS": "lag_alert_events",
    "ARTIFACTLOG_LAG_ALERT_SECONDS": "lag_alert_seconds",
    "ARTIFACTLOG_LAG_ALERT_OVERRIDES": "lag_alert_overrides",
    "ARTIFACTLOG_LAG_WATCH_INTERVAL_SECONDS": "lag_watch_interval_seconds",
    "ARTIFACTLOG_PROBE_TIMEOUT_SECONDS": "probe_timeout_seconds",
    "ARTIFACTLOG_CAPTURE_DIR": "capture_dir",
    "ARTIFACTLOG_CAPTURE_CONTENT": "capture_content",
    "ARTIFACTLOG_CAPTURE_INTERVAL_SECONDS": "capture_interval_seconds",
    "ARTIFACTLOG_STREAM_MAX_AGE_SECONDS": "stream_max_age_seconds",
    "ARTIFACTLOG_STREAM_MAX_BYTES": "stream_max_bytes",
    "ARTIFACTLOG_UP_WORKER_PROCESSES": "up_worker_processes",
}


@dataclass(frozen=True)
class Settings:
    home: Path = Path.home() / ".artifactlog"
    database_url: str | None = None
    nats_url: str | None = None
    clickhouse_url: str | None = None
    # A cluster of the server's remote_servers: Replicated*MergeTree ON CLUSTER + Distributed
    # tables (core/clickhouse_ddl.py). None: single-node tables (chDB or one server).
    clickhouse_cluster: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_content_bytes: int = 16 * 1024 * 1024
    # Where content bytes live: "postgres" (the content table, in the event transaction) or
    # "s3://bucket/prefix" (credentials and region from the standard AWS variables).
    content_store: str = "postgres"
    s3_endpoint: str | None = None  # URL of an S3-compatible server; None: AWS itself
    # Positions per events partition; read when migration 0006 creates the partitioned table.
    event_partition_size: int = 10_000_000
    stream_name: str = "ARTIFACTLOG_EVENTS"
    subject_prefix: str = "artifactlog.events"
    # Longer than any relay retry, so a republished event is always recognised as a duplicate.
    duplicate_window_seconds: float = 2 * 3600
    stream_replicas: int = 1
    relay_batch_size: int = 1000
    # Fixed for the life of a stream: an artifact's partition must never change.
    partitions: int = 4
    projection_batch_size: int = 500
    projection_max_wait_seconds: float = 0.05
    # How long a read with minPosition waits for the projections before answering TIMEOUT.
    read_wait_seconds: float = 5.0
    graphql_introspection: bool = True
    graphql_max_depth: int = 15
    graphql_max_aliases: int = 50
    graphql_max_tokens: int = 10_000
    # Room for the largest content as base64 inside a JSON request, plus metadata.
    max_body_bytes: int = 24 * 1024 * 1024
    log_level: str = "INFO"
    # A projection further behind than either threshold is in ALERT (status, metrics, logs).
    lag_alert_events: int = 10_000
    lag_alert_seconds: float = 300.0
    # Per projection, e.g. "analytics.events=50000,version_history.seconds=30".
    lag_alert_overrides: str = ""
    lag_watch_interval_seconds: float = 5.0
    # The longest /readyz and /metrics wait for one dependency: a probe never hangs.
    probe_timeout_seconds: float = 2.0
    # `artifactlog capture` / `run capture`: Parquet files (None: ARTIFACTLOG_HOME/capture).
    capture_dir: Path | None = None
    capture_content: bool = False
    capture_interval_seconds: float = 5.0
    # JetStream retention of the events stream (0 / -1: unlimited). The Postgres log and the
    # capture files keep history; a consumer further behind than this rebuilds from the log.
    stream_max_age_seconds: float = 0.0
    stream_max_bytes: int = -1
    # `artifactlog up` runs the relay, the NATS ingest worker and the projections that do not
    # need chDB as child processes (api/workers.py); off: all of them inside the API process.
    up_worker_processes: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        types = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for var, name in ENVIRONMENT.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            values[name] = _convert(var, raw, types[name])
        return cls(**values)  # type: ignore[arg-type]

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables that read them back (for a child
        process: `from_env` of the result equals self)."""
        return {var: str(getattr(self, name)) for var, name in ENVIRONMENT.items()
                if getattr(self, name) is not None}

    @property
    def embedded(self) -> bool:
        """True when any engine must be started locally."""
        return not (self.database_url and self.nats_url and self.clickhouse_url)

    @property
    def chdb_path(self) -> Path:
        return self.home / "clickhouse"

    @property
    def effective_clickhouse_url(self) -> str:
        return self.clickhouse_url or f"chdb://{self.chdb_path}"


def _convert(var: str, raw: str, annotation: object) -> object:
    text = str(annotation)
    try:
        if text.startswith("bool"):
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes", "on")
        if "Path" in text:
            return Path(raw).expanduser()
        if text.startswith("int"):
            return int(raw)
        if text.startswith("float"):
            return float(raw)
    except ValueError as exc:
        raise ValidationError(f"environment variable {var}={raw!r} is not a valid {text}") from exc
    return raw
