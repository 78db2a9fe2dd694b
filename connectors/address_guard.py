"""Where a calendar address given by someone the install does not trust may lead: public addresses only.

In organisation mode a person gives their own calendar addresses, and a worker fetches them from inside
the organisation's network. Without a guard, `http://169.254.169.254/...` (the cloud's metadata service),
`http://localhost:5432/` or `http://10.0.0.7/admin` would be read by the worker on the person's behalf.

The check is on addresses, never on names: a host name is resolved once, every address it resolves to must
be public, and the connection is then made to one of those very addresses (connectors.guarded_http), so a
name that resolves to something else a moment later (DNS rebinding) gains nothing. Redirects open new
connections, each checked the same way.

No HTTP library is imported here: `people add` checks addresses with it, and must start fast.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# socket.getaddrinfo's shape: (host, port, family, type, proto, flags) -> [(family, type, proto, canonname,
# sockaddr)]; sockaddr[0] is the address as text.
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
_ADDRESS_SCHEMES: Final = frozenset({"http", "https", "webcal", "webcals"})


class RefusedAddress(Exception):
    """A connection the guard will not make; the message names the host and the address, never a path."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        super().__init__(
            f"{host} is at {address}, {reason}; a person's calendar may only be on a public address "
            "(unless [organisation] allow_private_sources = true)"
        )
        self.host = host
        self.address = address
        self.reason = reason


def _kind(address: IPAddress) -> str | None:
    """What makes one address (no embedded one) non-public, or None."""
    checks = (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
    )
    found = next((reason for test, reason in checks if test), None)
    if found is None and not address.is_global:
        return "not a public address"  # shared address space (100.64/10) and the like
    return found


def refusal(address: IPAddress | str) -> str | None:
    """Why `address` is not a public one (loopback, private, link-local, ...), or None if it is.

    IPv6 addresses that carry an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, 6to4, Teredo, NAT64) are judged
    by the IPv4 address too: ::ffff:127.0.0.1 reaches this machine as surely as 127.0.0.1 does."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    embedded: list[IPAddress] = [ip]
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    if mapped is not None:
        embedded = [mapped]  # an IPv4 address in IPv6 clothes: only the IPv4 one counts
    elif isinstance(ip, ipaddress.IPv6Address):
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    # The carried IPv4 address first: it says more ("loopback") than the wrapper ("reserved").
    for one in [*embedded[1:], embedded[0]]:
        reason = _kind(one)
        if reason is not None:
            return reason if one == ip or mapped is not None else f"{reason} ({one}) inside {ip}"
    return None


@dataclass(frozen=True)
class AddressGuard:
    """Which addresses a fetch may connect to.

    `allow_private`: every address is allowed (the organisation's `allow_private_sources`); the scheme
    check (no files) still holds. `allowed_networks`: networks allowed although not public (an internal
    calendar server). `getaddrinfo`: how names are resolved (socket.getaddrinfo; a test gives its own)."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    getaddrinfo: Resolver = field(default=socket.getaddrinfo, repr=False)

    def check(self, host: str, address: IPAddress) -> None:
        """Raise RefusedAddress unless a connection to `address` (for `host`) is allowed."""
        if self.allow_private or any(address in network for network in self.allowed_networks):
            return
        reason = refusal(address)
        if reason is not None:
            raise RefusedAddress(host, str(address), reason)

    def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to, in the resolver's order, each checked: one refused address
        refuses the host (a name that also points inside is not a public calendar).

        Raises socket.gaierror when the name does not resolve, RefusedAddress when an address is refused."""
        found: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in self.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in found:
                found.append(address)
        if not found:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: no address associated with the name")
        for address in found:
            self.check(host, address)
        return found


def address_problem(location: str) -> str | None:
    """Why `location` cannot be a person's calendar (not an http(s)/webcal address with a host), or None.

    Files and other schemes are refused for people outright: a worker's files are not theirs to read."""
    try:
        parts = urlsplit(location.strip())
        scheme = parts.scheme.lower()
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "is not a valid address"
    if scheme == "file" or not scheme or (len(scheme) == 1 and location[1:2] == ":"):
        return "is a file; a person's calendar must be an https:// or webcal:// address"
    if scheme not in _ADDRESS_SCHEMES:
        return f"has the scheme {scheme!r}; a person's calendar must be an https:// or webcal:// address"
    if not host or port == 0 or not parts.netloc.isprintable():
        return "is not a valid address (no usable host)"
    return None
