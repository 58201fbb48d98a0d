"""The client's address, decided in one place for login throttling, audit records and /readyz.

Behind a reverse proxy every request comes from the proxy's address, so the proxy's
``X-Forwarded-For`` must be believed, but only the part that trusted proxies wrote: a client can
send its own ``X-Forwarded-For`` and the proxies append to it. ``APPLIANCE_TRUSTED_PROXIES`` lists
them (addresses or networks); the client is the right-most address in the chain that is not one
of them. With the setting empty (the default) ``X-Forwarded-For`` is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """Parse ``APPLIANCE_TRUSTED_PROXIES`` entries; raises ValueError naming a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _is_trusted(address: str, networks: Sequence[Network]) -> bool:
    parsed = _parse(address)
    return parsed is not None and any(parsed in net for net in networks)


def resolve(remote_addr: str | None, forwarded_for: str, proxies: Sequence[str]) -> str | None:
    """The client address given the peer's address and its ``X-Forwarded-For`` header."""
    networks = trusted_networks(tuple(proxies))
    if not remote_addr or not networks or not _is_trusted(remote_addr, networks):
        return remote_addr or None
    for hop in reversed([part.strip() for part in forwarded_for.split(",") if part.strip()]):
        if _parse(hop) is None:
            break  # garbage written by a client: stop at the last proxy we trust
        if not _is_trusted(hop, networks):
            return hop
        remote_addr = hop
    return remote_addr


def client_ip(request: Any) -> str | None:
    """The address of the client behind ``request`` (a Django request)."""
    return resolve(
        request.META.get("REMOTE_ADDR"),
        request.META.get("HTTP_X_FORWARDED_FOR", ""),
        settings.APPLIANCE_TRUSTED_PROXIES,
    )


def is_loopback(request: Any) -> bool:
    address = _parse(client_ip(request) or "")
    return address is not None and address.is_loopback


def forwarded_scheme(app: Any) -> Any:
    """ASGI edge: a request a trusted proxy forwarded keeps the scheme the client used.

    nginx ends TLS and talks plain HTTP to the console; its ``X-Forwarded-Proto`` (believed from
    ``APPLIANCE_TRUSTED_PROXIES`` only, like ``X-Forwarded-For``) makes the scope ``https``/``wss``, so
    Django sees a secure request: CSRF compares the browser's https Origin, secure cookies are sent.
    The client's address stays for ``client_ip`` to decide, in one place.
    """

    async def edge(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("client"):
            networks = trusted_networks(tuple(settings.APPLIANCE_TRUSTED_PROXIES))
            proto = dict(scope["headers"]).get(b"x-forwarded-proto", b"").decode("latin-1").strip()
            if proto in ("http", "https") and _is_trusted(scope["client"][0], networks):
                secure = proto == "https"
                scheme = ("wss" if secure else "ws") if scope["type"] == "websocket" else proto
                scope = {**scope, "scheme": scheme}
        await app(scope, receive, send)

    return edge
