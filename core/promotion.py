"""Promotion with policies: promote, request and approve, dry-run checks, and the policies
themselves (per artifact, or per namespace on the namespace's policy stream)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.artifact import (
    ArtifactState,
    VersionState,
    approval_for,
    decide_promote,
    decide_request,
    fold,
    promotable,
    validate_name,
)
from core.commands import PromoteVersion, VersionRef
from core.content import decode_content
from core.diff import semver_bump
from core.errors import Conflict, StreamVersionTaken
from core.events import DomainEvent, PromotionPolicySet
from core.policies import PolicyCheck, evaluate, validate_rules
from core.ports import AppendBatch
from core.tasks import gather_or_cancel

if TYPE_CHECKING:
    from core.services import ArtifactService, PromoteResult

# Namespace policies live on a stream of their own; names must start with a letter or digit,
# so no artifact can ever be called this.
NAMESPACE_POLICY_STREAM = "__namespace__"
MAX_ATTEMPTS = 8


class Promotions:
    def __init__(self, artifacts: ArtifactService) -> None:
        self.artifacts = artifacts

    async def promote(self, cmd: PromoteVersion, *, override: bool = False) -> PromoteResult:
        """Make a version PRODUCTION if every policy passes (or an admin overrides)."""
        return await self._promote(cmd, override=override, approving=False)

    async def approve(self, cmd: PromoteVersion) -> PromoteResult:
        """A second actor approves a requested promotion, which then takes place."""
        return await self._promote(cmd, override=False, approving=True)

    async def request(self, ref: VersionRef, reason: str | None, actor: str | None) -> int:
        for _ in range(MAX_ATTEMPTS):
            state = await self.artifacts.load_existing(ref.namespace, ref.name)
            decided = decide_request(state, ref, reason)
            if decided is None:
                return state.position
            try:
                return (await self._append(state, [decided], actor))[-1]
            except StreamVersionTaken:
                continue
        raise Conflict(f"{ref} changed too often; try again")

    async def check(self, ref: VersionRef) -> tuple[VersionState, list[PolicyCheck]]:
        """Dry run: every policy's verdict for promoting ``ref`` now; nothing is written."""
        state, policies = await self._load(ref)
        return state.resolve(ref), await self._checks(state, policies, ref, approved_by=None)

    async def set_policy(self, namespace: str, name: str | None, rules: Any,
                         actor: str | None) -> int:
        """Record a promotion policy for one artifact, or (name None) a whole namespace."""
        validate_name("namespace", namespace)
        event = PromotionPolicySet(tuple(validate_rules(rules)))
        if name is None:
            state = await self._namespace_state(namespace)
        else:
            state = await self.artifacts.load_existing(namespace, name)
        return (await self._append(state, [event], actor))[-1]

    async def _promote(self, cmd: PromoteVersion, *, override: bool, approving: bool
                       ) -> PromoteResult:
        from core.services import PromoteResult

        for _ in range(MAX_ATTEMPTS):
            state, policies = await self._load(cmd.ref)
            events: list[DomainEvent] = []
            approver = None
            if approving:
                events.append(approval_for(state, cmd.ref, cmd.actor))
                approver = cmd.actor
            # Already PRODUCTION: nothing to judge (and no policy reads to make).
            checks = [] if promotable(state, cmd.ref) is None else await self._checks(
                state, policies, cmd.ref, approved_by=approver)
            decided = decide_promote(state, cmd.ref, cmd.reason, checks=checks,
                                     override=override, approved_by=approver)
            if decided is None:
                recorded, _ = state.promotions[-1]
                return PromoteResult(state.resolve(cmd.ref), None, recorded.position)
            try:
                position = (await self._append(state, [*events, decided], cmd.actor))[-1]
            except StreamVersionTaken:
                continue
            # Read after the event is folded in, so the previous version shows SUPERSEDED.
            previous = state.version(decided.previous) if decided.previous else None
            return PromoteResult(state.resolve(cmd.ref), previous, position)
        raise Conflict(f"{cmd.ref} changed too often to promote; try again")

    async def _load(self, ref: VersionRef) -> tuple[ArtifactState, ArtifactState]:
        """The artifact and its namespace's policy stream, read at once on two connections:
        a promotion needs both, and one round trip after the other was most of its wait."""
        state, policies = await gather_or_cancel(
            self.artifacts.load_existing(ref.namespace, ref.name),
            self._namespace_state(ref.namespace))
        return state, policies

    async def _checks(self, state: ArtifactState, policies: ArtifactState, ref: VersionRef, *,
                      approved_by: str | None) -> list[PolicyCheck]:
        rules = [*policies.rules, *state.rules]
        if not rules:
            return []
        candidate = state.resolve(ref)
        production = state.version(state.production) if state.production else None
        if approved_by is None and (approval := state.approvals.get(candidate.number)):
            digest, approver = approval
            approved_by = approver if digest == candidate.digest else None
        breaks = any(r["type"] == "schema_compatible" for r in rules) and (
            await self._schema_breaks(production, candidate))
        return evaluate(rules, candidate, production, approved_by=approved_by,
                        schema_breaks=breaks)

    async def _schema_breaks(self, production: VersionState | None,
                             candidate: VersionState) -> bool:
        if production is None or {production.content_type, candidate.content_type} != {"json"}:
            return False
        before = decode_content(await self.artifacts.content_of(production), "json")
        after = decode_content(await self.artifacts.content_of(candidate), "json")
        return semver_bump(before, after) == "MAJOR"

    async def _namespace_state(self, namespace: str) -> ArtifactState:
        events = await self.artifacts.store.load_stream(namespace, NAMESPACE_POLICY_STREAM)
        return fold(namespace, NAMESPACE_POLICY_STREAM, events)

    async def _append(self, state: ArtifactState, events: Sequence[DomainEvent],
                      actor: str | None) -> list[int]:
        new = [self.artifacts.new_event(state, event, actor, offset=i + 1)
               for i, event in enumerate(events)]
        recorded = await self.artifacts.store.append(AppendBatch(new))
        for r in recorded:
            state.apply(r)
        return [r.position for r in recorded]

