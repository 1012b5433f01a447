"""Which network addresses the control plane may send a location's signed S3 requests to (SSRF rules).

Pure classification, no I/O: ``stowage.aws.endpoints`` resolves host names (on every new connection) and asks
these rules about each address. Two tiers:

- never: link-local (169.254.0.0/16, fe80::/10) and the instance metadata services (169.254.169.254 and
  AWS's fd00:ec2::/32 addresses). Signed requests there hand the control plane's own identity to whoever
  asked, and no storage lives there.
- unless the admin sets ``STOWAGE_ALLOW_PRIVATE_ENDPOINTS=true``: loopback, private (RFC 1918, fc00::/7),
  shared CGNAT (100.64.0.0/10), unspecified (0.0.0.0, ::) and every other non-public range. On-premises
  S3-compatible storage usually lives in these, so an admin may allow them; a multi-tenant SaaS should not.

IPv4 addresses embedded in IPv6 (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``)
are judged as the IPv4 address they reach.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

ALLOW_PRIVATE_SETTING = "STOWAGE_ALLOW_PRIVATE_ENDPOINTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressKind(StrEnum):
    """What an address is, as far as endpoint safety cares."""

    PUBLIC = "public"
    METADATA = "metadata"
    LINK_LOCAL = "link-local"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    SHARED = "shared"
    UNSPECIFIED = "unspecified"
    NON_PUBLIC = "non-public"


# Never allowed, whatever the setting.
ALWAYS_REFUSED = frozenset({AddressKind.METADATA, AddressKind.LINK_LOCAL})

_NET = ipaddress.ip_network
# Order matters: the first match names the range (metadata before link-local, which contains it).
_RANGES: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, AddressKind, str], ...] = (
    (_NET("169.254.169.254/32"), AddressKind.METADATA, "the instance metadata service"),
    (_NET("169.254.170.2/32"), AddressKind.METADATA, "the ECS task metadata and credentials endpoint"),
    (_NET("fd00:ec2::254/128"), AddressKind.METADATA, "the instance metadata service (IPv6)"),
    (_NET("fd00:ec2::/32"), AddressKind.METADATA, "AWS's reserved instance services range fd00:ec2::/32"),
    (_NET("169.254.0.0/16"), AddressKind.LINK_LOCAL, "link-local 169.254.0.0/16"),
    (_NET("fe80::/10"), AddressKind.LINK_LOCAL, "link-local fe80::/10"),
    (_NET("127.0.0.0/8"), AddressKind.LOOPBACK, "loopback 127.0.0.0/8"),
    (_NET("::1/128"), AddressKind.LOOPBACK, "loopback ::1"),
    (_NET("0.0.0.0/8"), AddressKind.UNSPECIFIED, "unspecified 0.0.0.0/8 (reaches this host)"),
    (_NET("::/128"), AddressKind.UNSPECIFIED, "unspecified :: (reaches this host)"),
    (_NET("10.0.0.0/8"), AddressKind.PRIVATE, "private 10.0.0.0/8"),
    (_NET("172.16.0.0/12"), AddressKind.PRIVATE, "private 172.16.0.0/12"),
    (_NET("192.168.0.0/16"), AddressKind.PRIVATE, "private 192.168.0.0/16"),
    (_NET("fc00::/7"), AddressKind.PRIVATE, "private (unique local) fc00::/7"),
    (_NET("100.64.0.0/10"), AddressKind.SHARED, "shared (carrier-grade NAT) 100.64.0.0/10"),
)
_NAT64 = _NET("64:ff9b::/96")


@dataclass(frozen=True, slots=True)
class AddressVerdict:
    """The rule's answer for one address: its kind, the range that decided it, and whether it may be used."""

    address: str
    kind: AddressKind
    range: str
    allowed: bool

    @property
    def always_refused(self) -> bool:
        """True for addresses no setting allows (metadata, link-local)."""
        return self.kind in ALWAYS_REFUSED


def parse_address(text: str) -> IPAddress | None:
    """An IP address from text (IPv6 with or without brackets or a zone), or None when it is a name."""
    candidate = text.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address really reaches, for the forms that carry one."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def classify(address: IPAddress) -> tuple[AddressKind, str]:
    """The kind of an address and a description of the range it falls in."""
    inner = _embedded_ipv4(address)
    if inner is not None:
        kind, label = classify(inner)
        return kind, f"{label}, embedded in {address}"
    for network, kind, label in _RANGES:
        if address.version == network.version and address in network:
            return kind, label
    if not address.is_global or address.is_multicast:
        return AddressKind.NON_PUBLIC, "a reserved, documentation or multicast range (not public)"
    return AddressKind.PUBLIC, "public"


def judge(address: IPAddress | str, *, allow_private: bool) -> AddressVerdict:
    """Whether the control plane may connect to ``address`` under the given setting."""
    parsed = parse_address(address) if isinstance(address, str) else address
    if parsed is None:
        raise ValueError(f"not an IP address: {address!r}")
    kind, label = classify(parsed)
    if kind is AddressKind.PUBLIC:
        allowed = True
    elif kind in ALWAYS_REFUSED:
        allowed = False
    else:
        allowed = allow_private
    return AddressVerdict(address=str(parsed), kind=kind, range=label, allowed=allowed)


def refusal_message(host: str, verdict: AddressVerdict) -> str:
    """The sentence shown when a connection to ``verdict.address`` (for ``host``) is refused."""
    where = verdict.address if host.strip("[]") == verdict.address else f"{host} (resolves to {verdict.address})"
    if verdict.always_refused:
        return (
            f"Refused to connect to {where}: it is {verdict.range}. Stowage never sends requests to link-local "
            f"or instance-metadata addresses, whatever {ALLOW_PRIVATE_SETTING} says; use your storage's own "
            "address."
        )
    return (
        f"Refused to connect to {where}: it is {verdict.range}, not a public address. Private, loopback and "
        f"shared addresses are refused unless the administrator sets {ALLOW_PRIVATE_SETTING}=true on the "
        "control plane (link-local and metadata addresses stay refused)."
    )


def literal_refusal(host: str) -> AddressVerdict | None:
    """A verdict for a literal IP host that no setting allows (metadata, link-local), else None.

    The static ``s3-url`` check uses it: such a URL is wrong whatever the control plane's settings are.
    """
    parsed = parse_address(host)
    if parsed is None:
        return None
    verdict = judge(parsed, allow_private=True)
    return None if verdict.allowed else verdict
