"""What every resolver can reach: the application services for this request."""

from __future__ import annotations

from dataclasses import dataclass

import strawberry

from core.services import ArtifactService


@dataclass
class Context:
    service: ArtifactService
    actor: str | None = None

    @property
    def reads(self) -> ArtifactService:
        return self.service


Info = strawberry.Info[Context, None]
