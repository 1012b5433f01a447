"""An HTTP/1.1 fault proxy for tests: sits between Stowage (or its agent) and the AWS emulator and, at a set
rate, answers for the endpoint with what a real AWS endpoint does when it has a bad moment.

Point ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``, or a location's ``s3Url``) at ``FaultProxy.url``.
Every request is read whole (``Expect: 100-continue`` is answered by the proxy itself), then, with probability
``rate`` (a seeded RNG), one fault of the configured kinds is injected instead of a plain forward:

* ``500``: an internal error — S3's ``InternalError`` (REST-XML ``<Error>``), EC2's ``InternalError``
  (``<Response><Errors><Error>``), STS/IAM's ``InternalFailure`` (query ``<ErrorResponse>``), JSON services'
  ``InternalFailure`` (``{"__type": …}``). The shapes are the ones botocore's parsers read.
* ``503``: throttling — S3 ``503 SlowDown``, EC2 ``503 RequestLimitExceeded``, STS/IAM ``400 Throttling``,
  JSON ``400 ThrottlingException``.
* ``reset``: the connection is reset (RST) mid-request when the request has a body (after its headers, before
  the body), otherwise before any answer; nothing reaches the endpoint.
* ``reset_after``: the request is forwarded and the endpoint acts on it, then the client's connection is
  reset instead of the answer (the retry repeats a request that already took effect).
* ``delay``: the answer is held back for ``delay_seconds`` (a random time in that range), then forwarded.

The service is read from the SigV4 credential scope (``…/<region>/<service>/aws4_request``). The proxy counts
requests, retries (botocore's ``amz-sdk-request: attempt=N`` header), faults by kind and service, answers
forwarded, and which faulted calls (``amz-sdk-invocation-id``) were answered on a later attempt. It binds
127.0.0.1 only and runs in threads of the test process; ``close()`` stops it.
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

KINDS = ("500", "503", "reset", "reset_after", "delay")
_SCOPE = re.compile(rb"Credential=[^/,\s]+/\d{8}/[^/]+/([a-z0-9-]+)/aws4_request", re.IGNORECASE)
_QUERY_SCOPE = re.compile(rb"X-Amz-Credential=[^&\s]*?%2F([a-z0-9-]+)%2Faws4_request", re.IGNORECASE)
_ATTEMPT = re.compile(r"attempt=(\d+)")
_MAX_HEAD = 64 * 1024


@dataclass
class FaultStats:
    """What the proxy saw: one instance per proxy, read with ``snapshot`` (consistent under the lock)."""

    requests: int = 0
    answered: int = 0
    retries: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    by_service: Counter[str] = field(default_factory=Counter)
    faults_by_service: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    faulted_calls: set[str] = field(default_factory=set)
    recovered_calls: set[str] = field(default_factory=set)

    @property
    def injected(self) -> int:
        """Faults injected, all kinds."""
        return sum(self.faults.values())

    @property
    def unrecovered_calls(self) -> set[str]:
        """Calls (invocation ids) that got a fault and never a forwarded answer afterwards."""
        return self.faulted_calls - self.recovered_calls

    def summary(self) -> str:
        """One line of figures for a test's output."""
        kinds = ", ".join(f"{k} {self.faults[k]}" for k in KINDS if self.faults[k]) or "none"
        services = ", ".join(f"{k} {v}" for k, v in sorted(self.by_service.items()))
        return (
            f"requests {self.requests} ({services}); faults injected {self.injected} ({kinds}); "
            f"retries observed {self.retries}; answers forwarded {self.answered}; faulted calls "
            f"{len(self.faulted_calls)}, answered on a later attempt {len(self.faulted_calls & self.recovered_calls)}"
        )


@dataclass
class _Request:
    method: str
    target: str
    head: bytes
    headers: dict[str, str]
    body: bytes
    service: str

    @property
    def invocation(self) -> str | None:
        return self.headers.get("amz-sdk-invocation-id")

    @property
    def attempt(self) -> int:
        found = _ATTEMPT.search(self.headers.get("amz-sdk-request", ""))
        return int(found.group(1)) if found else 1

    @property
    def json_protocol(self) -> bool:
        return "x-amz-target" in self.headers


class _Closed(Exception):
    """The peer closed the connection (or sent something that is not HTTP/1.1)."""


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``target`` (an ``http://`` URL), injecting faults at ``rate``."""

    def __init__(
        self,
        target: str,
        *,
        rate: float = 0.1,
        kinds: tuple[str, ...] = KINDS,
        services: tuple[str, ...] | None = None,
        seed: int = 12,
        delay_seconds: tuple[float, float] = (0.2, 1.0),
        cycle_kinds: bool = False,
    ) -> None:
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("the fault proxy forwards to plain http:// endpoints only")
        unknown = set(kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.target = (parts.hostname, parts.port or 80)
        self.rate = rate
        self.kinds = kinds
        # None: every service; otherwise only requests signed for these services get faults.
        self.services = services
        self.delay_seconds = delay_seconds
        # Kinds in turn rather than at random: a run with few faults still sees every kind.
        self.cycle_kinds = cycle_kinds
        self._turn = 0
        self.stats = FaultStats()
        self.port = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()

    # -- life cycle -------------------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        """Listen on a free 127.0.0.1 port and start accepting."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen(128)
        server.settimeout(0.2)
        self._server = server
        self.port = server.getsockname()[1]
        threading.Thread(target=self._accept, name="fault-proxy", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        """The proxy's http URL."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting and close every open connection."""
        self._stop.set()
        if self._server is not None:
            self._server.close()
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    def snapshot(self) -> FaultStats:
        """A copy of the figures so far."""
        with self._lock:
            s = self.stats
            return FaultStats(
                s.requests,
                s.answered,
                s.retries,
                Counter(s.faults),
                Counter(s.by_service),
                Counter(s.faults_by_service),
                Counter(s.statuses),
                set(s.faulted_calls),
                set(s.recovered_calls),
            )

    # -- connections ------------------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._conns.add(client)
            threading.Thread(target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        reader = client.makefile("rb", buffering=64 * 1024)
        upstream: tuple[socket.socket, BinaryIO] | None = None
        try:
            while not self._stop.is_set():
                request = self._read_request(client, reader)
                if request is None:
                    return
                fault = self._choose(request)
                if fault == "reset":
                    # Mid-request when there is a body still to come (or already read), else before the answer.
                    _reset(client)
                    return
                if fault in ("500", "503"):
                    client.sendall(_error_answer(request, fault))
                    continue
                if fault == "delay":
                    time.sleep(self._rng.uniform(*self.delay_seconds))
                upstream, answer, keep_open = self._forward(upstream, request)
                if fault == "reset_after":
                    _reset(client)
                    return
                client.sendall(answer)
                self._answered(request, answer)
                if not keep_open:
                    return
        except (_Closed, OSError):
            return
        finally:
            with self._lock:
                self._conns.discard(client)
            with contextlib.suppress(OSError):
                client.close()
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream[0].close()

    def _read_request(self, client: socket.socket, reader: BinaryIO) -> _Request | None:
        head = _read_head(reader)
        if head is None:
            return None
        start, headers = _parse_head(head)
        try:
            method, target, _version = start.split(" ", 2)
        except ValueError as exc:
            raise _Closed(start) from exc
        found = _SCOPE.search(headers.get("authorization", "").encode()) or _QUERY_SCOPE.search(target.encode())
        service = found.group(1).decode().lower() if found else "unsigned"
        request = _Request(method, target, head, headers, b"", service)
        has_body = _has_body(headers)
        if has_body and self._peek_reset(request):
            # A reset while the body is on its way: decided before it is read, counted like any reset.
            return self._count_and_reset_mid_body(client, request)
        if headers.get("expect", "").lower() == "100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.body = _read_body(reader, headers, until_close=False)
        return request

    def _peek_reset(self, request: _Request) -> bool:
        """Decide now whether this request (with a body) is reset mid-way; remembered for ``_choose``."""
        with self._lock:
            self.stats.requests += 1
            self.stats.by_service[request.service] += 1
            if request.attempt > 1:
                self.stats.retries += 1
            fault = self._draw(request)
        request.headers["x-fault-proxy-decision"] = fault or ""
        return fault == "reset"

    def _draw(self, request: _Request) -> str | None:
        """The fault for one request, or None (called under the lock)."""
        if self.services is not None and request.service not in self.services:
            return None
        if self._rng.random() >= self.rate:
            return None
        if self.cycle_kinds:
            self._turn += 1
            return self.kinds[(self._turn - 1) % len(self.kinds)]
        return self._rng.choice(self.kinds)

    def _count_and_reset_mid_body(self, client: socket.socket, request: _Request) -> None:
        self._record_fault(request, "reset")
        _reset(client)
        return None

    def _choose(self, request: _Request) -> str | None:
        decided = request.headers.pop("x-fault-proxy-decision", None)
        if decided is None:
            # A request without a body: counted and decided here.
            with self._lock:
                self.stats.requests += 1
                self.stats.by_service[request.service] += 1
                if request.attempt > 1:
                    self.stats.retries += 1
                decided = self._draw(request) or ""
        fault = decided or None
        if fault is not None and fault != "delay":
            self._record_fault(request, fault)
        elif fault == "delay":
            with self._lock:
                self.stats.faults["delay"] += 1
                self.stats.faults_by_service[request.service] += 1
        return fault

    def _record_fault(self, request: _Request, kind: str) -> None:
        with self._lock:
            self.stats.faults[kind] += 1
            self.stats.faults_by_service[request.service] += 1
            if request.invocation:
                self.stats.faulted_calls.add(request.invocation)

    def _answered(self, request: _Request, answer: bytes) -> None:
        status = int(answer[9:12]) if answer[:5] == b"HTTP/" else 0
        with self._lock:
            self.stats.answered += 1
            self.stats.statuses[status] += 1
            if request.invocation:
                self.stats.recovered_calls.add(request.invocation)

    def _forward(
        self, upstream: tuple[socket.socket, BinaryIO] | None, request: _Request
    ) -> tuple[tuple[socket.socket, BinaryIO] | None, bytes, bool]:
        """Send the request upstream (reconnecting once if a kept-alive connection was closed); the raw answer."""
        head = _without_expect(request.head)
        for attempt in (1, 2):
            if upstream is None:
                sock = socket.create_connection(self.target, timeout=330)
                upstream = (sock, sock.makefile("rb", buffering=64 * 1024))
            sock, reader = upstream
            try:
                sock.sendall(head + request.body)
                status_head = _read_head(reader)
                while status_head is not None and status_head[9:10] == b"1":
                    status_head = _read_head(reader)  # an informational 100 of the endpoint's own
                if status_head is None:
                    raise _Closed("upstream closed")
            except (_Closed, OSError):
                with contextlib.suppress(OSError):
                    sock.close()
                upstream = None
                if attempt == 2:
                    raise
                continue
            start, headers = _parse_head(status_head)
            status = int(start.split(" ", 2)[1])
            no_body = request.method == "HEAD" or status in (204, 304)
            body = b"" if no_body else _read_body(reader, headers, until_close=True)
            keep_open = headers.get("connection", "").lower() != "close" and (
                no_body or "content-length" in headers or "chunked" in headers.get("transfer-encoding", "").lower()
            )
            if not keep_open:
                with contextlib.suppress(OSError):
                    sock.close()
                upstream = None
            return upstream, status_head + body, keep_open
        raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------ HTTP bits
def _read_head(reader: BinaryIO) -> bytes | None:
    """The start line and headers up to the blank line; None on a clean close before the first byte."""
    lines: list[bytes] = []
    size = 0
    while True:
        line = reader.readline(_MAX_HEAD)
        if not line:
            if not lines:
                return None
            raise _Closed("closed inside a message head")
        if not lines and line in (b"\r\n", b"\n"):
            continue  # a stray CRLF between messages
        lines.append(line)
        size += len(line)
        if size > _MAX_HEAD:
            raise _Closed("head too large")
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _has_body(headers: dict[str, str]) -> bool:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return True
    return int(headers.get("content-length", "0") or 0) > 0


def _read_body(reader: BinaryIO, headers: dict[str, str], *, until_close: bool) -> bytes:
    """The body's raw bytes (chunked framing kept as is, so the far side sees exactly what was sent)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts: list[bytes] = []
        while True:
            size_line = reader.readline(_MAX_HEAD)
            if not size_line:
                raise _Closed("closed inside a chunked body")
            parts.append(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, up to the blank line
                    trailer = reader.readline(_MAX_HEAD)
                    if not trailer:
                        raise _Closed("closed inside trailers")
                    parts.append(trailer)
                    if trailer in (b"\r\n", b"\n"):
                        return b"".join(parts)
            data = _read_exact(reader, size + 2)
            parts.append(data)
    if "content-length" in headers:
        return _read_exact(reader, int(headers["content-length"] or 0))
    return reader.read() if until_close else b""


def _read_exact(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise _Closed("closed inside a body")
    return data


def _without_expect(head: bytes) -> bytes:
    """The request head without ``Expect`` (the proxy answered the 100 itself; SigV4 never signs it)."""
    lines = head.split(b"\r\n")
    return b"\r\n".join(line for line in lines if not line.lower().startswith(b"expect:"))


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), the way a dropped connection looks to the client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


def _error_answer(request: _Request, kind: str) -> bytes:
    """A complete HTTP answer in the error shape the request's service uses (see the module docstring)."""
    request_id = uuid.uuid4().hex.upper()[:16]
    service = request.service
    if request.json_protocol:
        code, status = ("InternalFailure", 500) if kind == "500" else ("ThrottlingException", 400)
        body = f'{{"__type": "{code}", "message": "injected by the fault proxy"}}'.encode()
        content_type = "application/x-amz-json-1.1"
        extra = f"x-amzn-RequestId: {request_id}\r\n"
    elif service == "ec2":
        code, status = ("InternalError", 500) if kind == "500" else ("RequestLimitExceeded", 503)
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>Injected by the fault proxy.</Message></Error></Errors><RequestID>{request_id}</RequestID>"
            "</Response>"
        ).encode()
        content_type = "text/xml;charset=UTF-8"
        extra = ""
    elif service in ("sts", "iam"):
        code, status = ("InternalFailure", 500) if kind == "500" else ("Throttling", 400)
        kind_of = "Receiver" if kind == "500" else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{kind_of}</Type><Code>{code}</Code><Message>Injected by the fault "
            f"proxy.</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        content_type = "text/xml"
        extra = f"x-amzn-RequestId: {request_id}\r\n"
    else:  # S3 (and unsigned requests, which only S3 takes)
        if kind == "500":
            code, status, message = "InternalError", 500, "We encountered an internal error. Please try again."
        else:
            code, status, message = "SlowDown", 503, "Please reduce your request rate."
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            f"<RequestId>{request_id}</RequestId><HostId>fault-proxy</HostId></Error>"
        ).encode()
        content_type = "application/xml"
        extra = f"x-amz-request-id: {request_id}\r\n"
    if request.method == "HEAD":
        body = b""  # S3 answers HEAD errors with the status alone; botocore reads the code from it
    reason = {500: "Internal Server Error", 503: "Service Unavailable", 400: "Bad Request"}[status]
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        f"{extra}Date: {time.strftime('%a, %d %b %Y %H:%M:%S GMT', time.gmtime())}\r\n\r\n"
    )
    return head.encode() + body
