"""Where destinations may connect: the egress policy.

A customer with a ``write`` key configures destination URLs, and the server connects to
them. Without a policy that is server-side request forgery: a destination (or its
``test`` call, which reports the answer) pointed at ``169.254.169.254`` reads the cloud
metadata service, one pointed at ``10.0.0.5:5432`` probes the internal network.

The policy is checked when a connection opens, against every address the host name
resolves to, and the connection goes to the checked address: a name that resolves to a
public address at configuration time and to an internal one later (DNS rebinding) is
still refused. By default only link-local addresses (cloud metadata services) are
refused; ``security.egress.block_private_networks`` adds loopback and private ranges,
which a multi-tenant deployment turns on; ``allow_cidrs`` makes exceptions for
collectors on the internal network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from untrace_server.errors import ConfigError, PermanentError, RetryableError

__all__ = ["LINK_LOCAL", "PRIVATE", "EgressDenied", "EgressPolicy", "guard_transport"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# cloud metadata services live here (169.254.169.254, fd00:ec2::254 on AWS IPv6)
LINK_LOCAL = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128", "0.0.0.0/8")
PRIVATE = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # carrier-grade NAT, also used by some cloud metadata services
    "fc00::/7",
    "::/128",
)


class EgressDenied(PermanentError):
    """The destination's address is refused by the egress policy: a configuration
    problem, not a transient one, so the trace goes to the dead-letter queue."""


def _networks(cidrs: Iterable[str], what: str) -> tuple[Network, ...]:
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"security.egress.{what}: {cidr!r} is not a CIDR") from exc
    return tuple(out)


@dataclass(frozen=True)
class EgressPolicy:
    deny: tuple[Network, ...]
    allow: tuple[Network, ...] = ()

    @classmethod
    def build(
        cls,
        *,
        block_link_local: bool = True,
        block_private_networks: bool = False,
        deny_cidrs: Iterable[str] = (),
        allow_cidrs: Iterable[str] = (),
    ) -> EgressPolicy:
        deny = list(deny_cidrs)
        if block_link_local:
            deny += LINK_LOCAL
        if block_private_networks:
            deny += PRIVATE
        return cls(_networks(deny, "deny_cidrs"), _networks(allow_cidrs, "allow_cidrs"))

    def refuses(self, address: str) -> bool:
        ip: Address = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
        if any(ip in net for net in self.allow):
            return False
        return any(ip in net for net in self.deny)

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses ``host`` resolves to that the policy allows (connections go
        only to these); EgressDenied when there is none."""
        host = host.strip("[]")
        try:
            addresses = [str(ipaddress.ip_address(host.split("%", 1)[0]))]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise RetryableError(f"cannot resolve {host}: {exc}") from exc
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = [a for a in addresses if not self.refuses(a)]
        if not allowed:
            raise EgressDenied(
                f"connecting to {host} ({', '.join(addresses)}) is refused by the egress "
                "policy (security.egress); allow it with security.egress.allow_cidrs"
            )
        return allowed


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.AsyncNetworkBackend) -> None:
        self._policy = policy
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # connect to a checked address; TLS still verifies and sends the host name
        last: httpcore.ConnectError | None = None
        for address in await self._policy.resolve(host, port):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:  # the next address, as happy eyeballs would
                last = exc
        assert last is not None  # resolve() returns at least one address
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise EgressDenied("unix sockets are not a destination")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guard_transport(transport: httpx.AsyncHTTPTransport, policy: EgressPolicy) -> None:
    """Make ``transport`` check every new connection against ``policy``.

    httpx does not take a network backend, so this sets the one of its httpcore pool;
    tests/unit/delivery/test_egress.py fails if a new httpx moves it."""
    pool = transport._pool
    inner = pool._network_backend
    if not isinstance(inner, _GuardedBackend):
        pool._network_backend = _GuardedBackend(policy, inner)
