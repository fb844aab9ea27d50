"""TLS in the client library and the ``binrpc`` command, against a ``tls:`` listener with a
throwaway CA (tests/pki.py)."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator

import pytest

from binrpc import ConnectError, TransportError
from binrpc.client import AsyncClient, Client, Reply
from binrpc.server import Listen
from tests.pki import Pki
from tests.server.conftest import ServerThread, free_port


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[str]:
    addr = f"tls:127.0.0.1:{free_port()}"
    with ServerThread(None, Listen(addr, tls_cert=pki.server_cert, tls_key=pki.server_key)):  # type: ignore[arg-type]
        yield addr


@pytest.fixture
def mtls_server(pki: Pki) -> Iterator[str]:
    addr = f"tls:127.0.0.1:{free_port()}"
    listen = Listen(addr, tls_cert=pki.server_cert, tls_key=pki.server_key, tls_ca=pki.ca)
    with ServerThread(None, listen):  # type: ignore[arg-type]
        yield addr


def test_verified_client(pki: Pki, tls_server: str) -> None:
    ctx = ssl.create_default_context(cafile=pki.ca)
    with Client(tls_server, tls=ctx, timeout=3) as c:
        assert str(c.call_one("core.version")).startswith("binrpc")
        assert c.call("core.echo", "x") == ["x"]  # the connection is reused
        results = list(c.pipeline(("core.echo", [str(i)]) for i in range(20)))
        assert [r.values() for r in results if isinstance(r, Reply)] == [
            [str(i)] for i in range(20)
        ]
    # a tcp: address with tls= is the same thing
    with Client(tls_server.replace("tls:", "tcp:"), tls=ctx, timeout=3) as c:
        assert c.address.proto == "tls"
        assert str(c.call_one("core.version")).startswith("binrpc")


def test_wrong_ca_and_default_verification_fail_clearly(pki: Pki, tls_server: str) -> None:
    wrong = ssl.create_default_context(cafile=pki.other_ca)
    for tls in (wrong, True, None):  # True/None: the system CAs do not know our test CA
        with Client(tls_server, tls=tls, timeout=3) as c, pytest.raises(ConnectError) as info:
            c.call("core.version")
        assert "TLS handshake with" in str(info.value)
        assert "certificate verification failed" in str(info.value)


def test_server_name_is_checked(pki: Pki, tls_server: str) -> None:
    ctx = ssl.create_default_context(cafile=pki.ca)
    with Client(tls_server, tls=ctx, server_hostname="localhost", timeout=3) as c:
        assert c.call_one("core.version")
    with (
        Client(tls_server, tls=ctx, server_hostname="elsewhere.example", timeout=3) as c,
        pytest.raises(ConnectError, match="mismatch"),
    ):
        c.call("core.version")


def test_tls_refused_on_other_transports() -> None:
    with pytest.raises(ValueError):
        Client("udp:127.0.0.1:2049", tls=True)
    with pytest.raises(ValueError):
        Client("tls:127.0.0.1:2049", tls=False)


def test_async_client(pki: Pki, tls_server: str) -> None:
    async def main() -> list[object]:
        ctx = ssl.create_default_context(cafile=pki.ca)
        async with AsyncClient(tls_server, tls=ctx, timeout=3) as c:
            return list(await asyncio.gather(*(c.call("core.echo", str(i)) for i in range(10))))

    assert asyncio.run(main()) == [[str(i)] for i in range(10)]

    async def wrong() -> None:
        async with AsyncClient(tls_server, tls=True, timeout=3) as c:
            await c.call("core.version")

    with pytest.raises(ConnectError, match="certificate verification failed"):
        asyncio.run(wrong())


def test_mutual_tls_client(pki: Pki, mtls_server: str) -> None:
    ctx = ssl.create_default_context(cafile=pki.ca)
    with Client(mtls_server, tls=ctx, timeout=3) as c, pytest.raises(TransportError):
        c.call("core.version")  # no client certificate: refused
    ctx.load_cert_chain(pki.client_cert, pki.client_key)
    with Client(mtls_server, tls=ctx, timeout=3) as c:
        assert c.call_one("core.version")


def binrpc(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "binrpc.cli.main", "-t", "5", *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "POSIXLY_CORRECT"},
    )


def test_cli(pki: Pki, tls_server: str, mtls_server: str) -> None:
    r = binrpc("-s", tls_server, "--tls-ca", pki.ca, "core.echo", "hi")
    assert (r.returncode, r.stdout) == (0, b"hi\n"), r.stderr
    # --tls turns a tcp: address into tls:
    r = binrpc(
        "--tls", "--tls-ca", pki.ca, "-s", tls_server.replace("tls:", "tcp:"), "core.echo", "a"
    )
    assert (r.returncode, r.stdout) == (0, b"a\n"), r.stderr
    r = binrpc("-s", tls_server, "--tls-ca", pki.other_ca, "core.version")
    assert r.returncode == 255
    assert b"certificate verification failed" in r.stderr and r.stderr.startswith(b"ERROR: ")
    r = binrpc("-s", tls_server, "--tls-insecure", "core.echo", "x")
    assert (r.returncode, r.stdout) == (0, b"x\n"), r.stderr
    # mutual TLS
    r = binrpc("-s", mtls_server, "--tls-ca", pki.ca, "core.echo", "x")
    assert r.returncode == 255 and r.stdout == b""
    r = binrpc("-s", mtls_server, "--tls-ca", pki.ca, "--tls-cert", pki.client_cert,
               "--tls-key", pki.client_key, "core.echo", "x")  # fmt: skip
    assert (r.returncode, r.stdout) == (0, b"x\n"), r.stderr
