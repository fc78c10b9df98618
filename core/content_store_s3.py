"""Content bytes in an S3-compatible object store: one object per digest, ``prefix/<sha256>``.

Objects are written before the event transaction (see core/eventlog_pg.py). Content is
addressed by its digest, so an object whose transaction then failed is an orphan: a later
ingest of the same bytes reuses it, and no event can name bytes other than its digest's.
Orphans cost storage only. Uploads carry the sha256 as an S3 checksum, so the server refuses
bytes corrupted on the way.

boto3 is synchronous; each call runs in a worker thread (its clients are thread-safe).
Credentials and region come from boto3's standard chain (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, profiles, instance roles); they are
never kept in Settings, logged or shown. The bucket must exist.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3  # type: ignore[import-untyped]  # no stubs shipped
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

from core.content import Content
from core.errors import Unavailable, ValidationError

T = TypeVar("T")
DIGEST = re.compile(r"[0-9a-f]{64}")
HEADER_SAFE = re.compile(r"[\x20-\x7e]{1,255}")
MISSING = {"404", "NoSuchKey", "NotFound"}
# Concurrent uploads of one batch: enough to hide latency, within boto3's connection pool.
UPLOADS_AT_ONCE = 8
CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                       read_timeout=60, max_pool_connections=UPLOADS_AT_ONCE * 2)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ends with "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket`` or ``s3://bucket/some/prefix``."""
        match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?", url)
        if match is None:
            raise ValidationError(f"ARTIFACTLOG_CONTENT_STORE={url!r} is not s3://bucket/prefix")
        prefix = (match.group(2) or "").strip("/")
        return cls(match.group(1), f"{prefix}/" if prefix else "")

    def key(self, digest: str) -> str:
        if not DIGEST.fullmatch(digest):
            raise ValidationError(f"not a sha256 digest: {digest[:80]!r}")
        return self.prefix + digest


class S3ContentStore:
    def __init__(self, client: Any, location: S3Location) -> None:
        self.client = client
        self.location = location

    @classmethod
    def connect(cls, url: str, *, endpoint: str | None = None) -> S3ContentStore:
        """A store for ``s3://bucket/prefix``, credentials from the standard AWS chain."""
        client = boto3.session.Session().client("s3", endpoint_url=endpoint,
                                                config=CLIENT_CONFIG)
        return cls(client, S3Location.parse(url))

    def __repr__(self) -> str:  # never the client: nothing credential-shaped in a repr
        return f"S3ContentStore(s3://{self.location.bucket}/{self.location.prefix})"

    async def put_many(self, contents: Sequence[Content]) -> None:
        unique = list({c.digest: c for c in contents}.values())
        slots = asyncio.Semaphore(UPLOADS_AT_ONCE)

        async def put(content: Content) -> None:
            async with slots:
                if not await self.exists(content.digest):
                    await self._call(self._put, content)

        await asyncio.gather(*[put(c) for c in unique])

    def _put(self, content: Content) -> None:
        extra = {"ContentType": content.media_type} if HEADER_SAFE.fullmatch(
            content.media_type) else {}  # the media type is user input: never a bad header
        self.client.put_object(
            Bucket=self.location.bucket, Key=self.location.key(content.digest),
            Body=content.data,
            ChecksumSHA256=base64.b64encode(bytes.fromhex(content.digest)).decode(), **extra)

    async def get(self, digest: str) -> bytes | None:
        key = self.location.key(digest)

        def read() -> bytes | None:
            try:
                response = self.client.get_object(Bucket=self.location.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return None
                raise
            return bytes(response["Body"].read())

        return await self._call(read)

    async def exists(self, digest: str) -> bool:
        key = self.location.key(digest)

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.location.bucket, Key=key)
            except ClientError as exc:
                if _missing(exc):
                    return False
                raise
            return True

        return await self._call(head)

    async def delete(self, digest: str) -> bool:
        # S3 deletes answer the same whether or not the object was there: ask first.
        if not await self.exists(digest):
            return False
        key = self.location.key(digest)
        await self._call(lambda: self.client.delete_object(Bucket=self.location.bucket,
                                                           Key=key))
        return True

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args)
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(f"the content store s3://{self.location.bucket} failed: "
                              f"{_reason(exc)}") from exc


def _missing(exc: ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in MISSING


def _reason(exc: BotoCoreError | ClientError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".strip(": ")
    return type(exc).__name__
