"""The datagram request limit, Kamailio 5.6.3 vs binrpcd (issue 10, point 15): on unixd a
request of 65535 bytes is run and one of 65536 bytes (or more) is dropped without a reply,
the server going on."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest

from binrpc import parse_packet
from tests.server.test_datagrams import _request_of

from .conftest import KamailioEndpoints
from .test_kamcmd_vs_binrpcd import Binrpcd, binrpcd  # noqa: F401  (the binrpcd fixture)


def _first_answered(target: str, sizes: list[int]) -> int:
    """Send requests of ``sizes`` bytes (cookie = their index) then a small one; the cookie
    of the first reply (unix datagrams keep their order)."""
    path = os.path.join(tempfile.mkdtemp(prefix="binrpc-dglimit-", dir="/tmp"), "c.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.settimeout(10)
            for cookie, size in enumerate([*sizes, 100]):
                sock.sendto(_request_of(size, cookie), target)
            packet = parse_packet(sock.recv(1 << 17))
            assert packet is not None
            return packet.cookie
        finally:
            os.unlink(path)
            os.rmdir(os.path.dirname(path))


@pytest.mark.parametrize(("sizes", "answered"), [([65536, 70000, 65535], 2), ([65536], 1)])
def test_unixd_limit_as_kamailio(
    kamailio: KamailioEndpoints,
    binrpcd: Binrpcd,  # noqa: F811
    sizes: list[int],
    answered: int,
) -> None:
    assert _first_answered(kamailio.unixd_path, sizes) == answered
    assert _first_answered(binrpcd.binrpc["unixd"].split(":", 1)[1], sizes) == answered
