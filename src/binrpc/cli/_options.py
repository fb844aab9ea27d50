"""Command-line parsing for ``binrpc``: kamcmd 1.5's GNU ``getopt`` behaviour plus long options
for the extensions. No I/O here.

Like GNU getopt (spec kamcmd 1.2) options are recognised anywhere (argv is permuted), clusters
and attached arguments work (``-vf'%v'``, ``-sunixs:/x``), ``--`` ends the options, and
``POSIXLY_CORRECT`` stops at the first non-option word. ``-h`` and ``-V`` act when they are
met. Deviation (issue #4): once the method has been seen, a word that kamcmd would send as a
number (``-5``, ``-1.5``, ``-0x10``) is an argument, not an option.
"""

from __future__ import annotations

from ._argtype import looks_numeric

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["LONG_OPTIONS", "Options", "UsageExit", "parse_args", "usage_text"]

_SHORT_WITH_ARG = frozenset("sfRDt")
_SHORT_FLAGS = frozenset("UVhv")

LONG_OPTIONS: dict[str, bool] = {
    # name: takes an argument
    "json": False,
    "timeout": True,
    "typed": False,
    "batch": True,
    "max-reply": True,
    "kamcmd-exit": False,
    "fifo": True,
    "fifo-reply-dir": True,
    "raw": False,
    "tls": False,
    "tls-ca": True,
    "tls-cert": True,
    "tls-key": True,
    "tls-server-name": True,
    "tls-insecure": False,
    "help": False,
    "version": False,
}


class Options:
    """The parsed command line (mutable). A plain class rather than a dataclass (importing
    dataclasses costs start-up time); it compares and prints by its fields, like one."""

    __match_args__ = (
        "sockets",
        "format",
        "reply_path",
        "reply_dir",
        "verbose",
        "udp_default",
        "json",
        "timeout",
        "typed",
        "batch",
        "max_reply",
        "kamcmd_exit",
        "fifo",
        "fifo_reply_dir",
        "raw",
        "tls",
        "tls_ca",
        "tls_cert",
        "tls_key",
        "tls_server_name",
        "tls_insecure",
        "words",
    )
    __slots__ = __match_args__

    def __init__(
        self,
        *,
        sockets: list[str] | None = None,
        format: bytes | None = None,
        reply_path: str | None = None,
        reply_dir: str | None = None,
        verbose: int = 0,
        udp_default: bool = False,
        json: bool = False,
        timeout: float | None = None,
        typed: bool = False,
        batch: str | None = None,
        max_reply: int | None = None,
        kamcmd_exit: bool = False,
        fifo: str | None = None,
        fifo_reply_dir: str | None = None,
        raw: bool = False,
        tls: bool = False,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_server_name: str | None = None,
        tls_insecure: bool = False,
        words: list[str] | None = None,
    ) -> None:
        self.sockets: list[str] = [] if sockets is None else sockets
        self.format = format
        self.reply_path = reply_path
        self.reply_dir = reply_dir
        self.verbose = verbose
        self.udp_default = udp_default
        self.json = json
        self.timeout = timeout
        self.typed = typed
        self.batch = batch
        self.max_reply = max_reply
        self.kamcmd_exit = kamcmd_exit
        self.fifo = fifo
        self.fifo_reply_dir = fifo_reply_dir
        self.raw = raw
        self.tls = tls
        self.tls_ca = tls_ca
        self.tls_cert = tls_cert
        self.tls_key = tls_key
        self.tls_server_name = tls_server_name
        self.tls_insecure = tls_insecure
        self.words: list[str] = [] if words is None else words

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._fields() == other._fields()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, like a dataclass

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__match_args__)
        return f"Options({inner})"


class UsageExit(Exception):
    """Stop now: print ``stdout``/``stderr`` and exit with ``status``."""

    def __init__(self, status: int, stdout: str = "", stderr: str = "") -> None:
        super().__init__(status, stdout, stderr)
        self.status = status
        self.stdout = stdout
        self.stderr = stderr


def _unknown(opt: str) -> UsageExit:
    if opt.isprintable() and len(opt) == 1:
        return UsageExit(255, stderr=f"Unknown option `-{opt}'.\n")
    if len(opt) == 1:
        return UsageExit(255, stderr=f"Unknown option character `\\x{ord(opt):x}'.\n")
    return UsageExit(255, stderr=f"Unknown option `{opt}'.\n")


_PLAIN_LONG = frozenset(
    (
        "json",
        "typed",
        "batch",
        "kamcmd-exit",
        "fifo",
        "fifo-reply-dir",
        "raw",
        "tls",
        "tls-insecure",
        "tls-ca",
        "tls-cert",
        "tls-key",
        "tls-server-name",
    )
)
"""Long options stored as they are, under their name with ``_`` for ``-``."""


def _apply(opts: Options, letter: str, value: str | None) -> None:
    if letter == "s":
        assert value is not None
        opts.sockets.append(value)
    elif letter == "f":
        assert value is not None
        from ._render import unescape_format  # only -f needs the renderer

        opts.format = unescape_format(value)
    elif letter == "R":
        opts.reply_path = value
    elif letter == "D":
        opts.reply_dir = value
    elif letter == "v":
        opts.verbose += 1
    elif letter == "U":
        opts.udp_default = True
    elif letter == "h" or letter == "help":
        raise UsageExit(0, stdout=usage_text())
    elif letter == "V" or letter == "version":
        from ._commands import version_text

        raise UsageExit(0, stdout=version_text())
    elif letter in ("t", "timeout"):
        assert value is not None
        from ..client._core import MAX_TIMEOUT, check_seconds  # the library's rule

        try:
            opts.timeout = check_seconds(float(value))
        except ValueError:  # not a number; 0, negative, nan, inf, too big
            raise UsageExit(
                255,
                stderr=f"ERROR: bad timeout {value!r} (seconds > 0 and <= {MAX_TIMEOUT} expected;"
                " without -t there is none)\n",
            ) from None
    elif letter == "max-reply":
        assert value is not None
        try:
            opts.max_reply = int(value)
        except ValueError:
            opts.max_reply = 0
        if opts.max_reply <= 0:
            raise UsageExit(255, stderr=f"ERROR: bad --max-reply {value!r}\n")
    elif letter in _PLAIN_LONG:
        # a flag is set to True, an option with an argument to its text
        setattr(opts, letter.replace("-", "_"), True if value is None else value)


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> Options:
    """Parse ``argv`` (without the program name).

    Raises:
        UsageExit: -h, -V, or a usage error (exit 255): ``Unknown option `-x'.`` (also for a
            short option missing its value, as kamcmd), ``Option `--x' requires an
            argument.``, ``Option `--x' doesn't allow an argument.``
    """
    opts = Options()
    words: list[str] = []
    posix = "POSIXLY_CORRECT" in environ
    i = 0
    n = len(argv)
    while i < n:
        arg = argv[i]
        i += 1
        if arg == "--":
            words.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if name not in LONG_OPTIONS:
                raise _unknown(arg.partition("=")[0])
            # kamcmd has no long options: getopt_long's two messages, in kamcmd's style
            if LONG_OPTIONS[name]:
                if not eq:
                    if i >= n:
                        raise UsageExit(255, stderr=f"Option `--{name}' requires an argument.\n")
                    value = argv[i]
                    i += 1
                _apply(opts, name, value)
            else:
                if eq:
                    raise UsageExit(255, stderr=f"Option `--{name}' doesn't allow an argument.\n")
                _apply(opts, name, None)
            continue
        if len(arg) < 2 or not arg.startswith("-") or (words and looks_numeric(arg)):
            words.append(arg)
            if posix:
                words.extend(argv[i:])
                break
            continue
        j = 1
        while j < len(arg):
            letter = arg[j]
            j += 1
            if letter in _SHORT_WITH_ARG:
                if j < len(arg):
                    value = arg[j:]
                elif i < n:
                    value = argv[i]
                    i += 1
                else:
                    raise _unknown(letter)
                _apply(opts, letter, value)
                break
            if letter in _SHORT_FLAGS:
                _apply(opts, letter, None)
                continue
            raise _unknown(letter)
    opts.words = words
    return opts


def usage_text() -> str:
    """``-h`` / ``--help``."""
    from ._commands import COMPAT_VERSION, PROGRAM, version_text

    first = version_text().splitlines()[0]
    return f"""{first}
Usage: {PROGRAM} [options][-s address] [ cmd ]
Options (as {COMPAT_VERSION}):
    -s address  unix socket name or host name to send the commands on
                (repeat -s to send the same command to several servers at once)
    -R name     force reply socket name, for the unix datagram socket mode
    -D dir      create the reply socket in dir [default: Linux abstract namespace]
    -f format   print the result using format. Format elements:
                  %v  - value
                  %%  - literal %
                (any other %x is printed literally; kamcmd would hang)
    -v          verbose (print a '.' after each command; -vv packet headers, -vvv dumps)
    -U          a bare address without '/' or port means udp (instead of unixs)
    -V          version number
    -h          this help message
Extensions (not in kamcmd):
    -t, --timeout SECONDS  connect and reply timeout for every transport [default: none]
    --json                 print one JSON document per command, whatever its outcome:
                           {{"result": [values]}} or {{"error": {{"kind": K, "message": S,
                           "address": A}}}} (a fault: K is "fault", with "code": N; see
                           docs/client.md for the kinds); a struct is an object whose
                           values are lists of its members (repeated names kept; unnamed
                           values under "")
    --typed                accept typed arguments: i:INT d:DOUBLE b:BYTES s:STRING
    --batch FILE           run the commands of FILE ('-' = stdin), one per line (shell-like
                           quoting, '#' comments), over one connection, replies in order
    --max-reply BYTES      largest reply accepted [default: 64 MiB; kamcmd: 128 KiB]
    --kamcmd-exit          exit 0 after a fault, as kamcmd does
    --fifo ADDR            send the command over the ctl FIFO text protocol instead of
                           binrpc: ADDR as ctl's fifo parameter (/tmp/kamailio_fifo,
                           udp:host:port, tcp:host:port, unixs:/p, unixd:/p); arguments are
                           text lines (name:value,... is a struct line); prints the body
                           lines, or error: <code> - <reason> (exit 1) for a non-2xx status
    --fifo-reply-dir DIR   where the reply FIFO is created [default: /tmp]
    --raw                  with --fifo: print the reply exactly as received
    --tls                  TLS on tcp: addresses (same as writing tls:host:port);
                           the server certificate and name are verified
    --tls-ca FILE          CA certificates (PEM) to verify the server with
                           [default: the system's]
    --tls-cert FILE        client certificate (PEM) for mutual TLS
    --tls-key FILE         its private key [default: in the --tls-cert file]
    --tls-server-name NAME the name the server certificate must carry
                           [default: the host of the address]
    --tls-insecure         INSECURE: do not verify the server's certificate or name
                           (anybody in the path can read and change the traffic)
address:
    [proto:]name[:port]   where proto is one of tcp, tls, udp, unixs or unixd
                          e.g.:  tcp:localhost:2049 , unixs:/tmp/kamailio_ctl,
                          tcp:[::1]:2049 (IPv6)
    default: $BINRPC_SOCKET, else Kamailio's unixs:/var/run/kamailio//kamailio_ctl
cmd:
    method  [arg1 [arg2...]]
arg:
     string or number; to force a number to be interpreted as string
     prefix it by "s:", e.g. s:1. After the method, negative numbers are arguments.
exit status:
    0 success, 1 the server answered with a fault (0 with --kamcmd-exit),
    255 usage, transport or protocol error
interactive mode (no cmd): history in $BINRPC_HISTORY [default: ~/.binrpc_history;
    empty: no history file], tab completion of methods, aliases, builtins, cfg/cnt names
Examples:
        {PROGRAM} -s unixs:/tmp/kamailio_ctl system.listMethods
        {PROGRAM} -f "pid: %v  desc: %v\\n" -s udp:localhost:2047 core.ps
        {PROGRAM} ps  # uses default ctl socket
        {PROGRAM}     # enters interactive mode on the default socket
        {PROGRAM} --json -s tcp:localhost core.uptime
"""
