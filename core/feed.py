"""The live event feed: catch up from the Postgres log, then follow JetStream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from core.eventlog_pg import PostgresEventStore
from core.events import RecordedEvent
from core.jetstream import first_sequence_after
from core.settings import Settings

CATCH_UP_BATCH = 500


class EventFeed:
    def __init__(self, store: PostgresEventStore, js: JetStreamContext,
                 settings: Settings) -> None:
        self.store = store
        self.js = js
        self.settings = settings

    async def follow(self, after_position: int, namespace: str | None
                     ) -> AsyncIterator[RecordedEvent]:
        """Every event after ``after_position`` (of one namespace, if given), then each new
        one as it is published; positions only ever rise."""
        position = after_position
        while batch := await self.store.read_after(position, CATCH_UP_BATCH):
            for event in batch:
                position = event.position
                if namespace is None or event.namespace == namespace:
                    yield event
        start = await first_sequence_after(self.js, self.settings.stream_name, position)
        subject = f"{self.settings.subject_prefix}.*.{namespace or '*'}.*"
        sub = await self.js.subscribe(
            subject, stream=self.settings.stream_name, ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start else DeliverPolicy.ALL,
                opt_start_seq=start))
        try:
            async for msg in sub.messages:
                event = RecordedEvent.from_json(json.loads(msg.data))
                if event.position > position:  # the log and the stream overlap at the seam
                    position = event.position
                    yield event
        finally:
            await sub.unsubscribe()
