"""Fuzz target for binrpcd's TOML configuration (``binrpcd --config FILE``).

The daemon turns a file into options with :func:`binrpc.cli.daemon.options_from` (argparse
namespace -> ``_read_config`` -> values -> :class:`~binrpc.server.ServerOptions`). It is not
callable on a string: it reads ``args.config`` from disk. So each input is written to one
scratch file (in /dev/shm when there is one) and the real function reads it; no socket is
opened and no module is imported (``modules`` are only listed, never loaded).

Then the start-up steps that use the values before any socket exists are replayed, exactly
as the server does them: every ``binrpc``/``fifo`` address is parsed
(:func:`binrpc.parse_address`), ``user``/``group`` are resolved
(:func:`binrpc.server._sockets.resolve_ids`), and ``mode``/owner are applied with
``os.chmod``/``os.chown`` to a scratch file (the server catches OSError there).

Invariant: the file gives options, or one of the errors binrpcd reports cleanly as
``binrpcd: error: ...`` (ConfigError, AddressError, ListenerError, or OSError from
chmod/chown, which the server turns into ListenerError). Anything else would be a traceback
at start-up.

Known bugs (tests/hardening/test_parsers.py, xfail) are tolerated unless ``--strict``: invalid
UTF-8 (UnicodeDecodeError), deep nesting (RecursionError), ``inf`` or huge integers
(OverflowError), NUL in user/group names or ports (ValueError), a mode outside 0..0o7777
(ModeOutOfRange).

    .venv/bin/python fuzz/config_target.py --runs 1000000 --seed 1
    .venv/bin/python fuzz/config_target.py --atheris -runs=1000000
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
from pathlib import Path

from binrpc import AddressError, parse_address
from binrpc.cli.daemon import ConfigError, build_parser, options_from
from binrpc.server import Listen, ListenerError, ServerOptions
from binrpc.server._sockets import resolve_ids

_PARSER = build_parser()
_SCRATCH: dict[str, str] = {}


def _scratch() -> tuple[str, str]:
    if not _SCRATCH:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        directory = tempfile.mkdtemp(prefix="binrpc-fuzz-config-", dir=base)
        _SCRATCH["config"] = os.path.join(directory, "binrpcd.toml")
        _SCRATCH["target"] = os.path.join(directory, "socket-stand-in")
        Path(_SCRATCH["target"]).touch()
    return _SCRATCH["config"], _SCRATCH["target"]


def load(data: bytes) -> tuple[list[str | Listen], ServerOptions, list[str]]:
    """The real options_from on ``data`` written as the config file."""
    config, _ = _scratch()
    with open(config, "wb") as fh:
        fh.write(data)
    return options_from(_PARSER.parse_args(["--config", config]))


def start_up(addresses: list[str | Listen], options: ServerOptions) -> None:
    """What the server does with the values before it opens a socket."""
    for item in addresses:
        parse_address(item if isinstance(item, str) else item.address, "binrpc")
    for item in options.fifo:
        parse_address(item if isinstance(item, str) else item.address, "fifo")
    uid, gid = resolve_ids(options.user, options.group)
    _, target = _scratch()
    if options.mode:
        os.chmod(target, options.mode)
    if uid != -1 or gid != -1:
        os.chown(target, uid, gid)
    if not 0 <= options.mode <= 0o7777:
        raise ModeOutOfRange(
            f"mode {options.mode} accepted (chmod makes it {options.mode & 0o7777:o})"
        )
    assert options.max_connections >= 1
    for timeout in (options.idle_timeout, options.write_timeout):
        assert timeout is None or timeout > 0, timeout


class ModeOutOfRange(Exception):
    """Known bug: a mode outside 0..0o7777 (``mode = -1``) is accepted; chmod then gives the
    socket 07777 (world-writable, setuid, setgid, sticky)."""


CLEAN = (ConfigError, AddressError, ListenerError, OSError)


def _known(exc: BaseException) -> bool:
    if isinstance(exc, UnicodeDecodeError | RecursionError | OverflowError | ModeOutOfRange):
        return True
    return isinstance(exc, ValueError) and (
        "embedded null" in str(exc) or "surrogates not allowed" in str(exc)
    )


def check(data: bytes, known_bugs: bool = True) -> None:
    """Load ``data`` as binrpcd's config; AssertionError on an unclean failure."""
    try:
        addresses, options, modules = load(data)
        assert all(isinstance(m, str) for m in modules)
        start_up(addresses, options)
    except AssertionError:
        raise
    except CLEAN:
        return
    except Exception as exc:
        if known_bugs and _known(exc):
            return
        raise AssertionError(f"{type(exc).__name__}: {exc} on input {data!r}") from exc


def check_strict(data: bytes) -> None:
    check(data, known_bugs=False)


SEEDS = [
    b'binrpc = ["unixs:/tmp/binrpc-fuzz.sock", "tcp:127.0.0.1:2049"]\nmode = "0660"\n'
    b'group = "nogroup"\nbinrpc-max-body-size = 64\nwrite_timeout = 10\n'
    b'modules = ["myapp.rpcs"]\n',
    b'[binrpcd]\nbinrpc = "udp:*:2050"\nmode = 0o600\nuser = 1\ngroup = 1\n'
    b"autoconversion = true\nidle-timeout = 0.5\nmax_connections = 16\n",
    b'fifo = ["/tmp/ser_fifo", "udp:127.0.0.1:2051"]\nbuiltins = false\n'
    b'binrpc_buffer_size = "1024"\nbinrpc_struct_max_body_size = -1\nno_builtins = 1\n',
    b'mode = "0o640"\nuser = "nobody"\nwrite-timeout = "off"\nidle_timeout = "none"\n'
    b"binrpc = []\nmodule = 'x'\nverbose = 2\n",
    b'[other]\nx = 1\n[binrpcd]\nautoconversion = "yes"\nmax-connections = 1_000\n',
]

TOKENS = [b"=", b"\n", b"[binrpcd]", b'"', b"'", b'"""', b"[", b"]", b"{", b"}", b",", b"#",
          b"binrpc", b"fifo", b"mode", b"user", b"group", b"autoconversion",
          b"binrpc_buffer_size", b"binrpc-max-body-size", b"binrpc_struct_max_body_size",
          b"max_connections", b"idle_timeout", b"write-timeout", b"builtins", b"no_builtins",
          b"modules", b"module", b"config", b"verbose", b"inf", b"-inf", b"nan", b"true",
          b"false", b"0o777", b"0x7fffffff", b"99999999999999999999", b"-1", b"1e308",
          b"1979-05-27T07:32:00Z", b"\\u0000", b"\\n", b"\xff", b"0600", b"tcp:", b"unixs:/tmp/",
          b"nobody", b"root"]  # fmt: skip


_KEYS = ["binrpc", "fifo", "mode", "user", "group", "autoconversion", "binrpc_buffer_size",
         "binrpc_max_body_size", "binrpc_struct_max_body_size", "max_connections",
         "idle_timeout", "write_timeout", "builtins", "no_builtins", "modules", "module",
         "config", "verbose", "binrpcd", "unknown_key"]  # fmt: skip
_VALUES = [r'"0600"', "0o600", "384", "0", "-1", "inf", "-inf", "nan", "1e308", "1.5", "-0.0",
           "99999999999999999999", "9223372036854775807", "-9223372036854775808", "true",
           "false", r'"yes"', r'"off"', r'"none"', r'""', r'"x"', "[]", "[1, 2]", "[[1]]",
           "{a = 1}", "1979-05-27", "07:32:00", r'"\u0000"', r'"a\u0000b"', r'"nobody"',
           r'"nogroup"', r'"root"', r'"65534"', r'"0o7777"', r'"0x10"', r'"1_0"', r'" 7 "',
           "'''a\nb'''", r'"unixs:/tmp/binrpc-fuzz.sock"',
           r'["tcp:127.0.0.1:2049", "udp:[::1]:5"]', r'"tcp:127.0.0.1:a\u0000"', r'"foo:/x"',
           r'"/tmp/ser_fifo"', r'"\u00e9"', '"' + "x" * 300 + '"', "[" * 40 + "]" * 40,
           "0x7fffffff", "1e-300", r'"unixs:/tmp/\u00ff"']  # fmt: skip


def generate(rng: random.Random) -> bytes:
    """A config made of known keys (dashes or underscores) with edge-case values."""
    lines = []
    if rng.random() < 0.3:
        lines.append("[binrpcd]")
    for _ in range(rng.randint(0, 6)):
        key = rng.choice(_KEYS)
        if rng.random() < 0.5:
            key = key.replace("_", "-")
        value = rng.choice(_VALUES)
        if rng.random() < 0.15:
            value = str(rng.randint(-(2**70), 2**70))
        elif rng.random() < 0.1:
            value = repr(rng.random() * 10 ** rng.randint(-5, 300))
        lines.append(f"{key} = {value}")
    return "\n".join(lines).encode()


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from fuzz._harness import main as harness_main

    strict = "--strict" in sys.argv
    if strict:
        sys.argv.remove("--strict")
    target = check_strict if strict else check
    sys.exit(harness_main("config", target, SEEDS, TOKENS, generate=generate))


if __name__ == "__main__":
    main()
