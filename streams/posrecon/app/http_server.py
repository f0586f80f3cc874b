"""The threaded HTTP server both APIs run (the worker's ops API and the cases process's API): one home for
how it binds, wraps TLS and starts and stops its thread."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from posrecon.engine.pan import scrub_text


def not_found(error: str, key: str, value: str, partition: int) -> tuple[int, dict[str, Any]]:
    """A 404 of a lookup (``/orders/{id}``, ``/batches/{id}``): what was asked for, masked, and its partition."""
    return 404, {"error": error, key: scrub_text(value), "partition": partition}


class ApiServer:
    """A ``ThreadingHTTPServer`` on its own daemon thread; subclasses call :meth:`_serve` with their handler."""

    server: ThreadingHTTPServer
    thread: threading.Thread

    def _serve(
        self, host: str, port: int, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None, name: str
    ) -> None:
        self.server = ThreadingHTTPServer((host, port), handler)
        if tls is not None:
            # handshake on the handler thread's first read, not in accept(): a slow client cannot stall the server
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.server.serve_forever, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
