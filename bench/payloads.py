"""The workloads, generated once and fed identically to artifactlog and to the baselines.

``Versions`` is the issue's bulk workload (artifacts x versions of ~500-byte JSON content);
``events()`` are exactly the events artifactlog appends for it (same payload, digest and
metadata fields), which the raw baselines write instead. ``with_stage_changes`` adds the
promotions and withdrawals the projections see in production.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from core.content import encode_content
from core.events import (
    DomainEvent,
    NewEvent,
    VersionIngested,
    VersionKey,
    VersionPromoted,
    VersionWithdrawn,
)

MAX_BYTES = 16 * 1024 * 1024


def content(artifact: int, number: int) -> dict[str, Any]:
    """About 500 bytes of canonical JSON, different for every version (content identical to
    the latest version would be answered with that version, not a new one)."""
    seed = artifact * 1_000_003 + number
    return {
        "artifact": artifact, "version": number,
        "source": f"s3://lake/team-{artifact % 17}/part-{seed:012d}.parquet",
        "rows": [{"id": 10**10 + seed * 10 + i, "score": (seed * 37 + i * 101) % 1000 / 1000,
                  "label": f"label-{(seed + i) % 97:02d}"} for i in range(8)],
    }


@dataclass(frozen=True)
class Versions:
    """``artifacts`` x ``versions`` ingests in round-robin order across the artifacts, as if
    that many producers each added their next version. With ``lineage``, version n of artifact
    a > 0 has version n of artifact a-1 as parent: upstream chains as deep as there are
    artifacts."""

    namespace: str
    artifacts: int
    versions: int
    lineage: bool = False

    def __len__(self) -> int:
        return self.artifacts * self.versions

    def order(self) -> list[tuple[int, int]]:
        return [(a, n) for n in range(1, self.versions + 1) for a in range(self.artifacts)]

    def input(self, artifact: int, number: int) -> dict[str, Any]:
        """One IngestInput (the GraphQL contract's field names)."""
        item: dict[str, Any] = {
            "namespace": self.namespace, "name": f"a{artifact}", "kind": "dataset",
            "content": content(artifact, number),
            "metadata": {"team": f"team-{artifact % 17}", "rows": 8}}
        if self.lineage and artifact:
            item["parents"] = [{"namespace": self.namespace, "name": f"a{artifact - 1}",
                                "number": number}]
        return item

    def inputs(self) -> list[dict[str, Any]]:
        return [self.input(a, n) for a, n in self.order()]

    def ndjson(self) -> list[bytes]:
        return [json.dumps(i, separators=(",", ":")).encode() for i in self.inputs()]

    def ingested(self, artifact: int, number: int) -> VersionIngested:
        """The event artifactlog records for ``input(artifact, number)``."""
        item = self.input(artifact, number)
        stored = encode_content(content=item["content"], max_bytes=MAX_BYTES)
        parents = tuple(VersionKey(p["namespace"], p["name"], p["number"])
                        for p in item.get("parents", ()))
        return VersionIngested(
            number=number, kind=item["kind"], label=f"v{number}", digest=stored.digest,
            size=stored.size, media_type=stored.media_type, content_type=stored.content_type,
            metadata=item["metadata"], parents=parents)

    def events(self) -> list[NewEvent]:
        """The ingests as events, with the metadata fields the service records."""
        return [self._new(a, n, self.ingested(a, n)) for a, n in self.order()]

    def _new(self, artifact: int, stream_version: int, event: DomainEvent) -> NewEvent:
        metadata = {"actor": "bench", "correlationId": str(uuid.uuid4())}
        return NewEvent(self.namespace, f"a{artifact}", stream_version, event, metadata)

    def with_stage_changes(self, seed: int = 1) -> list[NewEvent]:
        """The ingests plus a promotion after ~20% of them and a withdrawal after ~8%,
        round-robin across artifacts (about 1.28 events per version)."""
        rng = random.Random(seed)
        streams: list[list[NewEvent]] = []
        for a in range(self.artifacts):
            stream: list[DomainEvent] = []
            production: int | None = None
            for n in range(1, self.versions + 1):
                stream.append(self.ingested(a, n))
                if rng.random() < 0.2:
                    stream.append(VersionPromoted(number=n, previous=production))
                    production = n
                elif rng.random() < 0.1:
                    stream.append(VersionWithdrawn(number=n, reason="failed validation"))
            streams.append([self._new(a, i, e) for i, e in enumerate(stream, start=1)])
        longest = max(map(len, streams))
        return [s[i] for i in range(longest) for s in streams if i < len(s)]
