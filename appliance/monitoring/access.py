"""Who may read /metrics: an allow-listed address, or the bearer token (constant-time compare)."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

from django.conf import settings
from django.http import HttpRequest

from appliance.core.clientip import client_ip

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """``127.0.0.1/32,10.0.0.0/8``; a bare address is one host. Raises ValueError naming the bad item."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or network") from None
    return tuple(networks)


def _address_allowed(address: str | None) -> bool:
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.APPLIANCE_METRICS_NETWORKS)


def _token_presented(request: HttpRequest) -> bool:
    token = settings.APPLIANCE_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode())


def may_scrape(request: HttpRequest) -> bool:
    return _token_presented(request) or _address_allowed(client_ip(request))
