"""Retention: purge the content bytes of drafts never promoted after a namespace's N days,
and archive artifacts. Both are events (ContentPurged, ArtifactArchived/Unarchived); the
history stays.

A purge appends ContentPurged events first and removes bytes second, and each run looks again
at every purged version of the artifacts it visits: a run that stopped between the two steps
leaves bytes that the next run removes. Bytes go only when no unpurged version (of any
artifact) still uses the digest. Known gap: an ingest of the very same bytes that is in flight
while the bytes are removed (its content row written, its event not yet committed) would
reference removed bytes; the window is one transaction long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from core.artifact import ArtifactState, decide_archive, decide_purge, validate_name
from core.errors import Conflict, NotFound, StreamVersionTaken, ValidationError
from core.events import DomainEvent, VersionKey
from core.ports import AppendBatch
from core.retention_pg import RetentionPolicy, RetentionStore
from core.services import ArtifactService

log = logging.getLogger("artifactlog.retention")

MAX_ATTEMPTS = 8
# How often the maintenance worker (the webhooks role) applies every policy: retention counts
# in days, so an hour late is nothing.
APPLY_INTERVAL_SECONDS = 3600.0
MAX_DRAFT_DAYS = 36_500


class ContentRemover(Protocol):
    """The part of the content store (core/ports.py ContentStore) a purge needs."""

    async def delete(self, digest: str) -> bool:
        """Remove the bytes for a digest; True when there were bytes to remove."""
        ...


@dataclass(frozen=True)
class PurgedVersion:
    key: VersionKey
    digest: str
    size: int


@dataclass
class RetentionReport:
    dry_run: bool
    purged: list[PurgedVersion] = field(default_factory=list)
    digests_deleted: list[str] = field(default_factory=list)  # bytes actually removed
    digests_kept: list[str] = field(default_factory=list)  # still used by an unpurged version


def check_draft_days(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not (
            1 <= days <= MAX_DRAFT_DAYS):
        raise ValidationError(f"draftDays must be a whole number of days from 1 to "
                              f"{MAX_DRAFT_DAYS}, got {days!r}")
    return days


class Retention:
    def __init__(self, artifacts: ArtifactService, store: RetentionStore,
                 contents: ContentRemover) -> None:
        self.artifacts = artifacts
        self.store = store
        self.contents = contents

    async def set_policy(self, namespace: str, draft_days: int, actor: str | None
                         ) -> RetentionPolicy:
        """Purge the namespace's never-promoted drafts once they are ``draft_days`` old."""
        validate_name("namespace", namespace)
        return await self.store.set_policy(namespace, check_draft_days(draft_days),
                                           actor or "")

    async def remove_policy(self, namespace: str) -> bool:
        validate_name("namespace", namespace)
        return await self.store.remove_policy(namespace)

    async def policies(self, namespace: str | None = None) -> list[RetentionPolicy]:
        return await self.store.policies(namespace)

    async def apply(self, *, now: datetime | None = None, dry_run: bool = False,
                    namespace: str | None = None, actor: str | None = None
                    ) -> RetentionReport:
        """Apply every policy (or one namespace's) as of ``now``; a dry run writes nothing."""
        if namespace is not None:
            validate_name("namespace", namespace)
        if now is not None and now.tzinfo is None:
            raise ValidationError("now needs a time zone")
        policies = await self.store.policies(namespace)
        if namespace is not None and not policies:
            raise NotFound(f"namespace {namespace} has no retention policy")
        report = RetentionReport(dry_run)
        candidates: set[str] = set()
        for policy in policies:
            for name in await self.store.artifact_names(policy.namespace):
                state = await self._purge(policy, name, now or datetime.now(UTC), report,
                                          actor)
                candidates.update(v.digest for v in state.versions if v.purged)
        candidates.update(p.digest for p in report.purged)
        await self._remove_bytes(candidates, report)
        return report

    async def _purge(self, policy: RetentionPolicy, name: str, now: datetime,
                     report: RetentionReport, actor: str | None) -> ArtifactState:
        reason = f"retention: never promoted after {policy.draft_days} days"
        for _ in range(MAX_ATTEMPTS):
            state = await self.artifacts.load(policy.namespace, name)
            events = decide_purge(state, now, timedelta(days=policy.draft_days), reason)
            if events and not report.dry_run:
                try:
                    await self._append(state, events, actor)
                except StreamVersionTaken:
                    continue
            sizes = {v.number: v.size for v in state.versions}
            report.purged += [PurgedVersion(VersionKey(policy.namespace, name, e.number),
                                            e.digest, sizes[e.number]) for e in events]
            return state
        raise Conflict(f"{policy.namespace}/{name} changed too often to purge; try again")

    async def _remove_bytes(self, candidates: set[str], report: RetentionReport) -> None:
        # A dry run has appended nothing, so the versions it would purge count as purged;
        # it reports only what this run would purge (not leftovers of an earlier run).
        if report.dry_run:
            candidates = {p.digest for p in report.purged}
        in_use = await self.store.digests_in_use(candidates,
                                                 purging=[p.key for p in report.purged])
        report.digests_kept = sorted(in_use & {p.digest for p in report.purged})
        for digest in sorted(candidates - in_use):
            if report.dry_run or await self.contents.delete(digest):
                report.digests_deleted.append(digest)

    async def run_periodically(self, stop: asyncio.Event, *,
                               interval_seconds: float = APPLY_INTERVAL_SECONDS,
                               clock: Callable[[], datetime] = lambda: datetime.now(UTC)
                               ) -> None:
        """Apply every policy now and then each interval until ``stop``. Two workers doing
        this at once are safe: purges append with an expected stream version (the loser
        reloads and finds nothing left to purge) and deleting gone bytes is a no-op."""
        while not stop.is_set():
            try:
                report = await self.apply(now=clock(), actor="retention")
                if report.purged:
                    log.info("retention purged %d version(s), removed %d digest(s)",
                             len(report.purged), len(report.digests_deleted))
            except Exception:
                log.exception("retention run failed; retrying at the next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)

    async def archive(self, namespace: str, name: str, *, archived: bool,
                      reason: str | None, actor: str | None) -> int:
        """Hide the artifact from listings (or show it again); returns the position."""
        for _ in range(MAX_ATTEMPTS):
            state = await self.artifacts.load(namespace, name)
            decided = decide_archive(state, archived, reason)
            if decided is None:
                return state.position
            try:
                return await self._append(state, [decided], actor)
            except StreamVersionTaken:
                continue
        raise Conflict(f"{namespace}/{name} changed too often to archive; try again")

    async def _append(self, state: ArtifactState, events: Sequence[DomainEvent],
                      actor: str | None) -> int:
        new = [self.artifacts.new_event(state, event, actor, offset=i + 1)
               for i, event in enumerate(events)]
        recorded = await self.artifacts.store.append(AppendBatch(new))
        for r in recorded:
            state.apply(r)
        return recorded[-1].position
