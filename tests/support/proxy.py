"""A small TCP proxy for tests: sits between a client (the agent) and a real server (the emulator) and slows
the bytes down, so that a backup lasts long enough to kill its agent or to outlive several STS sessions.

It forwards raw TCP (HTTP/1.1 keep-alive included), binds 127.0.0.1 only, and runs in threads of the test
process; ``close()`` stops it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class SlowProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` at about ``bytes_per_second`` in each direction per connection."""

    target: tuple[str, int]
    bytes_per_second: float = 0.0
    port: int = 0
    forwarded: int = 0
    _server: socket.socket | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def start(self) -> SlowProxy:
        """Listen and start accepting connections."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        server.settimeout(0.2)
        self._server = server
        self.port = server.getsockname()[1]
        threading.Thread(target=self._accept, name="slow-proxy", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        """The proxy's http URL."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting; open connections end when their peers close."""
        self._stop.set()
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            # Blocking from here on: a slowed request legitimately waits longer than any connect timeout.
            upstream.settimeout(None)
            client.settimeout(None)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        chunk = 16 * 1024
        try:
            while not self._stop.is_set():
                data = source.recv(chunk)
                if not data:
                    break
                if self.bytes_per_second > 0:
                    time.sleep(len(data) / self.bytes_per_second)
                sink.sendall(data)
                with self._lock:
                    self.forwarded += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
