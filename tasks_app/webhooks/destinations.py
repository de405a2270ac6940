"""Where a webhook may be sent: public addresses only (unless allowed), https in production.

A URL is checked when an endpoint is saved and its host is resolved and checked again for
every attempt; the request then goes to the very address that was checked (the host name is
kept for `Host` and TLS), so a DNS answer that changes in between cannot aim it elsewhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeDestination(Exception):
    """The URL may not receive webhooks; the message says why."""


@dataclass(frozen=True)
class Destination:
    """A checked URL split into what the request needs."""

    scheme: str
    host: str
    port: int
    target: str  # path and query

    @property
    def host_header(self) -> str:
        """The `Host` header: the name as written, with the port unless it is the default."""
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"

    def url_for(self, address: IPAddress) -> str:
        """The URL with the host replaced by one resolved address."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return f"{self.scheme}://{host}:{self.port}{self.target}"


def parse(url: str) -> Destination:
    """Split a webhook URL, refusing schemes, credentials and hosts that cannot be used."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeDestination(f"The URL is malformed ({exc}).") from None
    allowed = ("https",) if settings.WEBHOOK_REQUIRE_HTTPS else ("http", "https")
    if parts.scheme not in allowed:
        raise UnsafeDestination(f"The URL must start with {' or '.join(f'{s}://' for s in allowed)}.")
    if not parts.hostname:
        raise UnsafeDestination("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise UnsafeDestination("The URL may not hold a user name or password.")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), target)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host name resolves to (the system resolver; replaced in tests)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def is_public(address: IPAddress) -> bool:
    """Whether an address is on the public internet (not loopback, private, link-local, multicast…)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def addresses(destination: Destination) -> list[IPAddress]:
    """The addresses to send to; UnsafeDestination when any of them is not public.

    Any private answer refuses the whole name: a host that resolves both ways is exactly
    what a rebinding attack looks like. Resolution failures raise OSError.
    """
    try:
        found = [ipaddress.ip_address(destination.host)]
    except ValueError:
        found = resolve(destination.host, destination.port)
    if not found:
        raise OSError(f"{destination.host} resolves to no address.")
    if not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        refused = [str(a) for a in found if not is_public(a)]
        if refused:
            raise UnsafeDestination(
                f"{destination.host} resolves to {', '.join(refused)}, a loopback, private, link-local "
                "or multicast address; webhooks go to public addresses only."
            )
    return found


def check_url(url: str) -> None:
    """Refuse a URL when an endpoint is saved; an unresolvable name passes (it may resolve later)."""
    destination = parse(url)
    try:
        addresses(destination)
    except OSError:
        pass  # checked again, and retried, at every delivery
