"""kamcmd's aliases and builtins, and the texts they print. No I/O here.

Resolution order for every command (spec kamcmd 4.3): alias (renames the method and supplies
a format when no ``-f`` was given), then builtin, else an RPC.
"""

from __future__ import annotations

from .. import __version__
from .._frozen import Frozen

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "ALIASES",
    "ALIAS_BY_NAME",
    "BUILTINS",
    "BUILTIN_DOCS",
    "COMPAT_VERSION",
    "Alias",
    "alias_help",
    "find_alias",
    "license_text",
    "version_text",
]

COMPAT_VERSION: Final = "kamcmd 1.5"


class Alias(Frozen):
    """An alias: its name, the method it calls, and the default format (``-f``) it supplies."""

    __match_args__ = ("name", "method", "format")
    __slots__ = __match_args__
    name: str
    method: str
    format: str | None  # with real control characters (TAB, LF)

    def __init__(self, name: str, method: str, format: str | None) -> None:
        super().__init__(name, method, format)


ALIASES: Final[tuple[Alias, ...]] = (
    Alias("ps", "core.ps", "%v\t%v\n"),
    Alias("psx", "core.psx", None),
    Alias("list", "system.listMethods", None),
    Alias("ls", "system.listMethods", None),
    Alias("ver", "core.version", None),
    Alias("version", "core.version", None),
    Alias("who", "ctl.who", "[%v] %v: %v %v -> %v %v\n"),
    Alias("listen", "ctl.listen", "[%v] %v: %v %v\n"),
    Alias("dns_mem_info", "dns.mem_info", "%v / %v\n"),
    Alias("dns_debug", "dns.debug", "%v (%v): size=%v ref=%v expire=%vs last=%vs ago f=%v\n"),
    Alias(
        "dns_debug_all",
        "dns.debug_all",
        "%v (%v) [%v]: size=%v ref=%v expire=%vs last=%vs ago f=%v\n\t\t%v:%v expire=%vs f=%v\n",
    ),
    # kamcmd 1.5 (Kamailio <= 5.6) names; the server methods were renamed to dst_blocklist.*
    # in 5.6 already, so kamcmd's own aliases fail there. Both spellings reach the new methods.
    Alias("dst_blacklist_mem_info", "dst_blocklist.mem_info", "%v / %v\n"),
    Alias("dst_blacklist_debug", "dst_blocklist.debug", "%v:%v:%v expire:%v flags: %v\n"),
    # kamcmd >= 5.7 names (listed after the 1.5 table, so `help` keeps kamcmd 1.5's order)
    Alias("dst_blocklist_mem_info", "dst_blocklist.mem_info", "%v / %v\n"),
    Alias("dst_blocklist_debug", "dst_blocklist.debug", "%v:%v:%v expire:%v flags: %v\n"),
)

ALIAS_BY_NAME: Final = {a.name: a for a in ALIASES}

BUILTINS: Final[tuple[str, ...]] = ("?", "help", "version", "quit", "exit", "warranty", "license")

BUILTIN_DOCS: Final[dict[str, str]] = {
    "?": "help",
    "help": "displays help for a command",
    "version": "displays kamcmdversion",
    "quit": "exits kamcmd",
    "exit": "exits kamcmd",
    "warranty": "displays kamcmd's warranty info",
    "license": "displays kamcmd's license",
}


def find_alias(name: str) -> Alias | None:
    return ALIAS_BY_NAME.get(name)


def alias_help(alias: Alias) -> str:
    """``help <alias>``: the line kamcmd prints (control characters written back as escapes)."""
    text = f"{alias.name} is an alias for {alias.method}"
    if alias.format is not None:
        fmt = alias.format.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        text += f' with reply formatting: "{fmt}"'
    return text + "\n"


def version_text(program: str) -> str:
    """``-V``: two lines, like kamcmd's (``version: <name> <version>`` first); ``program``
    is the program's name (:attr:`~binrpc.cli._options.Options.program`)."""
    return f"version: {program} {__version__}\n{program}: a {COMPAT_VERSION} compatible client\n"


def banner(program: str) -> str:
    """The interactive banner of ``program``: four lines, shaped like kamcmd's."""
    return (
        f"{program} {__version__} ({COMPAT_VERSION} compatible)\n"
        "Copyright (c) the binrpc contributors\n"
        "This is free software with ABSOLUTELY NO WARRANTY.\n"
        "For details type `warranty'.\n"
    )


def license_text(program: str) -> str:
    """``warranty`` / ``license``: binrpc's own licence (MIT), not kamcmd's GPL notice."""
    return (
        f"{program} {__version__}\n"
        "Copyright (c) the binrpc contributors\n"
        "\n"
        "Permission is hereby granted, free of charge, to any person obtaining a copy of this\n"
        'software and associated documentation files (the "Software"), to deal in the Software\n'
        "without restriction, subject to the conditions of the MIT License.\n"
        "\n"
        'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,\n'
        "INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A\n"
        "PARTICULAR PURPOSE AND NONINFRINGEMENT.\n"
    )
