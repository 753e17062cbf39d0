"""Which network addresses an outbound fetch may connect to.

A URL in a batch row or an API answer is chosen by someone else; fetching it from inside our
network would let them read loopback services, the private network and the cloud metadata
endpoint, and learn from the failures which of them exist. So a fetch connects only to
addresses that are public. `address_kind` names what an address is (pure, table-tested); a
`HostPolicy` decides, and can be told to allow private hosts for local use (the demo's emulator).
Cloud metadata endpoints stay refused whatever the policy: nothing we fetch lives there.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

IPAddress = IPv4Address | IPv6Address

METADATA_ADDRESSES = frozenset(
    ip_address(text)
    for text in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
"""Instance metadata services: they hand out credentials to whoever asks from inside."""

SHARED_CGNAT = ip_network("100.64.0.0/10")
"""Carrier-grade NAT space (RFC 6598): not on the internet, often a provider's internal network."""
IETF_PROTOCOL = ip_network("192.0.0.0/24")
"""RFC 6890 protocol assignments; Python 3.11 counts most of it as global."""
NAT64 = (ip_network("64:ff9b::/96"), ip_network("64:ff9b:1::/48"))
"""NAT64 prefixes: the last 32 bits are the IPv4 address the gateway connects to."""


def address_kind(address: IPAddress) -> str | None:
    """None for a public unicast address, else what it is ("loopback", "private", ...).

    An IPv6 address carrying an IPv4 one (mapped, 6to4, NAT64) is judged by the IPv4 address too,
    since that is where the connection ends up.
    """
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address_kind(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None and (kind := address_kind(embedded)) is not None:
            return kind
    if address in METADATA_ADDRESSES:
        return "metadata"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("site-local", isinstance(address, IPv6Address) and address.is_site_local),
        ("shared", isinstance(address, IPv4Address) and address in SHARED_CGNAT),
        ("reserved", address.is_reserved or address in IETF_PROTOCOL),
        ("private", address.is_private),
        ("not global", not address.is_global),
    )
    return next((kind for kind, hit in checks if hit), None)


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in prefix for prefix in NAT64):
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return None


@dataclass(frozen=True)
class HostPolicy:
    """Where a fetch may connect. The default allows public addresses only."""

    allow_private_hosts: bool = False
    """Allow loopback, private, link-local, shared and other non-public addresses (not metadata)."""
    also_allowed: frozenset[IPAddress] = frozenset()
    """Exact addresses allowed whatever they are (metadata excepted), e.g. one internal mirror."""

    def refusal(self, address: IPAddress) -> str | None:
        """None when a connection to `address` is allowed, else the kind of address refused."""
        kind = address_kind(address)
        if kind is None or kind == "metadata":
            return kind
        if self.allow_private_hosts or address in self.also_allowed:
            return None
        return kind

    def refusal_of(self, text: str) -> str | None:
        """`refusal` of an address as `getaddrinfo` spells it (an IPv6 one may carry a %scope)."""
        return self.refusal(ip_address(text))


PUBLIC_ONLY = HostPolicy()
"""The default: public addresses only."""
