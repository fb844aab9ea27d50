"""A throwaway PKI made with the ``openssl`` command line (no Python dependency): two CAs, a
server certificate for 127.0.0.1/::1/localhost and client certificates, under /tmp."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass
class Pki:
    dir: str
    ca: str  # the CA that signed everything below
    other_ca: str  # an unrelated CA ("the wrong CA")
    server_cert: str
    server_key: str
    client_cert: str  # CN=ops
    client_key: str
    intruder_cert: str  # CN=intruder, signed by ca
    intruder_key: str
    foreign_cert: str  # CN=ops, signed by other_ca
    foreign_key: str


def _run(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _ca(d: str, name: str) -> None:
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)  # fmt: skip


def _leaf(d: str, name: str, cn: str, ca: str, usage: str, san: str | None = None) -> None:
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as fh:
        fh.write(f"basicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n")
        fh.write("keyUsage=critical,digitalSignature\n")
        if san:
            fh.write(f"subjectAltName={san}\n")
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}",
         cwd=d)  # fmt: skip
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext,
         cwd=d)  # fmt: skip


def make_pki(d: str) -> Pki:
    _ca(d, "ca")
    _ca(d, "otherca")
    _leaf(d, "server", "localhost", "ca", "serverAuth", "DNS:localhost,IP:127.0.0.1,IP:::1")
    _leaf(d, "client", "ops", "ca", "clientAuth")
    _leaf(d, "intruder", "intruder", "ca", "clientAuth")
    _leaf(d, "foreign", "ops", "otherca", "clientAuth")

    def j(name: str) -> str:
        return os.path.join(d, name)

    return Pki(d, j("ca.pem"), j("otherca.pem"), j("server.pem"), j("server.key"),
               j("client.pem"), j("client.key"), j("intruder.pem"), j("intruder.key"),
               j("foreign.pem"), j("foreign.key"))  # fmt: skip


@pytest.fixture(scope="session")
def pki() -> Iterator[Pki]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    import tempfile

    d = tempfile.mkdtemp(prefix="binrpc-pki-", dir="/tmp")
    try:
        yield make_pki(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)
