"""A real HTTP receiver on 127.0.0.1 for webhook tests: it checks each request's signature
and keeps what arrived. ``stop()`` closes the port (connection refused), ``start()`` opens it
again on the same port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from core.runtime import free_port
from core.webhooks import DELIVERY_HEADER, verify_signature


@dataclass
class Received:
    delivery: str
    body: dict[str, Any]
    raw: bytes
    headers: dict[str, str]
    verified: bool


class Receiver:
    def __init__(self, secret: str = "") -> None:
        self.secret = secret
        self.port = free_port()
        self.received: list[Received] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = dict(self.headers.items())
                receiver.received.append(Received(
                    headers.get(DELIVERY_HEADER, ""), json.loads(raw), raw, headers,
                    verify_signature(receiver.secret, raw, headers, now=time.time())))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
