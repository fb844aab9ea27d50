"""Address strings of the ctl module and kamcmd -> :class:`Address`. No I/O here.

Grammar (protocol words are case-insensitive)::

    value := [proto ":"] host [":" port]
           | [proto ":"] "[" ipv6 "]" [":" port]
    proto := "tcp" | "tls" | "udp" | "unixd" | "unix" | "unixs" | "fifo"

The same text means slightly different things to the three parsers (spec 7.2 and kamcmd 1.4):

============  ==========================  ============================  =================
text          ``binrpc`` parameter        ``fifo`` parameter            kamcmd ``-s``
============  ==========================  ============================  =================
``/p``        unix stream ``/p``          FIFO file ``/p``              unix stream
``name``      udp ``name:2049``           FIFO file ``name`` (relative)  unix stream ``name``
``3012``      udp ``*:3012``              FIFO file ``3012``            unix stream ``3012``
``h:p``       udp ``h:p``                 udp ``h:p``                   udp ``h:p``
============  ==========================  ============================  =================

Ports: up to 5 digits, wrapped modulo 65536 as the C code does; a service name is looked up;
0 or missing means 2049. ``tcp:3012`` (digits only) means port 3012 on ``*``. Unix paths cannot
contain ``:`` and are at most 104 bytes. IPv6 literals are written in brackets
(``tcp:[::1]:2046``), which Kamailio 5.6.3 and kamcmd 1.5 reject and we accept.

``tls:host:port`` (our extension, every flavour) is TCP with TLS: it is only ever chosen by
that explicit prefix, never by default.
"""

from __future__ import annotations

import _socket  # the C module: importing socket.py costs milliseconds (see _frozen)

from ._errors import LocalProtocolError
from ._frozen import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final, Literal

    Proto = Literal["unixs", "unixd", "udp", "tcp", "tls", "fifo"]
    Flavour = Literal["binrpc", "fifo", "client"]

__all__ = ["DEFAULT_PORT", "MAX_UNIX_PATH", "Address", "AddressError", "parse_address"]

DEFAULT_PORT: Final = 2049
MAX_UNIX_PATH: Final = 104
"""Kamailio and kamcmd refuse unix socket paths longer than this (BSD's sun_path size)."""

_PROTOS: Final[dict[str, Proto]] = {
    "tcp": "tcp",
    "tls": "tls",
    "udp": "udp",
    "unixd": "unixd",
    "unix": "unixs",
    "unixs": "unixs",
    "fifo": "fifo",
}
_TRANSPORT_NAMES: Final[dict[str, str]] = {
    "unixs": "unix_stream",
    "unixd": "unix_dgram",
    "udp": "udp",
    "tcp": "tcp",
    "tls": "tls",
    "fifo": "fifo",
}


class AddressError(LocalProtocolError):
    """An address string that cannot be parsed; the message names the offending value."""


class Address(Frozen):
    """A parsed listener or server address.

    Attributes:
        proto: ``unixs``, ``unixd``, ``udp``, ``tcp``, ``tls`` (TCP with TLS) or ``fifo``.
        host: for udp/tcp/tls the host as written (``*`` for any, IPv6 without brackets);
            for unix sockets and FIFOs the path.
        port: the port for udp/tcp (after defaulting and wrapping), 0 otherwise.
    """

    __match_args__ = ("proto", "host", "port")
    __slots__ = __match_args__
    proto: Proto
    host: str
    port: int

    def __init__(self, proto: Proto, host: str, port: int = 0) -> None:
        super().__init__(proto, host, port)

    @property
    def is_unix(self) -> bool:
        """A filesystem object: unix socket or FIFO."""
        return self.proto in ("unixs", "unixd", "fifo")

    @property
    def is_stream(self) -> bool:
        return self.proto in ("unixs", "tcp", "tls")

    @property
    def is_inet(self) -> bool:
        """An IP transport: udp, tcp or tls."""
        return self.proto in ("udp", "tcp", "tls")

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host and not self.is_unix

    @property
    def path(self) -> str:
        """The filesystem path of a unix socket or FIFO."""
        return self.host

    @property
    def transport_name(self) -> str:
        """The transport as ``ctl.listen`` names it: unix_stream, unix_dgram, udp, tcp, tls,
        fifo."""
        return _TRANSPORT_NAMES[self.proto]

    @property
    def display_host(self) -> str:
        """The host as ``ctl.listen`` shows it: IPv6 literals in brackets."""
        return f"[{self.host}]" if self.is_ipv6 else self.host

    @property
    def bind_host(self) -> str:
        """The host to bind/connect: ``*`` and empty become IPv4 any, as in Kamailio."""
        return "0.0.0.0" if self.host in ("*", "") else self.host

    def __str__(self) -> str:
        if self.is_unix:
            return f"{self.proto}:{self.host}"
        return f"{self.proto}:{self.display_host}:{self.port}"


def _parse_port(text: str, proto: str, original: str) -> int:
    """Port text -> number; 0 when empty. Wraps modulo 65536 like the C parsers."""
    if text == "":
        return 0
    if text.isdigit() and text.isascii():
        if len(text) > 5:
            raise AddressError(f"bad port in address {original!r}: {text!r} has more than 5 digits")
        return int(text) % 65536
    try:
        table = ("tcp" if proto == "tls" else proto) if proto in ("tcp", "tls", "udp") else None
        return _socket.getservbyname(text, table) if table else _socket.getservbyname(text)
    except (OSError, ValueError):  # ValueError: a NUL; UnicodeEncodeError: undecodable argv
        raise AddressError(f"bad port in address {original!r}: unknown service {text!r}") from None


def parse_address(text: str, flavour: Flavour = "binrpc", *, udp_default: bool = False) -> Address:
    """Parse an address as the ``binrpc`` / ``fifo`` ctl parameter or kamcmd's ``-s`` does.

    Args:
        text: the address string.
        flavour: ``"binrpc"`` (ctl's binrpc parameter), ``"fifo"`` (ctl's fifo parameter) or
            ``"client"`` (kamcmd's -s).
        udp_default: for ``"client"``: kamcmd's ``-U``, a bare name means UDP, not unix stream.

    Raises:
        AddressError: the text is not a valid address (the message names it).
    """
    original = text
    proto: Proto | None = None
    colon = text.find(":")
    if colon >= 0 and text[:colon].lower() in _PROTOS:
        proto = _PROTOS[text[:colon].lower()]
        text = text[colon + 1 :]
    if text.startswith("["):
        proto = proto or "udp"
        host, port_text = _split_ipv6(text, proto, original)
    else:
        host, colon_found, after = text.partition(":")
        port_text = after if colon_found else None
    if proto is None:
        proto = _default_proto(host, port_text, flavour, udp_default)
    if proto in ("unixs", "unixd", "fifo"):
        return _unix_address(proto, host, port_text, flavour, original)
    if port_text is None and host.isdigit() and host.isascii():
        port_text, host = host, "*"
    port = _parse_port(port_text or "", proto, original)
    if port == 0:
        port = DEFAULT_PORT
    return Address(proto, host or "*", port)


def _split_ipv6(text: str, proto: Proto, original: str) -> tuple[str, str | None]:
    """``[host]`` or ``[host]:port`` (after the protocol): ``(host, port text or None)``."""
    close = text.find("]")
    if close < 0:
        raise AddressError(f"bad address {original!r}: missing ']'")
    host = text[1:close]
    after = text[close + 1 :]
    if not host:
        raise AddressError(f"bad address {original!r}: empty IPv6 literal")
    if after and not after.startswith(":"):
        raise AddressError(f"bad address {original!r}: junk after ']'")
    if proto not in ("tcp", "tls", "udp"):
        raise AddressError(f"bad address {original!r}: an IPv6 literal needs tcp, tls or udp")
    try:
        _socket.inet_pton(_socket.AF_INET6, host)
    except (OSError, ValueError):  # ValueError: a NUL or undecodable argv bytes
        raise AddressError(f"bad address {original!r}: {host!r} is not an IPv6 address") from None
    return host, (after[1:] if after else None)


def _default_proto(host: str, port_text: str | None, flavour: Flavour, udp_default: bool) -> Proto:
    """The protocol of an address written without one."""
    if port_text is not None:
        return "udp"
    if "/" in host:
        return "fifo" if flavour == "fifo" else "unixs"
    if flavour == "binrpc":
        return "udp"
    if flavour == "fifo":
        return "fifo"
    return "udp" if udp_default else "unixs"


def _unix_address(
    proto: Proto, path: str, port_text: str | None, flavour: Flavour, original: str
) -> Address:
    """A unix socket or FIFO address; ``port_text`` is what followed a ':' in the path."""
    if port_text is not None:
        # what follows the path must still be a valid port (kamcmd then ignores it)
        _parse_port(port_text, proto, original)
        if flavour != "client":
            raise AddressError(f"bad address {original!r}: a unix path cannot contain ':'")
    if not path:
        raise AddressError(f"bad address {original!r}: empty path")
    if proto != "fifo" and len(path.encode("utf-8", "surrogateescape")) > MAX_UNIX_PATH:
        raise AddressError(
            f"bad address {original!r}: unix socket path longer than {MAX_UNIX_PATH} bytes"
        )
    if "\0" in path:
        raise AddressError(f"bad address {original!r}: NUL in path")
    return Address(proto, path)
