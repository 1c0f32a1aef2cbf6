"""What a "your devices" page shows of a session: the browser and OS its user agent names, the
network it came from, when it logged in and when it was last active.

Kept only with ``SessionConfig(devices=True)``, beside the session's data, from the request that
last saved the session (the integrations pass it as a :class:`Client`). The user agent is parsed
when the sessions are listed, by a small built-in table (:func:`describe`); the address is
truncated before it is stored (:func:`truncated`).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Client", "asgi_client", "describe", "device_meta", "truncated", "wsgi_client"]

MAX_USER_AGENT = 256  # characters of the user agent kept

# (name, pattern): the first that matches wins, so the more specific come first.
_BROWSERS = (
    ("Edge", re.compile(r"Edg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"OPR/|Opera")),
    ("Samsung Internet", re.compile(r"SamsungBrowser/")),
    ("Firefox", re.compile(r"Firefox/|FxiOS/")),
    ("Chrome", re.compile(r"Chrome/|CriOS/")),
    ("Safari", re.compile(r"Version/[\d.]+.*Safari/")),
    ("curl", re.compile(r"^curl/")),
)
_SYSTEMS = (
    ("iPadOS", re.compile(r"iPad")),
    ("iOS", re.compile(r"iPhone|iPod")),
    ("Android", re.compile(r"Android")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("Linux", re.compile(r"Linux|X11")),
)


class Client(NamedTuple):
    """The request's browser, as an integration reads it: its ``User-Agent`` and its address."""

    user_agent: str | None
    address: str | None


def describe(user_agent: str | None) -> tuple[str, str]:
    """``(browser, os)`` of a user agent, ``"Unknown"`` for what the table does not know."""
    text = user_agent or ""
    browser = next((name for name, pattern in _BROWSERS if pattern.search(text)), "Unknown")
    system = next((name for name, pattern in _SYSTEMS if pattern.search(text)), "Unknown")
    return browser, system


def truncated(address: str | None, bits: tuple[int, int]) -> str | None:
    """``address`` cut to its network of ``bits`` (IPv4, IPv6): ``203.0.113.0/24``; None for
    what is not an IP address (a Unix socket's path)."""
    return _network(address, bits) if address else None


@functools.lru_cache(maxsize=4096)  # a client's requests come from one address: parse it once
def _network(address: str, bits: tuple[int, int]) -> str | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):  # an IPv4 address carried in an IPv6 one is cut as IPv4
        carried = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if carried is not None:
            ip = carried
    prefix = bits[0] if ip.version == 4 else bits[1]
    network = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    return str(network.network_address) if prefix == network.max_prefixlen else str(network)


def device_meta(
    previous: dict[str, Any] | None, client: Client | None, login_at: float | None, bits: tuple[int, int]
) -> dict[str, Any] | None:
    """The metadata to keep: the ``previous`` one, updated with the ``client`` that saves the
    session now (when known) and the time of a login in this request."""
    meta = dict(previous) if previous else {}
    if client is not None:
        if client.user_agent:
            meta["ua"] = client.user_agent[:MAX_USER_AGENT]
        address = truncated(client.address, bits)
        if address is not None:
            meta["ip"] = address
    if login_at is not None:
        meta["login"] = login_at
    return meta or None


def wsgi_client(environ: Mapping[str, Any]) -> Client:
    """The :class:`Client` of a WSGI request (or of Django's ``request.META``). Behind a proxy,
    the address is the proxy's unless the app's proxy middleware (Werkzeug's ``ProxyFix``,
    Django's ``SECURE_PROXY_SSL_HEADER`` setup) has set ``REMOTE_ADDR`` from its header."""
    return Client(environ.get("HTTP_USER_AGENT"), environ.get("REMOTE_ADDR"))


def asgi_client(scope: Mapping[str, Any]) -> Client:
    """The :class:`Client` of an ASGI request (its address as the server reports it: behind a
    proxy, run the server with its proxy-headers option)."""
    agent = next((value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"user-agent"), None)
    peer = scope.get("client")
    return Client(agent, str(peer[0]) if peer else None)
