"""A per-process cache of folded artifacts, kept current by reading only the events appended
since: deciding an ingest then costs a read of zero or a few rows, not a fold of the whole
history. The log stays the only truth; an entry is just a fold that is already done."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from core.artifact import ArtifactState
from core.events import RecordedEvent

DEFAULT_ARTIFACTS = 1024


class StateCache:
    """Least-recently-used folded states, handed out as copies: callers apply decided events
    to what they get, and an append that then loses a race must not leave them here."""

    def __init__(self, max_artifacts: int = DEFAULT_ARTIFACTS) -> None:
        self.max_artifacts = max_artifacts
        self._states: OrderedDict[tuple[str, str], ArtifactState] = OrderedDict()

    def get(self, namespace: str, name: str) -> ArtifactState | None:
        state = self._states.get((namespace, name))
        if state is None:
            return None
        self._states.move_to_end((namespace, name))
        return state.copy()

    def put(self, state: ArtifactState) -> None:
        key = (state.namespace, state.name)
        cached = self._states.get(key)
        if cached is not None and cached.stream_version > state.stream_version:
            return  # a concurrent load already stored a newer fold
        self._states[key] = state.copy()
        self._states.move_to_end(key)
        self._trim()

    def advance(self, events: Iterable[RecordedEvent]) -> None:
        """Fold events this process just committed into the cached states they follow, so the
        next load does not read them back. An entry they do not directly follow (another
        writer appended in between) is left as it is: the next load catches it up."""
        for event in events:
            key = (event.namespace, event.name)
            state = self._states.get(key)
            if state is None and event.stream_version == 1:  # a new artifact
                state = self._states[key] = ArtifactState(*key)
                self._trim()
            if state is not None and state.stream_version + 1 == event.stream_version:
                state.apply(event)

    def _trim(self) -> None:
        while len(self._states) > self.max_artifacts:
            self._states.popitem(last=False)
