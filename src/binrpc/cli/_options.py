"""Command-line parsing for ``binrpc``: kamcmd 1.5's GNU ``getopt`` behaviour plus long options
for the extensions. No I/O here.

Like GNU getopt (spec kamcmd 1.2) options are recognised anywhere (argv is permuted), clusters
and attached arguments work (``-vf'%v'``, ``-sunixs:/x``), ``--`` ends the options, and
``POSIXLY_CORRECT`` stops at the first non-option word. ``-h`` and ``-V`` act when they are
met. Deviation (issue #4): once the method has been seen, a word that kamcmd would send as a
number (``-5``, ``-1.5``, ``-0x10``) is an argument, not an option.

Every option is declared once, as an :func:`option` in the body of :class:`Options`: its
letter and long name, its argument, its ``-h`` text and how its value is stored. The parser,
``-h`` and the :class:`Options` fields are all derived from that table (:data:`OPTIONS`).
"""

from __future__ import annotations

from ._argtype import looks_numeric

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = [
    "DEFAULT_PROGRAM",
    "LONG_OPTIONS",
    "OPTIONS",
    "Option",
    "Options",
    "UsageExit",
    "parse_args",
    "usage_text",
]

DEFAULT_PROGRAM = "binrpc"
"""The name ``-h``, ``-V``, the banner and the licence text give the program."""

KAMCMD = "kamcmd"
"""The section of kamcmd's own options: ``-h`` shows them as kamcmd does (letter only)."""
EXTENSIONS = "extensions"
"""The section of binrpc's extensions: ``-h`` shows the letter (if any) and the long name."""

# how an option stores its value in its field
SET = "set"  # the (converted) argument; True for an option without argument
APPEND = "append"  # the argument, appended to a list (repeatable)
COUNT = "count"  # the number of times it was given
EXIT = "exit"  # no field: print a text (-h, -V) and exit 0 when met


class UsageExit(Exception):
    """Stop now: print ``stdout``/``stderr`` and exit with ``status``."""

    def __init__(self, status: int, stdout: str = "", stderr: str = "") -> None:
        super().__init__(status, stdout, stderr)
        self.status = status
        self.stdout = stdout
        self.stderr = stderr


class Option:
    """One command-line option (an entry of :data:`OPTIONS`).

    Attributes:
        short: its letter (``""``: none).
        long: its long name, without ``--`` (``""``: none).
        metavar: the name of its argument in ``-h`` (``""``: it takes none).
        help: its ``-h`` text; the lines after the first are indented under it.
        section: :data:`KAMCMD` or :data:`EXTENSIONS` (where and how ``-h`` shows it).
        store: :data:`SET`, :data:`APPEND`, :data:`COUNT` or :data:`EXIT`.
        convert: turns the argument into the value stored (raises :class:`UsageExit`); None
            stores the text.
        exits: for :data:`EXIT`: the program name -> the text printed.
        name: the :class:`Options` field (the attribute it is declared as; ``""`` for EXIT).
    """

    __slots__ = ("convert", "exits", "help", "long", "metavar", "name", "section", "short", "store")

    def __init__(
        self,
        *,
        short: str,
        long: str,
        metavar: str,
        help: str,
        section: str,
        store: str,
        convert: Callable[[str], object] | None,
        exits: Callable[[str], str] | None,
    ) -> None:
        self.short = short
        self.long = long
        self.metavar = metavar
        self.help = help
        self.section = section
        self.store = store
        self.convert = convert
        self.exits = exits
        self.name = ""

    def default(self) -> object:
        """The field's value when the option is not given (a new list for APPEND)."""
        if self.store == APPEND:
            return []
        if self.store == COUNT:
            return 0
        return None if self.metavar else False

    def __repr__(self) -> str:
        return f"Option({self.name or self.short or self.long!r})"


def option(
    short: str = "",
    long: str = "",
    *,
    help: str,
    metavar: str = "",
    section: str = EXTENSIONS,
    store: str = SET,
    convert: Callable[[str], object] | None = None,
    exits: Callable[[str], str] | None = None,
) -> Any:
    """Declare an option in the body of :class:`Options` (see :class:`Option`). Typed Any so
    that the field's annotation gives the type of its value."""
    if exits is not None:
        store = EXIT
    return Option(
        short=short,
        long=long,
        metavar=metavar,
        help=help,
        section=section,
        store=store,
        convert=convert,
        exits=exits,
    )


def _option_table(cls: type[Options]) -> type[Options]:
    """Collect the :func:`option` entries of the class body, in order, into ``OPTIONS``; the
    named ones are the fields (their class attributes are removed: the instance holds the
    values)."""
    table: list[Option] = []
    for attr, value in list(vars(cls).items()):
        if isinstance(value, Option):
            if value.store != EXIT:
                value.name = attr
            table.append(value)
            delattr(cls, attr)
    cls.OPTIONS = tuple(table)
    cls.FIELDS = (*(o.name for o in table if o.name), "words", "program")
    return cls


# -- converters (the only options whose argument is checked) ---------------------------------


def _format(value: str) -> bytes:
    from ._render import unescape_format  # only -f needs the renderer

    return unescape_format(value)


def _timeout(value: str) -> float | None:
    from ..client._core import MAX_TIMEOUT, check_seconds  # the library's rule

    try:
        return check_seconds(float(value))
    except ValueError:  # not a number; 0, negative, nan, inf, too big
        raise UsageExit(
            255,
            stderr=f"ERROR: bad timeout {value!r} (seconds > 0 and <= {MAX_TIMEOUT} expected;"
            " without -t there is none)\n",
        ) from None


def _max_reply(value: str) -> int:
    try:
        size = int(value)
    except ValueError:
        size = 0
    if size <= 0:
        raise UsageExit(255, stderr=f"ERROR: bad --max-reply {value!r}\n")
    return size


def _version_text(program: str) -> str:
    from ._commands import version_text

    return version_text(program)


def _usage_text(program: str) -> str:
    return usage_text(program)  # defined below: it renders the table


# -- the table -------------------------------------------------------------------------------


@_option_table
class Options:
    """The parsed command line (mutable): a field per option of the table below, plus
    ``words`` (the method and its arguments) and ``program`` (the name the texts give the
    program). A plain class rather than a dataclass (importing dataclasses costs start-up
    time); it compares and prints by its fields, like one."""

    OPTIONS: tuple[Option, ...]
    """The table, in ``-h`` order (filled from the class body by :func:`_option_table`)."""
    FIELDS: tuple[str, ...]
    """The names of the fields, in order: the options', then ``words`` and ``program``."""

    # kamcmd's options, in kamcmd's order
    sockets: list[str] = option(
        "s",
        metavar="address",
        section=KAMCMD,
        store=APPEND,
        help="unix socket name or host name to send the commands on\n"
        "(repeat -s to send the same command to several servers at once)",
    )
    reply_path: str | None = option(
        "R",
        metavar="name",
        section=KAMCMD,
        help="force reply socket name, for the unix datagram socket mode",
    )
    reply_dir: str | None = option(
        "D",
        metavar="dir",
        section=KAMCMD,
        help="create the reply socket in dir [default: Linux abstract namespace]",
    )
    format: bytes | None = option(
        "f",
        metavar="format",
        section=KAMCMD,
        convert=_format,
        help="print the result using format. Format elements:\n"
        "  %v  - value\n"
        "  %%  - literal %\n"
        "(any other %x is printed literally; kamcmd would hang)",
    )
    verbose: int = option(
        "v",
        section=KAMCMD,
        store=COUNT,
        help="verbose (print a '.' after each command; -vv packet headers, -vvv dumps)",
    )
    udp_default: bool = option(
        "U",
        section=KAMCMD,
        help="a bare address without '/' or port means udp (instead of unixs)",
    )
    _show_version = option(
        "V", "version", section=KAMCMD, exits=_version_text, help="version number"
    )
    _show_help = option("h", "help", section=KAMCMD, exits=_usage_text, help="this help message")

    # the extensions
    timeout: float | None = option(
        "t",
        "timeout",
        metavar="SECONDS",
        convert=_timeout,
        help="connect and reply timeout for every transport [default: none]",
    )
    json: bool = option(
        long="json",
        help="print one JSON document per command, whatever its outcome:\n"
        '{"result": [values]} or {"error": {"kind": K, "message": S,\n'
        '"address": A}} (a fault: K is "fault", with "code": N; see\n'
        "docs/client.md for the kinds); a struct is an object whose\n"
        "values are lists of its members (repeated names kept; unnamed\n"
        'values under "")',
    )
    typed: bool = option(
        long="typed", help="accept typed arguments: i:INT d:DOUBLE b:BYTES s:STRING"
    )
    batch: str | None = option(
        long="batch",
        metavar="FILE",
        help="run the commands of FILE ('-' = stdin), one per line (shell-like\n"
        "quoting, '#' comments), over one connection, replies in order",
    )
    max_reply: int | None = option(
        long="max-reply",
        metavar="BYTES",
        convert=_max_reply,
        help="largest reply accepted [default: 64 MiB; kamcmd: 128 KiB]",
    )
    kamcmd_exit: bool = option(long="kamcmd-exit", help="exit 0 after a fault, as kamcmd does")
    fifo: str | None = option(
        long="fifo",
        metavar="ADDR",
        help="send the command over the ctl FIFO text protocol instead of\n"
        "binrpc: ADDR as ctl's fifo parameter (/tmp/kamailio_fifo,\n"
        "udp:host:port, tcp:host:port, unixs:/p, unixd:/p); arguments are\n"
        "text lines (name:value,... is a struct line); prints the body\n"
        "lines, or error: <code> - <reason> (exit 1) for a non-2xx status",
    )
    fifo_reply_dir: str | None = option(
        long="fifo-reply-dir",
        metavar="DIR",
        help="where the reply FIFO is created [default: /tmp]",
    )
    raw: bool = option(long="raw", help="with --fifo: print the reply exactly as received")
    tls: bool = option(
        long="tls",
        help="TLS on tcp: addresses (same as writing tls:host:port);\n"
        "the server certificate and name are verified",
    )
    tls_ca: str | None = option(
        long="tls-ca",
        metavar="FILE",
        help="CA certificates (PEM) to verify the server with\n[default: the system's]",
    )
    tls_cert: str | None = option(
        long="tls-cert", metavar="FILE", help="client certificate (PEM) for mutual TLS"
    )
    tls_key: str | None = option(
        long="tls-key", metavar="FILE", help="its private key [default: in the --tls-cert file]"
    )
    tls_server_name: str | None = option(
        long="tls-server-name",
        metavar="NAME",
        help="the name the server certificate must carry\n[default: the host of the address]",
    )
    tls_insecure: bool = option(
        long="tls-insecure",
        help="INSECURE: do not verify the server's certificate or name\n"
        "(anybody in the path can read and change the traffic)",
    )

    # not options
    words: list[str]
    """The method and its arguments (the words that are not options)."""
    program: str
    """The program's name in the texts it prints (``-h``, ``-V``, the banner, ``license``)."""

    def __init__(self, **values: Any) -> None:
        """Every field at its default, except ``values`` (unknown names raise TypeError)."""
        for opt in self.OPTIONS:
            if opt.name:
                setattr(self, opt.name, opt.default())
        self.words = []
        self.program = DEFAULT_PROGRAM
        for name, value in values.items():
            if name not in self.FIELDS:
                raise TypeError(f"Options() got an unexpected keyword argument {name!r}")
            setattr(self, name, value)

    def _fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._fields() == other._fields()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, like a dataclass

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.FIELDS)
        return f"Options({inner})"


OPTIONS = Options.OPTIONS
_BY_LETTER = {o.short: o for o in OPTIONS if o.short}
_BY_NAME = {o.long: o for o in OPTIONS if o.long}
LONG_OPTIONS: dict[str, bool] = {o.long: bool(o.metavar) for o in OPTIONS if o.long}
"""Long option name -> whether it takes an argument."""


# -- parsing ---------------------------------------------------------------------------------


def _unknown(opt: str) -> UsageExit:
    if opt.isprintable() and len(opt) == 1:
        return UsageExit(255, stderr=f"Unknown option `-{opt}'.\n")
    if len(opt) == 1:
        return UsageExit(255, stderr=f"Unknown option character `\\x{ord(opt):x}'.\n")
    return UsageExit(255, stderr=f"Unknown option `{opt}'.\n")


def _apply(opts: Options, opt: Option, value: str | None) -> None:
    """Store ``opt`` (given with the argument ``value``, None for an option without one)."""
    if opt.exits is not None:
        raise UsageExit(0, stdout=opt.exits(opts.program))
    if opt.store == COUNT:
        setattr(opts, opt.name, getattr(opts, opt.name) + 1)
        return
    stored: object = True if value is None else value
    if value is not None and opt.convert is not None:
        stored = opt.convert(value)
    if opt.store == APPEND:
        getattr(opts, opt.name).append(stored)
    else:
        setattr(opts, opt.name, stored)


def parse_args(
    argv: Sequence[str], environ: Mapping[str, str], *, program: str = DEFAULT_PROGRAM
) -> Options:
    """Parse ``argv`` (without the program name); ``program`` names the program in ``-h``
    and ``-V`` and is kept in :attr:`Options.program`.

    Raises:
        UsageExit: -h, -V, or a usage error (exit 255): ``Unknown option `-x'.`` (also for a
            short option missing its value, as kamcmd), ``Option `--x' requires an
            argument.``, ``Option `--x' doesn't allow an argument.``
    """
    opts = Options(program=program)
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
            i = _long_option(opts, arg, argv, i)
            continue
        if len(arg) < 2 or not arg.startswith("-") or (words and looks_numeric(arg)):
            words.append(arg)
            if posix:
                words.extend(argv[i:])
                break
            continue
        i = _short_options(opts, arg, argv, i)
    opts.words = words
    return opts


def _long_option(opts: Options, arg: str, argv: Sequence[str], i: int) -> int:
    """Apply ``--name[=value]`` (its value may be ``argv[i]``); return the index after it."""
    name, eq, value = arg[2:].partition("=")
    opt = _BY_NAME.get(name)
    if opt is None:
        raise _unknown(arg.partition("=")[0])
    # kamcmd has no long options: getopt_long's two messages, in kamcmd's style
    if opt.metavar:
        if not eq:
            if i >= len(argv):
                raise UsageExit(255, stderr=f"Option `--{name}' requires an argument.\n")
            value = argv[i]
            i += 1
        _apply(opts, opt, value)
    else:
        if eq:
            raise UsageExit(255, stderr=f"Option `--{name}' doesn't allow an argument.\n")
        _apply(opts, opt, None)
    return i


def _short_options(opts: Options, arg: str, argv: Sequence[str], i: int) -> int:
    """Apply ``-abc`` / ``-xVALUE`` / ``-x VALUE`` (``argv[i]``); return the index after it."""
    j = 1
    while j < len(arg):
        letter = arg[j]
        j += 1
        opt = _BY_LETTER.get(letter)
        if opt is None:
            raise _unknown(letter)
        if not opt.metavar:
            _apply(opts, opt, None)
            continue
        if j < len(arg):
            value = arg[j:]
        elif i < len(argv):
            value = argv[i]
            i += 1
        else:
            raise _unknown(letter)
        _apply(opts, opt, value)
        break
    return i


# -- -h --------------------------------------------------------------------------------------

_HEAD_WIDTH = {KAMCMD: 10, EXTENSIONS: 22}
"""Width of the option column of each section (its longest entry), then the gap below."""
_GAP = {KAMCMD: 2, EXTENSIONS: 1}


def option_head(opt: Option) -> str:
    """How ``-h`` names ``opt``: kamcmd's options by their letter (``-s address``), the
    extensions by letter and long name (``-t, --timeout SECONDS``)."""
    if opt.section == KAMCMD:
        names = [f"-{opt.short}"]
    else:
        names = [f"-{o}" for o in (opt.short,) if o] + [f"--{o}" for o in (opt.long,) if o]
    head = ", ".join(names)
    return f"{head} {opt.metavar}" if opt.metavar else head


def _section(section: str) -> str:
    width = _HEAD_WIDTH[section]
    indent = " " * (4 + width + _GAP[section])
    lines = []
    for opt in OPTIONS:
        if opt.section == section:
            first, *rest = opt.help.split("\n")
            lines.append(f"    {option_head(opt):<{width}}{' ' * _GAP[section]}{first}\n")
            lines.extend(f"{indent}{line}\n" for line in rest)
    return "".join(lines)


def usage_text(program: str = DEFAULT_PROGRAM) -> str:
    """``-h`` / ``--help``."""
    from ._commands import COMPAT_VERSION, version_text

    first = version_text(program).splitlines()[0]
    return (
        f"{first}\n"
        f"Usage: {program} [options][-s address] [ cmd ]\n"
        f"Options (as {COMPAT_VERSION}):\n"
        f"{_section(KAMCMD)}"
        "Extensions (not in kamcmd):\n"
        f"{_section(EXTENSIONS)}"
        f"""address:
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
        {program} -s unixs:/tmp/kamailio_ctl system.listMethods
        {program} -f "pid: %v  desc: %v\\n" -s udp:localhost:2047 core.ps
        {program} ps  # uses default ctl socket
        {program}     # enters interactive mode on the default socket
        {program} --json -s tcp:localhost core.uptime
"""
    )
