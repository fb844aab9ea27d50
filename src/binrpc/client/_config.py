"""The one configuration record of every client: :class:`ClientConfig`.

``Client``, ``AsyncClient`` and ``FifoClient`` take the same keyword arguments, checked the
same way, into this record; ``Client.config`` can build an ``AsyncClient`` talking to the same
server (``AsyncClient.from_config(client.config)``).
"""

from __future__ import annotations

from .._address import Address, parse_address
from .._frozen import Frozen
from ._core import DEFAULT_MAX_REPLY_SIZE, Timeouts, argument_error, check_size, resolve_address

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from ssl import SSLContext
    from typing import Self

_DEFAULT_TIMEOUTS = Timeouts()

__all__ = ["ClientConfig", "Configured", "tls_address"]


def tls_address(address: Address, tls: object) -> Address:
    """``tcp:`` + ``tls`` set -> the ``tls:`` address; refuse TLS on other transports.

    Raises:
        ValueError: ``tls`` given for a transport other than TCP, or ``tls=False`` for a
            ``tls:`` address.
    """
    if tls is None:
        return address
    if tls is False:
        if address.proto == "tls":
            raise ValueError(f"{address}: a tls: address needs TLS (tls=False given)")
        return address
    if address.proto == "tcp":
        return Address("tls", address.host, address.port)
    if address.proto != "tls":
        raise ValueError(f"TLS needs a tcp or tls address, not {address}")
    return address


class ClientConfig(Frozen):
    """Where and how a client talks (immutable; build it with :meth:`binrpc` or :meth:`fifo`).

    Attributes:
        address: the server.
        timeouts: connect and read timeouts (``FifoClient``: ``read`` bounds a whole call).
        max_reply_size: largest reply accepted, in bytes.
        reply_path: unixd: bind the reply socket exactly here (kamcmd ``-R``).
        reply_dir: unixd: bind an auto-named reply socket here (kamcmd ``-D``); FIFO: where
            reply FIFOs and reply sockets are created.
        tls: ``True``, an ``ssl.SSLContext`` or ``None`` (see ``Client``).
        server_hostname: the name the server certificate must carry.
    """

    __match_args__ = (
        "address",
        "timeouts",
        "max_reply_size",
        "reply_path",
        "reply_dir",
        "tls",
        "server_hostname",
    )
    __slots__ = __match_args__
    address: Address
    timeouts: Timeouts
    max_reply_size: int
    reply_path: str | None
    reply_dir: str | None
    tls: bool | SSLContext | None
    server_hostname: str | None

    @classmethod
    def binrpc(
        cls,
        address: str | Address | None,
        *,
        timeout: float | Timeouts | None,
        max_reply_size: int,
        reply_path: str | None = None,
        reply_dir: str | None = None,
        udp_default: bool = False,
        tls: bool | SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> ClientConfig:
        """The configuration of a binrpc client (the arguments of ``Client``).

        Raises:
            AddressError: a bad address. TypeError, ValueError: a bad timeout or size, TLS
            on a transport other than TCP.
        """
        return cls(
            tls_address(resolve_address(address, udp_default=udp_default), tls),
            Timeouts.of(timeout),
            check_size(max_reply_size, "max_reply_size"),
            reply_path,
            reply_dir,
            tls,
            server_hostname,
        )

    @classmethod
    def fifo(
        cls,
        address: str | Address,
        *,
        timeout: float | None,
        max_reply_size: int,
        reply_dir: str,
    ) -> ClientConfig:
        """The configuration of a FIFO-protocol client: the address in ctl ``fifo`` syntax;
        ``timeout`` bounds each whole call.

        Raises:
            AddressError, TypeError, ValueError: as :meth:`binrpc`.
        """
        if isinstance(address, str):
            address = parse_address(address, "fifo")
        elif not isinstance(address, Address):
            raise argument_error("address", "a str or an Address", address)
        return cls(
            address,
            Timeouts.of(timeout),
            check_size(max_reply_size, "max_reply_size"),
            None,
            reply_dir,
            None,
            None,
        )


class Configured:
    """The read-only views of :attr:`config` that ``Client`` and ``AsyncClient`` share (the
    constructor arguments of both, under their names)."""

    __slots__ = ()
    config: ClientConfig

    def __init__(
        self,
        address: str | Address | None = None,
        *,
        timeout: float | Timeouts | None = _DEFAULT_TIMEOUTS,
        max_reply_size: int = DEFAULT_MAX_REPLY_SIZE,
        reply_path: str | None = None,
        reply_dir: str | None = None,
        udp_default: bool = False,
        tls: bool | SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self._setup(
            ClientConfig.binrpc(
                address,
                timeout=timeout,
                max_reply_size=max_reply_size,
                reply_path=reply_path,
                reply_dir=reply_dir,
                udp_default=udp_default,
                tls=tls,
                server_hostname=server_hostname,
            )
        )

    @classmethod
    def from_config(cls, config: ClientConfig) -> Self:
        """A client with the configuration of another (``other.config``)."""
        client = cls.__new__(cls)
        client._setup(config)
        return client

    def _setup(self, config: ClientConfig) -> None:
        """Set the client up for ``config`` (both constructors end here)."""
        raise NotImplementedError

    @property
    def address(self) -> Address:
        return self.config.address

    @property
    def timeouts(self) -> Timeouts:
        return self.config.timeouts

    @property
    def max_reply_size(self) -> int:
        return self.config.max_reply_size

    @property
    def reply_path(self) -> str | None:
        return self.config.reply_path

    @property
    def reply_dir(self) -> str | None:
        return self.config.reply_dir

    @property
    def tls(self) -> bool | SSLContext | None:
        return self.config.tls

    @property
    def server_hostname(self) -> str | None:
        return self.config.server_hostname
