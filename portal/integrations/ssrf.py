"""The guard that keeps webhooks from reaching the portal's own network (SSRF).

A webhook URL is checked when an endpoint is saved and again at every delivery: https only in
production; the host is resolved ONCE and every address it resolves to must be public (not
private, loopback, link-local, unique-local, multicast, unspecified or reserved, also when
written as IPv4-mapped IPv6) unless ``WEBHOOK_ALLOWED_HOSTS`` names the host or a network
containing the address. The delivery then connects to the address that was checked, never
resolving the name again (a DNS answer that changes between check and use, "rebinding",
cannot move it), with the original name as Host header and TLS server name.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import current_app

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_URL = 2000


class Refused(ValueError):
    """A URL webhooks may not call; the message says why, for the admin."""


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL's parts and the address checked for it."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def _allow_list() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    hosts: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in str(current_app.config.get("WEBHOOK_ALLOWED_HOSTS") or "").split(","):
        name = item.strip().lower().strip("[]")
        if not name:
            continue
        try:
            networks.append(ipaddress.ip_network(name, strict=False))
        except ValueError:
            hosts.add(name)
    return hosts, networks


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _public(address.ipv4_mapped)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        or not address.is_global
    )


def parse(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path with query)`` of a webhook URL; ``Refused`` when it is not
    one (checked without any network)."""
    if len(url) > MAX_URL:
        raise Refused(f"The URL is longer than {MAX_URL} characters.")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise Refused("The URL may not contain spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused("That is not a URL (check the host and port).") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise Refused("The URL must start with https:// (or http:// outside production).")
    if scheme == "http" and current_app.config.get("PRODUCTION"):
        raise Refused("Webhook URLs must use https:// in production.")
    if parts.username or parts.password:
        raise Refused("The URL may not contain a user name or password.")
    host = (parts.hostname or "").lower()
    if not host:
        raise Refused("The URL has no host.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, host, port or (443 if scheme == "https" else 80), path


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"The host {host} could not be found (DNS).") from exc
    found: list[Address] = []
    for info in infos:
        text = str(info[4][0]).partition("%")[0]
        address = ipaddress.ip_address(text)
        if address not in found:
            found.append(address)
    if not found:
        raise Refused(f"The host {host} could not be found (DNS).")
    return found


def check(url: str) -> Target:
    """Resolve and check a webhook URL (see the module's note); ``Refused`` says why not."""
    scheme, host, port, path = parse(url)
    hosts, networks = _allow_list()
    addresses = _resolve(host, port)
    for address in addresses:
        if host in hosts or any(address in network for network in networks):
            continue
        if not _public(address):
            raise Refused(
                f"{host} resolves to {address}, a private, loopback or link-local address: "
                "webhooks may not call it unless WEBHOOK_ALLOWED_HOSTS names it."
            )
    return Target(scheme, host, port, path, str(addresses[0]))
