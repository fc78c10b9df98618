"""The capture directory's manifest: which files hold captured rows, and the log position
they reach. It is the one source of truth of a capture, committed only after the files it
names are durably written (fsync of file and directory), by an atomic rename of its own.

So after a crash at any point the directory holds the manifest's files plus, at most, files
of an uncommitted batch; those are deleted on restart and the batch is written again from the
manifest's position: no gap (nothing past the position is assumed written) and no duplicate
row (nothing outside the manifest survives).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.errors import ValidationError

MANIFEST = "_manifest.json"
DATA_DIRS = ("events", "contents")


@dataclass(frozen=True)
class Manifest:
    position: int = 0  # every event at or below it is in ``files``, none above
    content: bool = False  # the capture includes version content (fixed at the first run)
    files: tuple[str, ...] = field(default_factory=tuple)  # relative to the directory

    def advanced(self, position: int, files: list[str]) -> Manifest:
        return replace(self, position=position, files=(*self.files, *files))


def load(directory: Path) -> Manifest | None:
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValidationError(f"{directory / MANIFEST} is not a capture manifest: {exc}") from exc
    return Manifest(int(data["position"]), bool(data["content"]), tuple(data["files"]))


def commit(directory: Path, manifest: Manifest) -> None:
    """Replace the manifest atomically and durably."""
    tmp = directory / (MANIFEST + ".tmp")
    body = json.dumps({"position": manifest.position, "content": manifest.content,
                       "files": list(manifest.files)}, indent=0)
    write_durably(tmp, body.encode())
    os.replace(tmp, directory / MANIFEST)
    fsync_directory(directory)


def write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def fsync_directory(directory: Path) -> None:
    """A rename is durable once its directory is synced."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_uncommitted(directory: Path, manifest: Manifest) -> list[str]:
    """Delete data files the manifest does not name (a batch cut short); return them."""
    kept = set(manifest.files)
    removed = []
    for name in DATA_DIRS:
        for path in sorted((directory / name).rglob("*")):
            relative = str(path.relative_to(directory))
            if path.is_file() and relative not in kept:
                path.unlink()
                removed.append(relative)
    return removed
