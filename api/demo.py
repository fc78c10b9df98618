"""Sample artifacts for `artifactlog up --demo`: a dataset, its schema, and a model trained on
it, with one promotion. Idempotency keys make loading twice harmless."""

from __future__ import annotations

from core.commands import IngestVersion, PromoteVersion, VersionRef
from core.services import ArtifactService

ROWS_V1 = [{"id": i, "amount": 10.0 * i, "label": i % 2} for i in range(1, 6)]
ROWS_V2 = [*ROWS_V1, {"id": 6, "amount": 61.5, "label": 1}]


async def load_demo(service: ArtifactService) -> None:
    """Ingest the demo artifacts (safe to run on every start)."""
    async def ingest(key: str, **fields: object) -> int:
        result = await service.ingest(IngestVersion(
            idempotency_key=f"demo:{key}", producer="demo", **fields))  # type: ignore[arg-type]
        return result.version.number

    await ingest("transactions-1", namespace="fraud", name="transactions", kind="dataset",
                 content=ROWS_V1, metadata={"team": "fraud", "key": "id"})
    v2 = await ingest("transactions-2", namespace="fraud", name="transactions",
                      kind="dataset", content=ROWS_V2, metadata={"team": "fraud", "key": "id"})
    await ingest("config-1", namespace="fraud", name="scoring-config", kind="config",
                 text="threshold = 0.7\nwindow = 30d\n", metadata={"team": "fraud"})
    model = await ingest("model-1", namespace="fraud", name="scorer", kind="model",
                         content={"weights": [0.4, 0.6], "bias": -0.1},
                         metadata={"team": "fraud", "metrics": {"auc": 0.91}},
                         parents=(VersionRef("fraud", "transactions", v2),))
    await service.promote(PromoteVersion(VersionRef("fraud", "transactions", v2),
                                         "demo: first production dataset", "demo"))
    await service.promote(PromoteVersion(VersionRef("fraud", "scorer", model),
                                         "demo: first production model", "demo"))
