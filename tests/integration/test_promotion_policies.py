"""Promotion policies against the real event log: metadata predicates (also against the
production version), schema compatibility, approvals by a second actor, dry runs, admin
overrides, namespace-wide policies."""

from __future__ import annotations

import pytest

from core.commands import IngestVersion, PromoteVersion, VersionRef
from core.errors import PolicyRefused, StageRuleViolation, ValidationError
from core.promotion import Promotions
from core.services import ArtifactService

pytestmark = pytest.mark.anyio


def ref(ns: str, number: int, name: str = "model") -> VersionRef:
    return VersionRef(ns, name, number)


async def test_metadata_predicates_compare_with_production(service: ArtifactService,
                                                           names: str) -> None:
    for rmse in (0.5, 0.7, 0.4):
        await service.ingest(IngestVersion(names, "model", content={"rmse": rmse},
                                           metadata={"metrics": {"rmse": rmse}}))
    promotions = Promotions(service)
    await promotions.set_policy(names, "model", [
        {"type": "metadata", "expr": "metrics.rmse <= production.metrics.rmse"}], "admin")
    await service.promote(PromoteVersion(ref(names, 1)))  # no production yet: passes
    version, checks = await promotions.check(ref(names, 2))
    assert (version.number, [c.passed for c in checks]) == (2, [False])
    assert "0.7 <= 0.5 does not hold" in checks[0].reason
    with pytest.raises(PolicyRefused, match=r"metrics.rmse <= production.metrics.rmse") as no:
        await service.promote(PromoteVersion(ref(names, 2)))
    assert no.value.code == "POLICY"
    promoted = await service.promote(PromoteVersion(ref(names, 3)))
    assert promoted.version.number == 3
    # Rollback to v1 is a promotion like any other: refused, unless an admin overrides.
    with pytest.raises(PolicyRefused):
        await service.promote(PromoteVersion(ref(names, 1)))
    with pytest.raises(ValidationError, match="needs a reason"):
        await service.promote(PromoteVersion(ref(names, 1), actor="root"), override=True)
    rolled = await service.promote(PromoteVersion(ref(names, 1), "incident 42", "root"),
                                   override=True)
    assert rolled.version.number == 1
    state = await service.load(names, "model")
    recorded, event = state.promotions[-1]
    assert (event.override, event.reason, recorded.metadata["actor"]) == (
        True, "incident 42", "root")


async def test_approval_by_a_second_actor_binds_to_that_version(service: ArtifactService,
                                                                names: str) -> None:
    await service.ingest(IngestVersion(names, "model", content={"w": 1}))
    await service.ingest(IngestVersion(names, "model", content={"w": 2}))
    promotions = Promotions(service)
    await promotions.set_policy(names, "model", [{"type": "approval"}], "admin")
    with pytest.raises(PolicyRefused, match="needs approval"):
        await service.promote(PromoteVersion(ref(names, 1), actor="ana"))
    with pytest.raises(StageRuleViolation, match="no pending promotion request"):
        await promotions.approve(PromoteVersion(ref(names, 1), actor="bo"))
    await promotions.request(ref(names, 1), "ready", "ana")
    with pytest.raises(PolicyRefused, match="second actor"):
        await promotions.approve(PromoteVersion(ref(names, 1), actor="ana"))
    with pytest.raises(StageRuleViolation):  # the approval is for v1, not v2
        await promotions.approve(PromoteVersion(ref(names, 2), actor="bo"))
    approved = await promotions.approve(PromoteVersion(ref(names, 1), "lgtm", "bo"))
    assert approved.version.number == 1
    state = await service.load(names, "model")
    assert state.promotions[-1][1].approved_by == "bo"
    assert not state.requests  # the request is used up by the promotion


async def test_schema_compatibility_and_namespace_policies(service: ArtifactService,
                                                           names: str) -> None:
    rows = [{"id": 1, "amount": 2.5}]
    await service.ingest(IngestVersion(names, "ds", content=rows))
    await service.ingest(IngestVersion(names, "ds", content=[{"id": 1, "amount": 3.0,
                                                              "extra": True}]))
    await service.ingest(IngestVersion(names, "ds", content=[{"id": 1}]))
    await Promotions(service).set_policy(names, None, [{"type": "schema_compatible"}], "admin")
    await service.promote(PromoteVersion(ref(names, 1, "ds")))
    await service.promote(PromoteVersion(ref(names, 2, "ds")))  # a column added: fine
    with pytest.raises(PolicyRefused, match="schema_compatible"):
        await service.promote(PromoteVersion(ref(names, 3, "ds")))  # columns removed


async def test_bad_policies_are_refused(service: ArtifactService, names: str) -> None:
    await service.ingest(IngestVersion(names, "model", content=1))
    for rules in ({"type": "approval"}, [{"type": "vibes"}], [{"type": "metadata",
                                                               "expr": "rmse"}]):
        with pytest.raises(ValidationError):
            await Promotions(service).set_policy(names, "model", rules, "admin")
