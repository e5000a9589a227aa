"""The egress policy: which addresses destinations may connect to, checked at connect
time through httpx's pool (so a host name that resolves to a refused address is refused
too), with real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import httpx
import pytest
from tests.support.sink import QuietHTTPServer

from untrace_server.destinations._http import make_client, request
from untrace_server.destinations.egress import EgressDenied, EgressPolicy, guard_transport
from untrace_server.errors import ConfigError, RetryableError


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", True),  # cloud metadata
        ("::ffff:169.254.169.254", True),  # the same, IPv4-mapped
        ("fe80::1%eth0", True),  # link-local with a zone
        ("fd00:ec2::254", True),
        ("127.0.0.1", False),  # private ranges are allowed unless asked
        ("10.1.2.3", False),
        ("93.184.216.34", False),
    ],
)
def test_default_policy_refuses_link_local_only(address: str, refused: bool) -> None:
    assert EgressPolicy.build().refuses(address) is refused


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("172.20.0.1", True),
        ("192.168.1.1", True),
        ("100.100.100.200", True),
        ("fd12:3456::1", True),
        ("::ffff:10.0.0.1", True),
        ("10.9.9.9", False),  # allow_cidrs wins
        ("93.184.216.34", False),
        ("2606:4700::1111", False),
    ],
)
def test_blocking_private_networks_with_an_exception(address: str, refused: bool) -> None:
    policy = EgressPolicy.build(block_private_networks=True, allow_cidrs=["10.9.0.0/16"])
    assert policy.refuses(address) is refused


def test_bad_cidr_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="allow_cidrs: 'ten' is not a CIDR"):
        EgressPolicy.build(allow_cidrs=["ten"])
    with pytest.raises(ConfigError, match="deny_cidrs"):
        EgressPolicy.build(deny_cidrs=["300.0.0.0/8"])


def test_the_guard_reaches_httpx_connection_pool() -> None:
    """guard_transport sets a private attribute of httpx's pool: if an httpx release
    moves it, this fails rather than the guard silently doing nothing."""
    transport = httpx.AsyncHTTPTransport()
    guard_transport(transport, EgressPolicy.build())
    assert type(transport._pool._network_backend).__name__ == "_GuardedBackend"


@pytest.fixture
def local_server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = QuietHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


async def _get(policy: EgressPolicy, url: str) -> httpx.Response:
    client = make_client(timeout_s=5, egress=policy)
    try:
        return await request(client, "GET", url, what="test")
    finally:
        await client.aclose()


async def test_connections_are_checked_by_address_and_by_name(local_server: int) -> None:
    strict = EgressPolicy.build(block_private_networks=True)
    for host in ("127.0.0.1", "localhost", "[::ffff:127.0.0.1]"):
        with pytest.raises(EgressDenied, match="refused by the egress policy"):
            await _get(strict, f"http://{host}:{local_server}/")
    with pytest.raises(EgressDenied, match=r"169\.254\.169\.254"):
        await _get(EgressPolicy.build(), "http://169.254.169.254/latest/meta-data/")
    allowed = EgressPolicy.build(block_private_networks=True, allow_cidrs=["127.0.0.0/8"])
    for host in ("127.0.0.1", "localhost"):
        response = await _get(allowed, f"http://{host}:{local_server}/")
        assert response.status_code == 200 and response.text == "ok"


async def test_unresolvable_name_is_retryable() -> None:
    with pytest.raises(RetryableError, match="cannot resolve"):
        await _get(EgressPolicy.build(), "http://no-such-host.invalid/")


async def test_a_refused_port_is_a_connect_error_not_a_denial() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(RetryableError, match="ConnectError"):
        await _get(EgressPolicy.build(), f"http://127.0.0.1:{port}/")
