"""Address strings: every example of spec 7.2 (ctl parameters) and kamcmd.md 1.4 (-s)."""

from __future__ import annotations

import pytest

from binrpc import Address, AddressError, parse_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unixs:/tmp/ctl", Address("unixs", "/tmp/ctl")),
        ("unix:/tmp/ctl", Address("unixs", "/tmp/ctl")),
        ("UNIX:/tmp/ctl", Address("unixs", "/tmp/ctl")),
        ("unixd:/tmp/ctl", Address("unixd", "/tmp/ctl")),
        ("/tmp/ctl", Address("unixs", "/tmp/ctl")),
        ("udp:127.0.0.1:3012", Address("udp", "127.0.0.1", 3012)),
        ("TCP:127.0.0.1:3012", Address("tcp", "127.0.0.1", 3012)),
        ("tcp:3012", Address("tcp", "*", 3012)),
        ("udp:*:3012", Address("udp", "*", 3012)),
        ("127.0.0.1:3012", Address("udp", "127.0.0.1", 3012)),
        ("2050", Address("udp", "*", 2050)),  # bare digits: a UDP port for binrpc
        ("myhost", Address("udp", "myhost", 2049)),  # no port: default 2049
        ("tcp:", Address("tcp", "*", 2049)),
        ("tcp:127.0.0.1:0", Address("tcp", "127.0.0.1", 2049)),
        ("tcp:127.0.0.1:", Address("tcp", "127.0.0.1", 2049)),
        ("tcp:127.0.0.1:70000", Address("tcp", "127.0.0.1", 4464)),  # wraps modulo 65536
        ("tcp:127.0.0.1:http", Address("tcp", "127.0.0.1", 80)),  # service names
        ("tcp:[::1]:2046", Address("tcp", "::1", 2046)),
        ("udp:[::]", Address("udp", "::", 2049)),
        ("fifo:/tmp/ser_fifo", Address("fifo", "/tmp/ser_fifo")),
    ],
)
def test_binrpc_parameter(text: str, expected: Address) -> None:
    assert parse_address(text, "binrpc") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fifo:/tmp/ser_fifo", Address("fifo", "/tmp/ser_fifo")),
        ("/tmp/ser_fifo2", Address("fifo", "/tmp/ser_fifo2")),
        ("46181", Address("fifo", "46181")),  # bare digits: a FIFO file name
        ("ser_fifo", Address("fifo", "ser_fifo")),  # relative file name
        ("udp:*:2050", Address("udp", "*", 2050)),
        ("tcp:localhost:2050", Address("tcp", "localhost", 2050)),
        ("localhost:2050", Address("udp", "localhost", 2050)),  # host:port means udp
        ("unixs:/tmp/f.sock", Address("unixs", "/tmp/f.sock")),
        ("unixd:/tmp/f.dgram", Address("unixd", "/tmp/f.dgram")),
    ],
)
def test_fifo_parameter(text: str, expected: Address) -> None:
    assert parse_address(text, "fifo") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unixs:/tmp/kc/ctl_s", Address("unixs", "/tmp/kc/ctl_s")),
        ("/tmp/kc/ctl_s", Address("unixs", "/tmp/kc/ctl_s")),
        ("unixd:/tmp/kc/ctl_d", Address("unixd", "/tmp/kc/ctl_d")),
        ("tcp:127.0.0.1:23049", Address("tcp", "127.0.0.1", 23049)),
        ("127.0.0.1:23049", Address("udp", "127.0.0.1", 23049)),
        ("localhost:23049", Address("udp", "localhost", 23049)),
        ("tcp:127.0.0.1", Address("tcp", "127.0.0.1", 2049)),
        ("udp:127.0.0.1:88585", Address("udp", "127.0.0.1", 23049)),
        ("127.0.0.1", Address("unixs", "127.0.0.1")),  # a socket file in the cwd
        ("unixs:/tmp/kc/ctl_s:http", Address("unixs", "/tmp/kc/ctl_s")),  # suffix ignored
        ("tcp:[::1]:2049", Address("tcp", "::1", 2049)),
    ],
)
def test_client_address(text: str, expected: Address) -> None:
    assert parse_address(text, "client") == expected


def test_client_udp_default() -> None:
    assert parse_address("127.0.0.1", "client", udp_default=True) == Address(
        "udp", "127.0.0.1", 2049
    )


@pytest.mark.parametrize(
    ("text", "flavour"),
    [
        ("foo:/tmp/x", "binrpc"),  # not a protocol word: host foo, port "/tmp/x"
        ("unix:/tmp/a:b", "binrpc"),  # unix paths cannot contain ':'
        ("unixs:/tmp/kc/ctl_s:zz", "client"),
        ("foo:bar:baz", "client"),
        ("tcp:127.0.0.1:123456", "binrpc"),  # more than 5 digits
        ("tcp:127.0.0.1:nosuchservice", "binrpc"),
        ("tcp:[::1", "binrpc"),
        ("tcp:[nothex]:1", "binrpc"),
        ("unixs:[::1]", "binrpc"),
        ("unixs:", "binrpc"),
        ("unixs:/" + "x" * 104, "binrpc"),  # longer than 104 bytes
    ],
)
def test_bad_addresses_name_the_value(text: str, flavour: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text, flavour)  # type: ignore[arg-type]
    assert repr(text) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_display() -> None:
    a = parse_address("tcp:[::1]:2046")
    assert (a.transport_name, a.display_host, a.bind_host, str(a)) == (
        "tcp",
        "[::1]",
        "::1",
        "tcp:[::1]:2046",
    )
    b = parse_address("udp:*:3012")
    assert (b.bind_host, b.display_host) == ("0.0.0.0", "*")
    c = parse_address("unixd:/tmp/x")
    assert (c.transport_name, c.is_unix, c.is_stream, str(c)) == (
        "unix_dgram",
        True,
        False,
        "unixd:/tmp/x",
    )
