"""Per-listener access control: peer credentials, client networks, method lists, TLS.

Everything here is off by default: a plain address string (or a :class:`Listen` with no
option) behaves exactly as the ctl module.
"""

from __future__ import annotations

import fnmatch
import grp
import ipaddress
import logging
import pwd
import re
import socket
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .._address import Address
from .._registry import Method, MethodTable

if TYPE_CHECKING:
    import ssl

__all__ = ["Listen", "ListenerPolicy", "MethodFilter", "UnixCredsGate"]

log = logging.getLogger("binrpc.server")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

TLS_HANDSHAKE_TIMEOUT: Final = 10.0
"""Seconds a TLS client has to finish its handshake before the connection is dropped."""

_UCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _names(value: Iterable[str] | str | None, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        if not isinstance(item, str) or not item or "\0" in item:
            raise ValueError(f"{what}: expected non-empty strings, got {item!r}")
    return items


def _ids(value: Iterable[int | str] | int | str | None, kind: str) -> frozenset[int] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, int | str) else tuple(value)
    out: set[int] = set()
    for item in items:
        if isinstance(item, bool):
            raise ValueError(f"allow_{kind}s: expected names or ids, got {item!r}")
        if isinstance(item, int) or (isinstance(item, str) and item.isascii() and item.isdigit()):
            number = int(item)
            if not 0 <= number <= 2**32 - 2:
                raise ValueError(f"allow_{kind}s: id {item!r} out of range")
            out.add(number)
            continue
        if not isinstance(item, str):
            raise ValueError(f"allow_{kind}s: expected names or ids, got {item!r}")
        try:
            if kind == "uid":
                out.add(pwd.getpwnam(item).pw_uid)
            else:
                out.add(grp.getgrnam(item).gr_gid)
        except (KeyError, ValueError):
            raise ValueError(f"allow_{kind}s: unknown {'user' if kind == 'uid' else 'group'} "
                             f"{item!r}") from None  # fmt: skip
    return frozenset(out)


def _networks(value: Iterable[str | Network] | str | None) -> tuple[Network, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, str) else tuple(value)
    out: list[Network] = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            raise ValueError(f"allow_networks: bad network {item!r}") from None
    return tuple(out)


@dataclass(frozen=True)
class ListenerPolicy:
    """The access rules of one listener. ``None`` = no rule (anybody / any method).

    Peers (checked before any byte of a request is read; a refused peer gets its connection
    closed, a refused datagram no answer, and a WARNING log line):

    * ``allow_uids`` / ``allow_gids`` (unix stream and datagram sockets): the peer's uid
      (``SO_PEERCRED`` / ``SCM_CREDENTIALS``) is in ``allow_uids`` **or** its primary gid is in
      ``allow_gids`` (only one of them set: that one must match). Supplementary groups are
      not looked at.
    * ``allow_networks`` (udp, tcp, tls): the client's IP address is in one of the networks.
    * ``tls_allow_cns`` (tls with ``tls_ca``): the client certificate's subject commonName is
      one of these.

    Methods (on an allowed peer): a name is allowed when it matches one of ``allow_methods``
    (all names when ``None``) and none of ``deny_methods``: deny wins. Patterns are
    ``fnmatch`` patterns, case-sensitive (``core.*``, ``system.list*``, ``ctl.?ho``).
    A refused method gets fault 403 ``method <name> not allowed on this listener`` (FIFO
    protocol: status 403), whether it exists or not; ``system.listMethods``,
    ``system.methodHelp`` and ``system.methodSignature`` only know the allowed methods.
    """

    allow_uids: frozenset[int] | None = None
    allow_gids: frozenset[int] | None = None
    allow_networks: tuple[Network, ...] | None = None
    allow_methods: tuple[str, ...] | None = None
    deny_methods: tuple[str, ...] = ()
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_allow_cns: tuple[str, ...] | None = None
    tls_context: ssl.SSLContext | None = field(default=None, compare=False)

    @property
    def checks_creds(self) -> bool:
        return self.allow_uids is not None or self.allow_gids is not None

    @property
    def checks_peers(self) -> bool:
        return self.checks_creds or self.allow_networks is not None or self.is_tls

    @property
    def filters_methods(self) -> bool:
        return self.allow_methods is not None or bool(self.deny_methods)

    @property
    def is_tls(self) -> bool:
        return self.tls_context is not None or self.tls_cert is not None

    def check(self, address: Address) -> None:
        """Raise ValueError when a rule does not fit the listener's transport."""
        proto = address.proto
        if self.checks_creds and proto not in ("unixs", "unixd"):
            raise ValueError(
                f"{address}: allow_uids/allow_gids need a unix socket (unixs:, unixd:); "
                "FIFO files rely on their mode/owner"
            )
        if self.allow_networks is not None and proto not in ("udp", "tcp", "tls"):
            raise ValueError(f"{address}: allow_networks needs a udp, tcp or tls listener")
        tls_set = self.is_tls or self.tls_ca is not None or self.tls_allow_cns is not None
        if tls_set and proto != "tls":
            raise ValueError(f"{address}: TLS options need a tls: listener (tls:host:port)")
        if proto == "tls":
            if self.tls_context is None and (self.tls_cert is None or self.tls_key is None):
                raise ValueError(f"{address}: a tls: listener needs tls_cert and tls_key")
            if self.tls_allow_cns is not None and self.tls_context is None and not self.tls_ca:
                raise ValueError(f"{address}: tls_allow_cns needs tls_ca (client certificates)")

    # -- peers ------------------------------------------------------------------------------
    def creds_refusal(self, uid: int, gid: int) -> str | None:
        """None when allowed, else the reason."""
        if self.allow_uids is not None and uid in self.allow_uids:
            return None
        if self.allow_gids is not None and gid in self.allow_gids:
            return None
        return "uid/gid not allowed"

    def ip_refusal(self, host: str) -> str | None:
        if self.allow_networks is None:
            return None
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return "unparsable source address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for net in self.allow_networks:
            if ip.version == net.version and ip in net:
                return None
        return "network not allowed"

    def cert_refusal(self, peercert: dict[str, Any] | None) -> str | None:
        context = self.tls_context
        required = self.tls_ca is not None or (context is not None and _verifies_clients(context))
        if not required:
            return None
        if not peercert:
            return "no client certificate"
        if self.tls_allow_cns is None:
            return None
        cns = [v for rdn in peercert.get("subject", ()) for k, v in rdn if k == "commonName"]
        if any(cn in self.tls_allow_cns for cn in cns):
            return None
        return f"client certificate CN {cns[0] if cns else '(none)'!r} not allowed"

    # -- methods ----------------------------------------------------------------------------
    def method_allowed(self, name: str) -> bool:
        return _compile(self.allow_methods, self.deny_methods)(name)

    # -- TLS --------------------------------------------------------------------------------
    def server_context(self) -> ssl.SSLContext:
        """The listener's server-side SSLContext (built from the files once per call)."""
        if self.tls_context is not None:
            return self.tls_context
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        assert self.tls_cert is not None
        ctx.load_cert_chain(self.tls_cert, self.tls_key)
        if self.tls_ca is not None:
            ctx.load_verify_locations(cafile=self.tls_ca)
            # OPTIONAL, not REQUIRED: a client without a certificate completes the handshake
            # and is then refused with a log line (REQUIRED fails the handshake silently);
            # a certificate that is sent must verify against tls_ca either way.
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx


def _verifies_clients(context: ssl.SSLContext) -> bool:
    import ssl

    return context.verify_mode != ssl.CERT_NONE


_PATTERN_CACHE: dict[tuple[tuple[str, ...] | None, tuple[str, ...]], Callable[[str], bool]] = {}


def _compile(allow: tuple[str, ...] | None, deny: tuple[str, ...]) -> Callable[[str], bool]:
    key = (allow, deny)
    func = _PATTERN_CACHE.get(key)
    if func is None:
        allow_re = re.compile("|".join(fnmatch.translate(p) for p in allow)) if allow else None
        deny_re = re.compile("|".join(fnmatch.translate(p) for p in deny)) if deny else None

        def func(name: str) -> bool:
            if allow is not None and (allow_re is None or allow_re.match(name) is None):
                return False
            return deny_re is None or deny_re.match(name) is None

        _PATTERN_CACHE[key] = func
    return func


class Listen:
    """A listener address with its access rules, for :func:`~binrpc.server.serve`::

        serve(registry,
              Listen("unixs:/run/ro.sock", allow_methods=["core.*", "system.*"],
                     deny_methods=["core.kill"], allow_uids=[0, "kamailio"]),
              Listen("tls:127.0.0.1:2049", tls_cert="srv.pem", tls_key="srv.key",
                     tls_ca="ca.pem", tls_allow_cns=["ops"]),
              "tcp:127.0.0.1:2050")

    ``fifo=True`` makes it a FIFO text-protocol listener (the address then has the ``fifo``
    parameter's syntax: ``/tmp/ser_fifo`` is a FIFO file); ``fifo:/path`` is one anyway.
    A rule that does not fit the transport (``allow_uids`` on tcp, TLS files on a ``tcp:``
    address, ...) makes the server refuse to start (:class:`ListenerError`).
    """

    __slots__ = ("address", "fifo", "policy")

    # one keyword-only argument per rule: the listener's configuration, as binrpcd's flags
    def __init__(  # noqa: PLR0913
        self,
        address: str,
        *,
        fifo: bool = False,
        allow_uids: Iterable[int | str] | int | str | None = None,
        allow_gids: Iterable[int | str] | int | str | None = None,
        allow_networks: Iterable[str | Network] | str | None = None,
        allow_methods: Iterable[str] | str | None = None,
        deny_methods: Iterable[str] | str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
        tls_allow_cns: Iterable[str] | str | None = None,
        tls_context: ssl.SSLContext | None = None,
        policy: ListenerPolicy | None = None,
    ) -> None:
        if not isinstance(address, str):
            raise TypeError(f"Listen address must be a string, got {address!r}")
        self.address = address
        self.fifo = bool(fifo)
        if policy is None:
            if tls_key is not None and tls_cert is None:
                raise ValueError("tls_key without tls_cert")
            policy = ListenerPolicy(
                allow_uids=_ids(allow_uids, "uid"),
                allow_gids=_ids(allow_gids, "gid"),
                allow_networks=_networks(allow_networks),
                allow_methods=_names(allow_methods, "allow_methods"),
                deny_methods=_names(deny_methods, "deny_methods") or (),
                tls_cert=tls_cert,
                tls_key=tls_key if tls_key is not None else tls_cert,
                tls_ca=tls_ca,
                tls_allow_cns=_names(tls_allow_cns, "tls_allow_cns"),
                tls_context=tls_context,
            )
        self.policy = policy

    def __repr__(self) -> str:
        return f"Listen({self.address!r}, fifo={self.fifo}, policy={self.policy!r})"


class MethodFilter:
    """A read-only view of a method table without the methods a policy refuses."""

    __slots__ = ("_allowed", "_table")

    def __init__(self, table: MethodTable, policy: ListenerPolicy) -> None:
        self._table = table
        self._allowed = _compile(policy.allow_methods, policy.deny_methods)

    def get(self, name: str) -> Method | None:
        if not self._allowed(name):
            return None
        return self._table.get(name)

    def names(self) -> list[str]:
        return [name for name in self._table.names() if self._allowed(name)]

    def refuses(self, name: str) -> bool:
        return not self._allowed(name)


class RefusalLog:
    """WARNING lines for refused peers, at most ``burst`` per second per listener (a flood
    of refused datagrams must not become a flood of log lines); the rest are counted and
    reported with the next line that gets through."""

    __slots__ = ("_budget", "_burst", "_listener", "_stamp", "_suppressed")

    def __init__(self, listener: Address, burst: int = 10) -> None:
        self._listener = listener
        self._burst = burst
        self._budget = burst
        self._stamp = 0.0
        self._suppressed = 0

    def refused(self, peer: str, reason: str, what: str = "connection") -> None:
        now = time.monotonic()
        if now - self._stamp >= 1.0:
            self._stamp = now
            self._budget = self._burst
        if self._budget <= 0:
            self._suppressed += 1
            return
        self._budget -= 1
        more = ""
        if self._suppressed:
            more = f" ({self._suppressed} more refusals not logged)"
            self._suppressed = 0
        log.warning("%s: refused %s from %s: %s%s", self._listener, what, peer, reason, more)


def peer_creds(sock: Any) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of a unix stream peer, or None."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except (OSError, AttributeError):
        return None
    pid, uid, gid = _UCRED.unpack(raw)
    return pid, uid, gid


# --------------------------------------------------------------------------------------------
# unix datagrams: sender credentials


class UnixCredsGate:
    """The sender check of a unix datagram listener with uid/gid rules (a
    :class:`~binrpc.server._dgram.CredsGate`): the socket gets ``SO_PASSCRED``, so the kernel
    attaches the sender's pid/uid/gid to each datagram (``SCM_CREDENTIALS``, read with
    ``recvmsg``; only a privileged sender can claim other ids). Refused datagrams are
    dropped unanswered (logged)."""

    def __init__(self, policy: ListenerPolicy, refusals: RefusalLog) -> None:
        self._policy = policy
        self._refusals = refusals
        self.ancsize = socket.CMSG_SPACE(_UCRED.size)

    def prepare(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)

    def admits(self, ancdata: list[tuple[int, int, bytes]], addr: Any) -> bool:
        creds = None
        for level, kind, payload in ancdata:
            if (
                level == socket.SOL_SOCKET
                and kind == socket.SCM_CREDENTIALS
                and len(payload) >= _UCRED.size
            ):
                creds = _UCRED.unpack(payload[: _UCRED.size])
        peer = addr or "<unbound unix socket>"
        if creds is None:
            self._refusals.refused(str(peer), "no credentials", "datagram")
            return False
        pid, uid, gid = creds
        reason = self._policy.creds_refusal(uid, gid)
        if reason is not None:
            self._refusals.refused(f"{peer} (pid {pid}, uid {uid}, gid {gid})", reason, "datagram")
            return False
        return True
