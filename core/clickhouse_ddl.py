"""ClickHouse DDL for one node or for a cluster, from the same single-node statements.

Single node: the statements run as written (chDB or one server).

Cluster (``ARTIFACTLOG_CLICKHOUSE_CLUSTER`` names a cluster of the server's
``remote_servers``): every ``CREATE TABLE ... ENGINE = XMergeTree`` becomes

- ``name_local ON CLUSTER c`` with ``ReplicatedXMergeTree`` (one replica set per shard,
  coordinated by ClickHouse Keeper through the ``{shard}``/``{replica}`` macros), and
- ``name ON CLUSTER c`` as a ``Distributed`` table over the ``_local`` tables, which the
  projection inserts into and every query reads, so SQL keeps the same table names.

Rows are sharded by a hash of the table's sorting key (``_replicated_table`` derives the
sharding key from ``ORDER BY`` and nothing else): rows that a Replacing/Summing merge must
collapse share their sorting key, hence their shard, so ``FINAL`` and ``sum()`` over the
Distributed table stay correct. Mutations (TRUNCATE, ALTER DELETE) target the ``_local``
tables ``ON CLUSTER``: a Distributed table holds no rows.

Views:

- a plain ``CREATE VIEW IF NOT EXISTS v AS SELECT ... FROM t FINAL ...`` becomes ``v ON
  CLUSTER c`` over the *Distributed* ``t``, unchanged. That is correct because of the
  sharding above: ``events`` is ``ORDER BY position`` and sharded by
  ``cityHash64(position)``, so every copy of an event (a batch inserted again) lands on the
  shard of its first copy; the Distributed query sends ``FINAL`` to one replica of each
  shard (replicas hold the same rows), each collapses its own duplicates, and the initiator
  merges the shards' partial ``count()``/``sum()`` states.
  (``tests/cluster/test_clickhouse_ddl.py`` checks the sharding key and the view's source.)
- a ``CREATE MATERIALIZED VIEW ... TO t`` (released migration 3 only) is created on every
  node over the ``_local`` tables: each shard summarised the rows it stored.
- ``DROP TABLE IF EXISTS x`` drops both forms ``ON CLUSTER``: ``x`` (the Distributed table or
  a view) and then ``x_local`` (the replicated table or a materialized view).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.clickhouse import quote_identifier

_CREATE_TABLE = re.compile(
    r"^\s*CREATE TABLE IF NOT EXISTS (?P<name>\w+)\s*(?P<columns>\(.*\))\s*"
    r"ENGINE\s*=\s*(?P<engine>\w*MergeTree)(?:\((?P<args>[^)]*)\))?\s*"
    r"(?P<rest>ORDER BY\s+(?P<order>.*?))\s*$", re.S)
_CREATE_VIEW = re.compile(
    r"^\s*CREATE MATERIALIZED VIEW IF NOT EXISTS (?P<name>\w+)\s+TO (?P<target>\w+)\s+AS\s+"
    r"(?P<select>.*?)\s*$", re.S)
_CREATE_PLAIN_VIEW = re.compile(
    r"^\s*CREATE VIEW IF NOT EXISTS (?P<name>\w+)\s+AS\s+(?P<select>.*?)\s*$", re.S)
_DROP_TABLE = re.compile(r"^\s*DROP TABLE IF EXISTS (?P<name>\w+)\s*$")
_FROM = re.compile(r"\bFROM\s+(\w+)")
LOCAL = "_local"
# The writes must be visible (and fail) when the insert returns: the checkpoint is read back.
CLUSTER_INSERT_SETTINGS = {"distributed_foreground_insert": 1}


@dataclass(frozen=True)
class ClickHouseLayout:
    """How tables are laid out: ``cluster`` None for one node, else the cluster's name."""

    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.cluster is not None:
            quote_identifier(self.cluster)  # refuses anything but a plain identifier

    def create(self, statement: str) -> list[str]:
        """The statements that create what ``statement`` creates on one node."""
        if self.cluster is None:
            return [statement]
        if table := _CREATE_TABLE.match(statement):
            return self._replicated_table(table)
        if view := _CREATE_VIEW.match(statement):
            return [self._local_view(view)]
        cluster = quote_identifier(self.cluster)
        if plain := _CREATE_PLAIN_VIEW.match(statement):
            # Over the Distributed tables, as written: see the module doc for why FINAL holds.
            return [f"CREATE VIEW IF NOT EXISTS {plain['name']} ON CLUSTER {cluster}"
                    f" AS {plain['select']}"]
        if drop := _DROP_TABLE.match(statement):
            return [f"DROP TABLE IF EXISTS {name} ON CLUSTER {cluster}"
                    for name in (drop["name"], f"{drop['name']}{LOCAL}")]
        raise ValueError(f"no cluster form for statement: {statement.strip()[:80]}")

    def target(self, table: str) -> str:
        """Where a mutation (TRUNCATE, ALTER ... DELETE) of ``table`` goes."""
        if self.cluster is None:
            return table
        return f"{table}{LOCAL} ON CLUSTER {quote_identifier(self.cluster)}"

    def insert_settings(self) -> dict[str, int]:
        return dict(CLUSTER_INSERT_SETTINGS) if self.cluster else {}

    def _replicated_table(self, match: re.Match[str]) -> list[str]:
        assert self.cluster is not None
        name, cluster = match["name"], quote_identifier(self.cluster)
        args = ["'/clickhouse/tables/{shard}/{database}/{table}'", "'{replica}'"]
        if match["args"] and match["args"].strip():
            args.append(match["args"].strip())
        shard_key = f"cityHash64({match['order'].strip()})"
        return [
            f"CREATE TABLE IF NOT EXISTS {name}{LOCAL} ON CLUSTER {cluster} {match['columns']}"
            f" ENGINE = Replicated{match['engine']}({', '.join(args)}) {match['rest']}",
            f"CREATE TABLE IF NOT EXISTS {name} ON CLUSTER {cluster} AS {name}{LOCAL}"
            f" ENGINE = Distributed({cluster}, currentDatabase(), {name}{LOCAL}, {shard_key})",
        ]

    def _local_view(self, match: re.Match[str]) -> str:
        assert self.cluster is not None
        select = _FROM.sub(lambda m: f"FROM {m[1]}{LOCAL}", match["select"])
        return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {match['name']}{LOCAL}"
                f" ON CLUSTER {quote_identifier(self.cluster)}"
                f" TO {match['target']}{LOCAL} AS {select}")
