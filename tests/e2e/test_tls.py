"""HTTPS: ``untrace serve --tls-cert --tls-key`` with a self-signed certificate serves
the API over TLS 1.2+ and refuses TLS 1.1 and older."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.support.server import ServerProcess, make_trace

ServerFactory = Callable[..., ServerProcess]


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _handshake(port: int, context: ssl.SSLContext) -> str:
    """The negotiated protocol version; raises ssl.SSLError when the server refuses."""
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return str(tls.version())


@pytest.fixture
def tls_server(server_factory: ServerFactory, tmp_path: Path) -> tuple[ServerProcess, Path]:
    cert, key = _self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    server = server_factory(
        {}, extra_args=["--tls-cert", str(cert), "--tls-key", str(key)], verify=trust
    ).start()
    return server, cert


def test_https_with_the_certificate(tls_server: tuple[ServerProcess, Path]) -> None:
    server, cert = tls_server
    assert server.url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(cert))
    r = httpx.get(server.url + "/health", verify=trust)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.http_version == "HTTP/1.1"
    r = httpx.post(
        server.url + "/api/v1/traces", json=make_trace(1), headers=server.headers(), verify=trust
    )
    assert r.status_code == 202, r.text
    # a client that does not trust the certificate is refused, and plain HTTP gets no API
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(server.url + "/health")
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url.replace("https://", "http://") + "/health", timeout=3)


def test_tls_1_2_and_1_3_accepted_1_1_refused(tls_server: tuple[ServerProcess, Path]) -> None:
    server, cert = tls_server
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = ssl.create_default_context(cafile=str(cert))
        context.minimum_version = context.maximum_version = version
        assert _handshake(server.port, context) == version.name.replace("v1_", "v1.")
    # offer only TLS 1.0/1.1, with the client's own policy relaxed so that the refusal
    # comes from the server, not from this client declining to offer them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated
        old = _old_tls_context(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(cafile=str(cert))
        # control: this client does speak TLS 1.1 to a server that allows it
        assert _permissive_handshake(cert, cert.with_name("key.pem"), old) == "TLSv1.1"
        with pytest.raises(ssl.SSLError):
            _handshake(server.port, old)


def _old_tls_context(protocol: ssl._SSLMethod) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


def _permissive_handshake(cert: Path, key: Path, client: ssl.SSLContext) -> str:
    """Handshake ``client`` with a one-shot local server that still allows TLS 1.0/1.1."""
    server_context = _old_tls_context(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), server_context.wrap_socket(conn, server_side=True):
                pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        version = _handshake(listener.getsockname()[1], client)
        thread.join(5)
        return version
