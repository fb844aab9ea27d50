"""The FIFO text protocol served by our server, byte for byte, on every transport of the ctl
``fifo`` parameter: a FIFO file, UDP, TCP, unix stream and unix datagram (spec 8)."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from binrpc.rpcs.core import NAME, _arch, _version

from .conftest import (
    SOCKETS,
    TRANSPORTS,
    FifoServer,
    ServerThread,
    fifo_addresses,
    free_port,
    make_registry,
    make_reply_fifo,
    read_fifo_to_eof,
    recv_for,
    recv_to_eof,
    reply_name,
    write_fifo,
)

VERSION_LINE = f"{NAME} {_version()} ({_arch()}) ".encode()


# ------------------------------------------------------------------------------------------
# every transport: requests, escapes, typing, struct lines, errors


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        pytest.param(b":core.version:{R}\n\n", b"200 OK\n" + VERSION_LINE + b"\n", id="version"),
        pytest.param(
            b":no.such:{R}\n\n", b"500 Command 'no.such' not found\n", id="unknown-method"
        ),
        pytest.param(
            b":system.methodSignature:{R}\n\n", b"500 Not Implemented Yet\n", id="signature"
        ),
        # escapes in: \\ \n \r \t \0 and \c -> ':' \o -> ','; out: the basic set only
        pytest.param(
            b":core.echo:{R}\na b\nx\\ty\\\\z\\nw\nc\\cd\\oe\n-5\n\n",
            b"200 OK\na b\nx\\ty\\\\z\\nw\nc:d,e\n-5\n",
            id="echo-escapes",
        ),
        # \0 exists so that a NUL survives: it comes back escaped, the string is not cut
        pytest.param(b":core.echo:{R}\nn\\0u\\rl\n\n", b"200 OK\nn\\0u\\rl\n", id="echo-nul"),
        pytest.param(b":core.prints:{R}\n\\0a\nb\\0\n\n", b"200 OK\n\\0a\nb\\0\n", id="prints-nul"),
        pytest.param(b":t.echo:{R}\na\\0b\n\n", b"200 OK\na\\0b\n", id="pythonic-nul"),
        pytest.param(b":t.struct:{R}\nk\\0:v\\0w\n\n", b"200 OK\nk\\0:v\\0w\n", id="struct-nul"),
        # strtol with base auto: 0x10 -> 16, 010 -> 8, abc -> 0; negatives print unsigned
        pytest.param(
            b":core.printi:{R}\n1\n0x10\n010\n-5\nabc\n\n",
            b"200 OK\n1\n16\n8\n18446744073709551611\n0\n",
            id="printi-strtol",
        ),
        pytest.param(b":core.prints:{R}\nx\ny z\n\n", b"200 OK\nx\ny z\n", id="prints"),
        pytest.param(
            b":t.scan:{R}\n0x1f\n2.5\nhi\\tthere\n\n",
            b"200 OK\n31\n2.500000\nhi\\tthere\n",
            id="scan-dfs",
        ),
        # Pythonic handlers: whole-line conversions, base auto for ints
        pytest.param(
            b":t.types:{R}\n010\n1e3\nabc\n1\n\n",
            b"200 OK\nint=8\nfloat=1000.0\nstr=abc\nbool=True\n",
            id="pythonic-types",
        ),
        pytest.param(b":t.add:{R}\n0x10\n-2\n\n", b"200 OK\n14\n", id="pythonic-int"),
        pytest.param(
            b":t.add:{R}\nabc\n\n", b"400 Invalid parameter value on line 2\n", id="bad-int"
        ),
        pytest.param(
            b":t.add:{R}\n1\n2x\n\n", b"400 Invalid parameter value on line 3\n", id="bad-int-3"
        ),
        # struct lines: name:value,... with \c and \o; the reply escapes ':' as \o, ',' as \c
        pytest.param(
            b":t.struct:{R}\na:1,b\\cc:x\\oy\n\n", b"200 OK\na:1,b\\oc:x\\cy\n", id="struct"
        ),
        pytest.param(b":t.structs:{R}\na:1,b:2\nc:3\n\n", b"200 OK\n2\n1\n", id="structs"),
        pytest.param(
            b":t.struct:{R}\nnocolon\n\n",
            b"400 Colon missing in struct on line 2\n",
            id="struct-no-colon",
        ),
        pytest.param(
            b":t.struct:{R}\na:1,b\n\n",
            b"400 Colon missing in struct on line 2\n",
            id="struct-second-part-no-colon",
        ),
        pytest.param(
            b":t.struct:{R}\na\\q:1\n\n",
            b"400 Error while processing struct member 'a\\\\q' on line 2\n",
            id="struct-bad-escape",
        ),
        pytest.param(
            b":t.struct:{R}\n\n", b"400 Parameter missing on line 2\n", id="struct-missing"
        ),
        pytest.param(
            b":core.prints:{R}\nbad\\q\n\n", b"500 Internal Server Error\n", id="bad-escape"
        ),
        pytest.param(b":t.fault:{R}\n\n", b"404 no thing here\nkept\n", id="fault-keeps-body"),
        pytest.param(b":t.printf:{R}\n\n", b"200 OK\na=1 b=two", id="printf-no-newline"),
        # CRLF lines are lines (Kamailio ends the request at the first CRLF)
        pytest.param(b":core.echo:{R}\r\na\r\nb\r\n\r\n", b"200 OK\na\nb\n", id="crlf"),
        # trailing spaces are kept, blank lines before a request are skipped
        pytest.param(b"\n\n:core.echo:{R}\n a \t\n\n", b"200 OK\n a \\t\n", id="spaces"),
    ],
)
def test_exact_replies(
    fifo_server: FifoServer, transport: str, request_: bytes, reply: bytes
) -> None:
    assert fifo_server.peer(transport).ask(request_) == reply


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_builtin_struct_replies(fifo_server: FifoServer, transport: str) -> None:
    peer = fifo_server.peer(transport)
    uptime = peer.ask(b":core.uptime:{R}\n\n")
    assert uptime is not None
    status, line, end = uptime.split(b"\n")
    assert (status, end) == (b"200 OK", b"")
    members = line.split(b",")
    assert [m.split(b":", 1)[0] for m in members] == [b"now", b"up_since", b"uptime"]
    assert b"\\o" in members[0] and b":" not in members[0][4:]  # the time's ':' escaped
    assert int(members[2].split(b":")[1]) >= 0

    psx = peer.ask(b":core.psx:{R}\n\n")
    assert psx is not None and psx.startswith(b"200 OK\n")
    first = psx.split(b"\n")[1]
    assert (
        first
        == f"IDX:0,PID:{os.getpid()},DSC:main process - ".encode()
        + first.split(b"DSC:main process - ", 1)[1]
    )

    signature = peer.ask(b":system.methodSignature:{R}\nt.add\n\n")
    assert signature == b"200 OK\nint,int,[int]\n"  # b is optional


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_ctl_listen(fifo_server: FifoServer, transport: str) -> None:
    reply = fifo_server.peer(transport).ask(b":ctl.listen:{R}\n\n")
    assert reply is not None
    expected = [b"200 OK"]
    names = {"fifo": "fifo", "udp": "udp", "tcp": "tcp", "unixs": "unix_stream"}
    for kind, address in fifo_server.addresses.items():
        proto, _, rest = address.partition(":")
        if proto in ("fifo", "unixs", "unixd"):
            name, port = rest, ""
        else:
            name, port = rest.split(":")
        transport_name = names.get(kind, "unix_dgram")
        expected += [b"fifo", transport_name.encode(), name.encode(), port.encode()]
    assert reply == b"\n".join(expected) + b"\n"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_connections_and_who(fifo_server: FifoServer, transport: str) -> None:
    peer = fifo_server.peer(transport)
    if transport in ("tcp", "unixs"):
        # the asking connection is counted (payload fifo)
        assert peer.ask(b":ctl.connections:{R}\n\n") == b"200 OK\n1\n"
        who = peer.ask(b":ctl.who:{R}\n\n")
        assert who is not None
        lines = who.split(b"\n")
        assert lines[0] == b"200 OK" and len(lines) == 8
        assert lines[1:3] == [b"fifo", transport.replace("unixs", "unix_stream").encode()]
        if transport == "tcp":
            assert lines[3] == b"127.0.0.1" and lines[4].isdigit()
            assert lines[5:7] == [b"127.0.0.1", fifo_server.addresses["tcp"].split(":")[2].encode()]
        else:
            assert lines[3:7] == [
                b"<anonymous unix socket>",
                b"",
                fifo_server.addresses["unixs"].split(":", 1)[1].encode(),
                b"",
            ]
    else:
        assert peer.ask(b":ctl.connections:{R}\n\n") == b"200 OK\n0\n"
        assert peer.ask(b":ctl.who:{R}\n\n") == b"400 no open stream connection\n"


def test_streams_are_counted_with_binrpc(workdir: str) -> None:
    tcp = fifo_addresses(workdir)["tcp"]
    with ServerThread(None, f"unixs:{workdir}/b.sock", fifo=(tcp,)) as st:
        from .conftest import Peer

        peer = Peer("tcp", tcp, workdir)
        binrpc_sock = socket.socket(socket.AF_UNIX)
        binrpc_sock.connect(f"{workdir}/b.sock")
        try:
            deadline = time.monotonic() + 3
            assert st.server is not None
            while st.call_in_loop(st.server.connection_count) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert peer.ask(b":ctl.connections:\n\n") == b"200 OK\n2\n"
            who = peer.ask(b":ctl.who:\n\n")
            assert who is not None
            lines = who.split(b"\n")
            assert lines[1:3] == [b"binrpc", b"unix_stream"]
            assert lines[7:9] == [b"fifo", b"tcp"]
        finally:
            binrpc_sock.close()


# ------------------------------------------------------------------------------------------
# invalid first lines


INVALID_FIRST_LINES = [
    (b"core.version:{R}\n\n", b"400 the first line must be :method:reply_name\n"),
    (b":core.version\n\n", b"400 reply file separator ':' missing in the first line\n"),
    (b"::x\n\n", b"400 empty method name\n"),
    (b":a\n\n", b"400 the first line must be :method:reply_name\n"),  # < 3 characters
    (
        b":core.version:../x\n\n",
        b"400 bad reply file name '../x' (no '.', '/' or '\\\\' allowed)\n",
    ),
    (
        b":core.version:a\\b\n\n",
        b"400 bad reply file name 'a\\\\\\\\b' (no '.', '/' or '\\\\' allowed)\n",
    ),
]


@pytest.mark.parametrize("transport", SOCKETS)
@pytest.mark.parametrize(("request_", "reply"), INVALID_FIRST_LINES)
def test_invalid_first_line_on_sockets(
    fifo_server: FifoServer, transport: str, request_: bytes, reply: bytes
) -> None:
    # Kamailio answers a bogus "200 OK" without running anything; we say what is wrong
    peer = fifo_server.peer(transport)
    assert peer.ask(request_) == reply
    assert peer.ask(b":core.echo:\nstill fine\n\n") == b"200 OK\nstill fine\n"


@pytest.mark.parametrize("transport", SOCKETS)
def test_nul_in_the_reply_name(fifo_server: FifoServer, transport: str) -> None:
    reply = fifo_server.peer(transport).ask(b":core.version:a\0b\n\n")
    assert reply is not None and reply.startswith(b"400 bad reply file name ")


def test_ipv6_fifo_listeners(workdir: str) -> None:
    udp, tcp = free_port(host="::1"), free_port(host="::1")
    with ServerThread(None, fifo=(f"udp:[::1]:{udp}", f"tcp:[::1]:{tcp}")) as st:
        assert st.server is not None
        assert st.server.listener_rows() == [
            ("fifo", "udp", "[::1]", str(udp)),
            ("fifo", "tcp", "[::1]", str(tcp)),
        ]
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
            u.settimeout(3)
            u.sendto(b":core.echo:\nsix\n\n", ("::1", udp))
            assert u.recv(1000) == b"200 OK\nsix\n"
        with socket.create_connection(("::1", tcp), timeout=3) as t:
            t.sendall(b":ctl.who:\n\n")
            t.shutdown(socket.SHUT_WR)
            who = recv_to_eof(t)
        assert who is not None
        assert who.split(b"\n")[1:4] == [b"fifo", b"tcp", b"::1"]


def test_invalid_first_line_on_fifo_file(fifo_server: FifoServer) -> None:
    # no valid reply file: nothing is sent (and nothing is written to a look-alike)
    name = reply_name()
    path, fd = make_reply_fifo(fifo_server.workdir, name)
    try:
        for bad in (f"{name}:core.version:\n\n", f":core.version:{name}.x\n\n", ":x\n\n"):
            write_fifo(fifo_server.fifo_path, bad.encode())
        assert read_fifo_to_eof(fd, 0.5) is None
    finally:
        os.close(fd)
        os.unlink(path)
    assert fifo_server.peer("fifo").ask(b":core.echo:{R}\nok\n\n") == b"200 OK\nok\n"


# ------------------------------------------------------------------------------------------
# streams: pipelining, chunks, errors, oversize


@pytest.mark.parametrize("transport", ["tcp", "unixs"])
def test_pipelined_requests_answered_in_order(fifo_server: FifoServer, transport: str) -> None:
    # the first one is slow (async handler): the later ones must still come after it
    reply = fifo_server.peer(transport).ask(
        b":t.slow:{R}\n0.3\nfirst\n\n:core.echo:\nsecond\n\n:no.such:\n\nbad\n\n:t.add:\n1\n2\n\n"
    )
    assert reply == (
        b"200 OK\nfirst\n200 OK\nsecond\n500 Command 'no.such' not found\n"
        b"400 the first line must be :method:reply_name\n200 OK\n3\n"
    )


@pytest.mark.parametrize("transport", ["tcp", "unixs"])
def test_request_in_many_chunks(fifo_server: FifoServer, transport: str) -> None:
    data = b":core.echo:\nhello\nwor\\tld\n\n:core.printi:\n0x10\n\n"
    with fifo_server.peer(transport).connect() as sock:
        for i in range(len(data)):
            sock.send(data[i : i + 1])
            if i % 7 == 0:
                time.sleep(0.002)
        assert recv_for(sock, 0.5) == b"200 OK\nhello\nwor\\tld\n200 OK\n16\n"
        # the connection stays open: more requests on it
        sock.sendall(b":core.echo:\nagain\n\n")
        assert recv_for(sock, 0.5) == b"200 OK\nagain\n"


def test_oversized_stream_request_closes_the_connection(fifo_server: FifoServer) -> None:
    peer = fifo_server.peer("tcp")
    with peer.connect() as sock:
        sock.sendall(b":core.echo:\n" + b"a" * 70000)
        assert recv_to_eof(sock) == b""  # closed, no reply
    assert peer.ask(b":core.echo:\nnext\n\n") == b"200 OK\nnext\n"


# ------------------------------------------------------------------------------------------
# datagrams


@pytest.mark.parametrize("transport", ["udp", "unixd"])
def test_one_request_per_datagram(fifo_server: FifoServer, transport: str) -> None:
    peer = fifo_server.peer(transport)
    # what follows the empty line is ignored, as in ctl
    assert peer.ask(b":core.echo:\nfirst\n\n:core.echo:\nsecond\n\n") == b"200 OK\nfirst\n"
    assert peer.ask(b"\n\r\n:core.echo:\nabc\r\n\r\n") == b"200 OK\nabc\n"


INCOMPLETE = b"400 incomplete request (no empty line at its end): not run\n"


@pytest.mark.parametrize("transport", SOCKETS)
def test_a_request_cut_short_is_not_run(fifo_server: FifoServer, transport: str) -> None:
    # a truncated datagram, or a stream ending before the empty line: never run with the
    # lines that came (t.add would answer 1); a datagram says why, a stream has nobody to
    # answer after its end-of-file (ctl: ignored on both)
    peer = fifo_server.peer(transport)
    for cut in (b":t.mark:\ncut", b":t.mark:\ncut\n", b":t.add:\n1\n", b":t.add:\n1\n\r"):
        reply = peer.ask(cut)
        assert reply == (INCOMPLETE if transport in ("udp", "unixd") else b""), cut
    assert peer.ask(b":t.marks:\n\n") == b"200 OK\n"
    assert peer.ask(b":t.add:\n1\n\n") == b"200 OK\n1\n"


def test_reply_too_big_for_a_datagram(fifo_server: FifoServer) -> None:
    reply = fifo_server.peer("udp").ask(b":t.big:\n1000\n\n")
    assert reply is not None and reply.startswith(b"500 reply too large (")


def test_big_replies_on_streams_and_fifo_files(fifo_server: FifoServer) -> None:
    expected = b"200 OK\n" + b"".join(f"{i:07d}".encode() + b"x" * 90 + b"\n" for i in range(3000))
    assert len(expected) > 256 * 1024
    for transport in ("tcp", "unixs", "fifo"):
        assert fifo_server.peer(transport).ask(b":t.big:{R}\n3000\n\n") == expected


# ------------------------------------------------------------------------------------------
# FIFO files: several requests per write, no reply name, concurrent writers, overflow


def test_several_requests_in_one_write(fifo_server: FifoServer) -> None:
    names = [reply_name() for _ in range(3)]
    opened = [make_reply_fifo(fifo_server.workdir, n) for n in names]
    try:
        write_fifo(
            fifo_server.fifo_path,
            f":core.echo:{names[0]}\none\n\n:t.add:{names[1]}\n2\n3\n\n"
            f":core.prints:{names[2]}\nthree\n\n".encode(),
        )
        got = [read_fifo_to_eof(fd, 3) for _, fd in opened]
    finally:
        for path, fd in opened:
            os.close(fd)
            os.unlink(path)
    assert got == [b"200 OK\none\n", b"200 OK\n5\n", b"200 OK\nthree\n"]


def test_request_in_several_writes_and_async_handlers(fifo_server: FifoServer) -> None:
    name = reply_name()
    path, fd = make_reply_fifo(fifo_server.workdir, name)
    try:
        for piece in (f":t.slow:{name}\n".encode(), b"0.2\n", b"slo", b"w\n", b"\n"):
            write_fifo(fifo_server.fifo_path, piece)
            time.sleep(0.05)
        assert read_fifo_to_eof(fd, 3) == b"200 OK\nslow\n"
    finally:
        os.close(fd)
        os.unlink(path)


def test_no_reply_name_runs_and_discards(fifo_server: FifoServer) -> None:
    write_fifo(fifo_server.fifo_path, b":t.mark:\nA\n\n:t.mark:\nB\n\n")
    deadline = time.monotonic() + 3
    while (marks := fifo_server.peer("udp").ask(b":t.marks:\n\n")) != b"200 OK\nA\nB\n":
        assert time.monotonic() < deadline, marks
        time.sleep(0.02)
    assert not [n for n in os.listdir(fifo_server.workdir) if n.startswith("t")]


def test_concurrent_writers(fifo_server: FifoServer) -> None:
    errors: list[str] = []

    def client(k: int) -> None:
        peer = fifo_server.peer("fifo")
        for i in range(15):
            want = f"c{k}-{i}" + "y" * (k * 50)
            got = peer.ask(f":core.echo:{{R}}\n{want}\n\n".encode(), timeout=5)
            if got != f"200 OK\n{want}\n".encode():
                errors.append(f"{k}/{i}: {got!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


def test_buffer_overflow_is_discarded_and_the_fifo_keeps_working(
    fifo_server: FifoServer,
) -> None:
    fd = os.open(fifo_server.fifo_path, os.O_WRONLY)
    try:
        data = b":core.echo:x\n" + b"a" * 70000  # no empty line: more than 65535 buffered
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    time.sleep(0.2)
    assert fifo_server.peer("fifo").ask(b"\n\n:core.echo:{R}\nalive\n\n") == b"200 OK\nalive\n"


@pytest.mark.parametrize("timeout", [0.3, None])
def test_incomplete_request_discarded_after_a_while(workdir: str, timeout: float | None) -> None:
    addresses = fifo_addresses(workdir)
    with ServerThread(
        make_registry(),
        fifo=(addresses["fifo"],),
        fifo_reply_dir=workdir,
        fifo_partial_timeout=timeout,
    ):
        from .conftest import Peer

        path = addresses["fifo"].split(":", 1)[1]
        write_fifo(path, b":core.echo:nobody\nhalf a request")  # a writer that died
        time.sleep(0.6)
        reply = Peer("fifo", addresses["fifo"], workdir).ask(
            b":core.echo:{R}\nwhole\n\n", timeout=1.0
        )
    if timeout is None:
        # glued to the stale bytes: the request runs as a parameter of the dead one
        assert reply is None
    else:
        assert reply == b"200 OK\nwhole\n"


def test_core_kill_over_the_fifo_file(workdir: str) -> None:
    addresses = fifo_addresses(workdir)
    with ServerThread(None, fifo=(addresses["fifo"],), fifo_reply_dir=workdir) as st:
        from .conftest import Peer

        assert Peer("fifo", addresses["fifo"], workdir).ask(b":core.kill:{R}\n\n") == b"200 OK\n"
        st._thread.join(10)
        assert not st._thread.is_alive()
    assert not os.path.exists(addresses["fifo"].split(":", 1)[1])
