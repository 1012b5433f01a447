"""Endpoint safety at request time: a location's S3 client connects only to addresses the rules allow.

A user-supplied ``s3Url`` makes the control plane send signed requests wherever it points. Checking the
URL's text is not enough (a public-looking name can resolve to 169.254.169.254, and DNS rebinding can change
the answer between a check and the connection), so the check lives in the connection itself: a guarded
client resolves the host on every new connection, judges every address with ``stowage.domain.endpoints``,
and connects to the vetted addresses only, never resolving the name a second time.

Only clients for a location's own ``s3Url`` are guarded (``guard_client``). Endpoints an administrator
configures (``AWS_ENDPOINT_URL*``, the regional STS endpoint, possibly a VPC endpoint on private addresses)
are not user input and are left alone. Behind an HTTP(S) proxy the proxy opens the connection: for CONNECT
tunnels the target name is resolved and judged here too (best effort, the proxy resolves on its own).
"""

from __future__ import annotations

import socket
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from botocore.awsrequest import (
    AWSHTTPConnection,
    AWSHTTPConnectionPool,
    AWSHTTPSConnection,
    AWSHTTPSConnectionPool,
)
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from stowage import errors
from stowage.domain import endpoints as rules

AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


class EndpointRefused(errors.CloudEndpointError):
    """A connection to an address the endpoint rules forbid; the message names it and the setting."""

    code = "endpoint_refused"

    def __init__(self, host: str, verdict: rules.AddressVerdict) -> None:
        super().__init__(rules.refusal_message(host, verdict), details={"address": verdict.address})
        self.host = host
        self.verdict = verdict


def resolve(host: str, port: int) -> list[AddrInfo]:
    """Every address ``host`` resolves to (as urllib3 would ask for them); raises ``socket.gaierror``."""
    bare = host.strip("[]")
    return list(socket.getaddrinfo(bare, port, allowed_gai_family(), socket.SOCK_STREAM))


def vet(host: str, infos: list[AddrInfo], *, allow_private: bool) -> list[AddrInfo]:
    """``infos`` unchanged when every address is allowed; else ``EndpointRefused`` for the first refused one.

    One refused address refuses the name: a name that answers both a public and a metadata address is an
    attack, not a fallback.
    """
    for info in infos:
        verdict = rules.judge(str(info[4][0]), allow_private=allow_private)
        if not verdict.allowed:
            raise EndpointRefused(host, verdict)
    return infos


def check_host(host: str, port: int, *, allow_private: bool) -> None:
    """Resolve ``host`` now and refuse it as a connection would; an unresolvable name passes (it cannot connect)."""
    literal = rules.parse_address(host)
    if literal is not None:
        verdict = rules.judge(literal, allow_private=allow_private)
        if not verdict.allowed:
            raise EndpointRefused(host, verdict)
        return
    try:
        infos = resolve(host, port)
    except (OSError, UnicodeError):
        return
    vet(host, infos, allow_private=allow_private)


def check_location_url(url: str, *, bucket: str, force_path_style: bool, allow_private: bool) -> None:
    """Refuse a location's S3 URL whose host (or ``bucket.host``, virtual-hosted style) resolves to a forbidden address.

    The guarded connection enforces the same rule on every request; this answer comes before any credentials
    are used, so a validation can report it as the ``s3-url`` check.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return  # the static s3-url check reports malformed URLs
    if not host:
        return
    check_host(host, port, allow_private=allow_private)
    if not force_path_style and rules.parse_address(host) is None and bucket:
        # botocore puts DNS-compatible bucket names in front of the host: that name is resolved too.
        check_host(f"{bucket}.{host}", port, allow_private=allow_private)


def _connect(conn: Any, infos: list[AddrInfo]) -> socket.socket:
    """Connect to the first reachable vetted address, as urllib3's ``create_connection`` does."""
    last: OSError | None = None
    for family, kind, proto, _canon, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            if conn.timeout is None or isinstance(conn.timeout, int | float):
                # Anything else is urllib3's "default timeout" sentinel: leave the socket's default.
                sock.settimeout(conn.timeout)
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last if last is not None else OSError("getaddrinfo returned no addresses")


class _Guarded:
    """Mixin for urllib3 connections: resolve, judge every address, connect to the vetted ones only."""

    allow_private = False

    def _new_conn(self) -> socket.socket:
        conn: Any = self
        tunnel = getattr(conn, "_tunnel_host", None)
        if conn.proxy is not None:
            # The proxy (an admin setting) makes the connection; judge the tunnel's target as far as we can.
            if tunnel:
                check_host(tunnel, conn._tunnel_port or 443, allow_private=self.allow_private)
            return super()._new_conn()  # type: ignore[misc, no-any-return]
        host: str = conn._dns_host
        try:
            infos = resolve(host, conn.port)
        except socket.gaierror as exc:
            raise NameResolutionError(conn.host, conn, exc) from exc
        vet(conn.host, infos, allow_private=self.allow_private)
        try:
            sock = _connect(conn, infos)
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(conn, f"Failed to establish a new connection: {exc}") from exc
        return sock


@cache
def _pool_classes(allow_private: bool) -> dict[str, type]:
    """Guarded HTTP and HTTPS connection pool classes for one setting (made once per process)."""
    http_conn = type("GuardedHTTPConnection", (_Guarded, AWSHTTPConnection), {"allow_private": allow_private})
    https_conn = type("GuardedHTTPSConnection", (_Guarded, AWSHTTPSConnection), {"allow_private": allow_private})
    return {
        "http": type("GuardedHTTPConnectionPool", (AWSHTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSConnectionPool", (AWSHTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


def guard_client(client: Any, *, allow_private: bool) -> Any:
    """Make every connection of a freshly built boto3 client obey the endpoint rules; returns the client.

    botocore has no public seam for its connection class, so this swaps the pool classes of the client's own
    HTTP session (a dict its pool managers share, and consult only when they open a pool): the one private
    detail is confined to this function, and ``tests/security`` proves it on every botocore upgrade.
    """
    http_session = client._endpoint.http_session
    classes = http_session._pool_classes_by_scheme
    classes.update(_pool_classes(allow_private))
    # Pools opened before the swap (none for a fresh client) would keep unguarded connections.
    http_session.close()
    return client


def refusal_in(exc: BaseException | None) -> EndpointRefused | None:
    """The ``EndpointRefused`` behind a botocore error (botocore wraps transport errors), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, EndpointRefused):
            return exc
        kwargs = getattr(exc, "kwargs", None)
        inner = kwargs.get("error") if isinstance(kwargs, dict) else None
        exc = inner if isinstance(inner, BaseException) else (exc.__cause__ or exc.__context__)
    return None
