"""Which names a TCP listener answers to: the defence against DNS rebinding.

A web page can point a name of its own at 127.0.0.1 (or at any address of the network it
runs in) and then read the service as if it were its own site: the browser sends the
page's cookies to nobody, but it lets the page read the answers. What the browser cannot
hide is the name, which it sends in `Host:`. So a TCP listener answers only requests for
- an IP address it was reached on, or any loopback address (no name: nothing to rebind);
- `localhost` and names under `.localhost` (RFC 6761: they never leave the machine);
- the host its `listen` names, and the names in its `hosts` setting (`*`: any name).
Anything else gets 421 Misdirected Request. A request without `Host:` (HTTP/1.0) comes
from no browser, and is answered. Unix sockets are out of any browser's reach: not checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

LOCALHOST = "localhost"
ANY = "*"


class HostCheck:
    """The Host headers one listener answers (see the module's documentation)."""

    def __init__(self, listen_host: str, hosts: Iterable[str] = ()) -> None:
        self.names = {name.lower() for name in (LOCALHOST, listen_host, *hosts)}

    def allows(self, header: bytes | None, local_address: str | None) -> bool:
        """Whether to answer a request with this `Host:` value, reached on `local_address`."""
        if header is None or ANY in self.names:
            return True
        host = host_of(header)
        if host is None:
            return False
        if host in self.names or host.endswith("." + LOCALHOST):
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return address.is_loopback or (local_address is not None and _same(address, local_address))


def host_of(header: bytes) -> str | None:
    """The host of a `Host:` value (`name`, `name:port`, `[v6]:port`), lower case; None
    when it is not one."""
    try:
        text = header.decode("ascii").strip().lower()
    except UnicodeDecodeError:
        return None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            return None
    else:
        host, colon, port = text.partition(":")
        rest = colon + port
    if rest and not (rest[:1] == ":" and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return host or None


def _same(address: ipaddress.IPv4Address | ipaddress.IPv6Address, local: str) -> bool:
    try:
        ours = ipaddress.ip_address(local.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ours, ipaddress.IPv6Address) and ours.ipv4_mapped is not None:
        ours = ours.ipv4_mapped  # an IPv4 client of a dual-stack socket
    return address == ours
