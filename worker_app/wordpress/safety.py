"""Where the clone may connect: http(s) only, allow-listed hosts, public addresses unless exempted.

A job's URLs come from outside, so without these checks a message could make the worker read from
or write to anything it can reach (cloud metadata endpoints, in-cluster services). The address
check runs twice: on the resolved addresses before any connection (a refused URL sends no packet),
and on the peer of every connection actually opened (see `transport.py`), which defeats a DNS
answer that changes between the two (rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from ..errors import InvalidJobArguments, TransientJobError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressRefused(Exception):
    """A connection reached an address the policy refuses. Not an OSError on purpose: urllib3 and
    requests wrap OSErrors into retryable connection errors, and this must not be retried."""


def address_kind(address: IPAddress) -> str | None:
    """Why an address is not public (a word for messages), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_private:
        return "private"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified or address.is_reserved or not address.is_global:
        return "non-public"
    return None


class HostPolicy:
    """Which hosts and addresses a clone may connect to.

    :param allowed_hosts: host patterns (`blog.example.com`, `*.example.com`, `*`): `CLONE_ALLOWED_HOSTS`.
    :param allowed_networks: networks exempt from the refusal of non-public addresses:
      `CLONE_ALLOWED_NETWORKS`.

    Example::

        policy = HostPolicy(allowed_hosts=("blog.example.com",), allowed_networks=())
        policy.check_url("source_url", "https://blog.example.com")  # raises InvalidJobArguments if refused
    """

    def __init__(self, *, allowed_hosts: Sequence[str], allowed_networks: Sequence[IPNetwork]) -> None:
        self._hosts = tuple(allowed_hosts)
        self._networks = tuple(allowed_networks)

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".").strip("[]")
        for pattern in self._hosts:
            if pattern in ("*", host):
                return True
            if pattern.startswith("*.") and host.endswith(pattern[1:]):
                return True
        return False

    def address_refusal(self, address: IPAddress) -> str | None:
        """Why connecting to this address is refused, or None when it is allowed."""
        kind = address_kind(address)
        if kind is None:
            return None
        if any(address in network for network in self._networks):
            return None
        return f"{address} is a {kind} address (allow it with CLONE_ALLOWED_NETWORKS)"

    def check_url(self, field: str, url: str) -> None:
        """Scheme, allowlist and every resolved address; raises InvalidJobArguments when refused."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise InvalidJobArguments(f"{field}: scheme must be http or https, got {parts.scheme or 'none'}")
        host = parts.hostname
        if not host:
            raise InvalidJobArguments(f"{field}: URL has no host")
        if not self.host_allowed(host):
            raise InvalidJobArguments(f"{field}: host {host} is not in CLONE_ALLOWED_HOSTS")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        for address in resolve(field, host, port):
            refusal = self.address_refusal(address)
            if refusal is not None:
                raise InvalidJobArguments(f"{field}: refused: {host} resolves to {refusal}")

    def check_peer(self, host: str, peer: str) -> None:
        """Called on each new connection's peer address; raises AddressRefused."""
        address = ipaddress.ip_address(peer.split("%", 1)[0])
        refusal = self.address_refusal(address)
        if refusal is not None:
            raise AddressRefused(f"refused: connection to {host} reached {refusal}")


def resolve(field: str, host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        # "No such name" will not fix itself; a failing resolver (EAI_AGAIN) may.
        if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            raise InvalidJobArguments(f"{field}: host {host} does not resolve") from None
        raise TransientJobError(f"{field}: resolving {host} failed: {error.strerror}") from None
    addresses = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
    if not addresses:
        raise InvalidJobArguments(f"{field}: host {host} has no addresses")
    return addresses
