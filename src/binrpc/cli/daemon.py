"""``binrpcd``: run a binrpc (Kamailio ctl) server in the foreground.

Flags are named after the ctl module parameters (``--binrpc``, ``--fifo``, ``--mode``,
``--user``, ``--group``, ``--autoconversion``, ``--binrpc-buffer-size``,
``--binrpc-max-body-size``, ``--binrpc-struct-max-body-size``) plus the settings ctl lacks or
hard-codes (``--max-connections``, ``--idle-timeout``, ``--write-timeout``,
``--request-timeout``, ``--call-timeout``, ``--max-pending-per-connection``,
``--fifo-reply-dir``, ``--fifo-reply-timeout``). ``--config FILE`` reads the
same settings from TOML (keys with underscores or dashes); flags win over the file.

``--module NAME`` (repeatable) imports a Python module (or a ``.py`` file) and registers its
RPCs. Dotted names are looked up as ``python -m`` does: in the working directory first
(``binrpcd --module myapp.rpcs`` from the folder that holds ``myapp/``; not with
``PYTHONSAFEPATH``), then in the ``--module-path DIR`` directories, then on ``sys.path``.
The module must define at least one of:

* ``rpcs``: a :class:`binrpc.server.Registry` whose methods are all served;
* ``register(registry)``: a function called with the daemon's registry.

Example module::

    from binrpc.server import Registry

    rpcs = Registry()

    @rpcs.rpc("demo.add")
    def add(a: int, b: int = 0) -> int:
        "Add two integers."
        return a + b

``--loop auto|asyncio|uvloop`` chooses the event loop: ``auto`` (the default) runs on uvloop
when it is installed (``pip install binrpc[uvloop]``; about 2 us less CPU per request), else on
asyncio's default loop. The loop in use is printed on stderr at start-up
(``binrpcd: event loop uvloop 0.19.0``).

The daemon logs to stderr, prints one ``listening on <address>`` line per listener on stdout
once it is ready (``listening on fifo:/tmp/ser_fifo`` for a FIFO file, ``listening on
udp:*:2050 (fifo)`` for the FIFO protocol over a socket), and exits 0 after SIGTERM, SIGINT or
SIGQUIT (listeners closed, socket and FIFO files removed, pending replies sent) or
``core.kill``. SIGHUP, SIGUSR1 and SIGUSR2 are logged and ignored.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import logging
import os
import signal
import sys
import tomllib
from collections.abc import Callable, Sequence
from typing import Any

from .._address import AddressError, parse_address
from .._rpc import Registry
from ..server import Listen, ListenerError, ServerOptions, serve
from ..server._sockets import MAX_ID

__all__ = ["build_parser", "load_module", "main", "options_from"]

log = logging.getLogger("binrpcd")

# setting name -> converter (names as in ServerOptions / TOML keys)
_INT_SETTINGS = (
    "binrpc_buffer_size",
    "binrpc_max_body_size",
    "binrpc_struct_max_body_size",
    "max_connections",
    "max_pending_per_connection",
)
_FLOAT_SETTINGS = ("idle_timeout", "write_timeout", "request_timeout", "call_timeout")
_STR_SETTINGS = ("fifo_reply_dir",)


LOOPS = ("auto", "asyncio", "uvloop")


class ConfigError(Exception):
    """A bad flag value or configuration file."""


def _mode(text: Any) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        mode = text
    else:
        s = str(text).strip().lower()
        try:
            mode = int(s[2:] if s.startswith("0o") else s, 8)
        except ValueError:
            raise ConfigError(f"bad mode {text!r}: expected octal digits like 0600") from None
    if not 0 <= mode <= 0o7777:  # chmod would mask it: -1 is 07777, world-writable
        shown = f"{text!r}" if isinstance(text, str) else f"{mode} ({oct(mode)})"
        raise ConfigError(f"bad mode {shown}: expected 0 to 7777 (octal)")
    return mode


def _owner(key: str, value: Any) -> str | int:
    """A ``user``/``group`` setting: a name or an id from 0 to 2**32 - 2, kept as given."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{key}: expected a name or an id, got {value!r}")
    if isinstance(value, str):
        if "\0" in value:
            raise ConfigError(f"{key}: bad name {value!r}")
        digits = value[1:] if value.startswith("-") else value
        if not (digits.isascii() and digits.isdigit()):
            return value  # a name, resolved at start-up
    if not 0 <= int(value) <= MAX_ID:
        raise ConfigError(f"{key}: bad id {value!r}: expected 0 to {MAX_ID}")
    return value


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    s = str(value).strip().lower()
    if s in ("1", "yes", "true", "on"):
        return True
    if s in ("0", "no", "false", "off", ""):
        return False
    raise ConfigError(f"bad boolean {value!r}")


def _timeout(key: str, value: Any) -> float | None:
    """A timeout setting: seconds > 0, or 0 / ``off`` / ``none`` for no limit."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("", "none", "off", "0"):
        return None
    bad = ConfigError(f"{key}: bad timeout {value!r}: expected seconds > 0 (0 or off: none)")
    if isinstance(value, bool):
        raise bad
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond 1e308
        raise bad from None
    if not number >= 0:  # NaN would silently turn the timeout off; -1 is a typo, not "off"
        raise bad
    return number if number > 0 else None


def _int(key: str, value: Any) -> int:
    """An integer setting: an int, or a string of decimal digits (a flag)."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected an integer, got {value!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="binrpcd",
        description="Serve RPCs over Kamailio's binrpc (ctl) protocol; kamcmd-compatible.",
    )
    p.add_argument(
        "--binrpc",
        action="append",
        metavar="ADDR",
        help="binrpc listener, e.g. unixs:/run/x.sock, tcp:127.0.0.1:2049, "
        "udp:*:2049, tcp:[::1]:2046 (repeatable)",
    )
    p.add_argument(
        "--fifo",
        action="append",
        metavar="ADDR",
        help="FIFO text-protocol listener: a FIFO file (/tmp/ser_fifo, fifo:/tmp/ser_fifo, "
        "a bare name relative to the working directory), udp:*:2050, tcp:127.0.0.1:2050, "
        "unixs:/path, unixd:/path; host:port means udp (repeatable)",
    )
    p.add_argument(
        "--fifo-reply-dir",
        metavar="DIR",
        help="directory of the reply FIFOs named in FIFO-file requests (/tmp)",
    )
    p.add_argument(
        "--fifo-reply-timeout",
        metavar="SECONDS",
        help="give up a reply to a reply FIFO whose reader does not read (5)",
    )
    p.add_argument(
        "--mode", help="permissions of unix socket files and FIFOs, octal (default 0600)"
    )
    p.add_argument("--user", help="owner of unix socket files and FIFOs (name or uid)")
    p.add_argument("--group", help="group of unix socket files and FIFOs (name or gid)")
    p.add_argument(
        "--autoconversion",
        nargs="?",
        const="1",
        metavar="0|1",
        help="convert parameters to the types RPCs ask for",
    )
    p.add_argument("--binrpc-buffer-size", metavar="BYTES", help="printf scratch (1024)")
    p.add_argument("--binrpc-max-body-size", metavar="KIB", help="top-level reply (32)")
    p.add_argument("--binrpc-struct-max-body-size", metavar="KIB", help="per struct (8)")
    p.add_argument("--max-connections", metavar="N", help="open stream connections (128)")
    p.add_argument("--idle-timeout", metavar="SECONDS", help="close idle streams (never)")
    p.add_argument(
        "--write-timeout",
        metavar="SECONDS",
        help="close a stream whose client does not read its reply (5)",
    )
    p.add_argument(
        "--request-timeout",
        metavar="SECONDS",
        help="close a stream whose request is incomplete this long after its start (never)",
    )
    p.add_argument(
        "--call-timeout",
        metavar="SECONDS",
        help="cancel an async RPC running longer, fault 500 'call timed out' (never)",
    )
    p.add_argument(
        "--max-pending-per-connection",
        metavar="N",
        help="requests in progress or replies waiting per stream before reading stops (128)",
    )
    p.add_argument(
        "--no-builtins",
        action="store_true",
        help="do not serve the built-in core.*/system.*/ctl.* RPCs",
    )
    p.add_argument(
        "--loop",
        choices=LOOPS,
        help="event loop: uvloop if installed (auto, the default), asyncio, uvloop",
    )
    g = p.add_argument_group(
        "access control (off by default; each applies to every listener it fits; "
        "[[listener]] tables in the config file set them per listener)"
    )
    g.add_argument(
        "--allow-uid",
        action="append",
        metavar="UID",
        help="unix sockets: only peers with this uid (or an --allow-gid)",
    )
    g.add_argument(
        "--allow-gid",
        action="append",
        metavar="GID",
        help="unix sockets: only peers with this primary gid (or an --allow-uid)",
    )
    g.add_argument(
        "--allow-network",
        action="append",
        metavar="NET",
        help="udp/tcp/tls: only clients from this network (127.0.0.0/8, ::1/128)",
    )
    g.add_argument(
        "--allow-method",
        action="append",
        metavar="PATTERN",
        help="serve only methods matching one of these fnmatch patterns (core.*)",
    )
    g.add_argument(
        "--deny-method",
        action="append",
        metavar="PATTERN",
        help="never serve methods matching this pattern (wins over --allow-method)",
    )
    g.add_argument("--tls-cert", metavar="FILE", help="tls: listeners: certificate (PEM)")
    g.add_argument(
        "--tls-key", metavar="FILE", help="tls: listeners: private key (default: in --tls-cert)"
    )
    g.add_argument(
        "--tls-ca",
        metavar="FILE",
        help="tls: listeners: require client certificates from these CAs",
    )
    g.add_argument(
        "--tls-allow-cn",
        action="append",
        metavar="CN",
        help="tls: listeners with --tls-ca: only client certificates with this CN",
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with the same settings")
    p.add_argument(
        "--module",
        action="append",
        metavar="NAME",
        help="import a module (or .py file) exporting RPCs (repeatable); dotted names are "
        "found, as with `python -m`, in the working directory first (not with "
        "PYTHONSAFEPATH), then in the --module-path directories, then on sys.path",
    )
    p.add_argument(
        "--module-path",
        action="append",
        metavar="DIR",
        help="also look for --module names in DIR (repeatable)",
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return p  # fmt: skip


def _read_config(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
    if "binrpcd" in data and isinstance(data["binrpcd"], dict):
        data = data["binrpcd"]
    return {str(k).replace("-", "_"): v for k, v in data.items()}


_RULE_KEYS: dict[str, str] = {
    # TOML key (per listener, or global) -> command-line flag dest
    "allow_uids": "allow_uid",
    "allow_gids": "allow_gid",
    "allow_networks": "allow_network",
    "allow_methods": "allow_method",
    "deny_methods": "deny_method",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "tls_ca": "tls_ca",
    "tls_allow_cns": "tls_allow_cn",
}
_LIST_RULES = ("allow_uids", "allow_gids", "allow_networks", "allow_methods", "deny_methods",
               "tls_allow_cns")  # fmt: skip
_FITS: dict[str, tuple[str, ...]] = {
    "allow_uids": ("unixs", "unixd"),
    "allow_gids": ("unixs", "unixd"),
    "allow_networks": ("udp", "tcp", "tls"),
    "tls_cert": ("tls",),
    "tls_key": ("tls",),
    "tls_ca": ("tls",),
    "tls_allow_cns": ("tls",),
}

_KNOWN = {
    "binrpc", "fifo", "mode", "user", "group", "autoconversion", "config", "module", "loop",
    "modules", "builtins", "no_builtins", "verbose", "listener", *_RULE_KEYS,
    "fifo_reply_timeout", *_INT_SETTINGS, *_FLOAT_SETTINGS, *_STR_SETTINGS,
}  # fmt: skip


def _as_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"{key}: expected a string or a list of strings")


def _rule_value(key: str, value: Any, where: str) -> Any:
    if key in _LIST_RULES:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise ConfigError(f"{where}{key}: expected strings (or ids), got {item!r}")
            if isinstance(item, int) and key not in ("allow_uids", "allow_gids"):
                raise ConfigError(f"{where}{key}: expected strings, got {item!r}")
        return items
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}{key}: expected a file name")
    return value


def _listen(address: str, fifo: bool, rules: dict[str, Any], where: str) -> str | Listen:
    """The address with its rules (a plain string when there are none)."""
    if not rules:
        return address
    try:
        return Listen(address, fifo=fifo, **rules)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}{exc}") from None


def _proto_of(address: str, fifo: bool) -> str | None:
    try:
        return parse_address(address, "fifo" if fifo else "binrpc").proto
    except AddressError:
        return None  # the server reports it, as for any bad address


def _with_globals(
    address: str, fifo: bool, own: dict[str, Any], global_rules: dict[str, Any], where: str
) -> str | Listen:
    """A listener's own rules plus the global ones that fit its transport (its own win)."""
    if not global_rules:
        return _listen(address, fifo, own, where)
    proto = _proto_of(address, fifo)
    if proto is None:
        return _listen(address, fifo, own, where)
    rules = dict(own)
    for key, value in global_rules.items():
        if key in rules:
            continue
        if key in _FITS and proto not in _FITS[key]:
            continue
        rules[key] = value
    return _listen(address, fifo, rules, where)


def _listener_tables(value: Any, global_rules: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """``[[listener]]`` tables -> (binrpc listeners, fifo listeners)."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ConfigError("listener: expected [[listener]] tables")
    binrpc: list[Any] = []
    fifo: list[Any] = []
    for index, table in enumerate(value, 1):
        where = f"listener #{index}: "
        entry = {str(k).replace("-", "_"): v for k, v in table.items()}
        unknown = sorted(set(entry) - {"address", "fifo", *_RULE_KEYS})
        if unknown:
            raise ConfigError(f"{where}unknown setting(s): {', '.join(unknown)}")
        address = entry.get("address")
        if not isinstance(address, str) or not address:
            raise ConfigError(f"{where}address: expected a listen address")
        is_fifo = _bool(entry.get("fifo", False))
        own = {k: _rule_value(k, v, where) for k, v in entry.items() if k in _RULE_KEYS}
        item = _with_globals(address, is_fifo, own, global_rules, where)
        (fifo if is_fifo else binrpc).append(item)
    return binrpc, fifo


def options_from(
    args: argparse.Namespace,
) -> tuple[list[str | Listen], ServerOptions, list[str]]:
    """Merge the config file and the flags -> (binrpc addresses, options, modules).

    Access rules: ``[[listener]]`` tables carry their own; the global ones (flags, top-level
    keys) go to every listener they fit (uids/gids: unix sockets; networks: udp/tcp/tls; TLS
    files: tls; methods: all) unless the listener sets that rule itself. Addresses without
    rules stay plain strings.

    Raises:
        ConfigError: a bad value or an unknown key.
    """
    settings: dict[str, Any] = {}
    if args.config:
        settings = _read_config(args.config)
        unknown = sorted(set(settings) - _KNOWN)
        if unknown:
            raise ConfigError(f"{args.config}: unknown setting(s): {', '.join(unknown)}")
    for key in ("binrpc", "fifo", "mode", "user", "group", "autoconversion", *_INT_SETTINGS,
                *_FLOAT_SETTINGS, *_STR_SETTINGS, "fifo_reply_timeout"):  # fmt: skip
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    for key, dest in _RULE_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            settings[key] = value
    if args.no_builtins:
        settings["builtins"] = False
    modules = _as_list(settings.get("modules"), "modules") + _as_list(
        settings.get("module"), "module"
    )
    modules += args.module or []

    kw: dict[str, Any] = {}
    if "mode" in settings:
        kw["mode"] = _mode(settings["mode"])
    for key in ("user", "group"):
        if key in settings and settings[key] not in (None, ""):
            kw[key] = _owner(key, settings[key])
    if "autoconversion" in settings:
        kw["autoconversion"] = _bool(settings["autoconversion"])
    for key in _INT_SETTINGS:
        if key in settings:
            kw[key] = _int(key, settings[key])
    for key in _FLOAT_SETTINGS:
        if key in settings:
            kw[key] = _timeout(key, settings[key])
    for key in _STR_SETTINGS:
        if key in settings:
            if not isinstance(settings[key], str) or not settings[key]:
                raise ConfigError(f"{key}: expected a non-empty string")
            kw[key] = settings[key]
    if "fifo_reply_timeout" in settings:
        timeout = _timeout("fifo_reply_timeout", settings["fifo_reply_timeout"])
        if timeout is None:
            raise ConfigError("fifo_reply_timeout: expected a number of seconds > 0")
        kw["fifo_reply_timeout"] = timeout
    if "builtins" in settings:
        kw["builtins"] = _bool(settings["builtins"])
    global_rules = {
        key: _rule_value(key, settings[key], "") for key in _RULE_KEYS if key in settings
    }
    binrpc: list[str | Listen] = [
        _with_globals(a, False, {}, global_rules, "")
        for a in _as_list(settings.get("binrpc"), "binrpc")
    ]
    fifo: list[str | Listen] = [
        _with_globals(a, True, {}, global_rules, "") for a in _as_list(settings.get("fifo"), "fifo")
    ]
    if "listener" in settings:
        more_binrpc, more_fifo = _listener_tables(settings["listener"], global_rules)
        binrpc += more_binrpc
        fifo += more_fifo
    if fifo:
        kw["fifo"] = tuple(fifo)
    try:
        options = ServerOptions(**kw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return binrpc, options, modules


def module_search_path(module_paths: Sequence[str]) -> list[str]:
    """The directories put before ``sys.path`` for ``--module``: the working directory, as
    ``python -m`` does (unless ``PYTHONSAFEPATH``/``-P`` asks not to), then ``module_paths``.

    Raises:
        ConfigError: a ``module_paths`` entry that is not a directory.
    """
    dirs = [] if sys.flags.safe_path else [os.getcwd()]
    for entry in module_paths:
        if not os.path.isdir(entry):
            raise ConfigError(f"module path {entry!r}: not a directory")
        dirs.append(os.path.abspath(entry))
    return dirs


def load_module(name: str, registry: Registry) -> None:
    """Import ``name`` (a dotted module name or a path to a ``.py`` file) and register its RPCs
    (its ``rpcs`` Registry and/or its ``register(registry)`` function).

    Raises:
        ConfigError: the module cannot be imported or exports no RPCs.
    """
    try:
        if name.endswith(".py") or os.sep in name:
            modname = "binrpcd_module_" + os.path.splitext(os.path.basename(name))[0]
            spec = importlib.util.spec_from_file_location(modname, name)
            if spec is None or spec.loader is None:
                raise ConfigError(f"module {name!r}: cannot load this file")
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(name)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"module {name!r}: import failed: {type(exc).__name__}: {exc}") from exc
    found = False
    rpcs = getattr(module, "rpcs", None)
    if isinstance(rpcs, Registry):
        registry.update(rpcs)
        found = True
    register = getattr(module, "register", None)
    if callable(register):
        try:
            register(registry)
        except Exception as exc:
            raise ConfigError(
                f"module {name!r}: register() failed: {type(exc).__name__}: {exc}"
            ) from exc
        found = True
    if not found:
        raise ConfigError(
            f"module {name!r} exports no RPCs: define `rpcs = Registry()` or "
            "`def register(registry): ...`"
        )


def loop_factory(choice: str) -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """The event loop factory for ``--loop`` (None: asyncio's default) and its description.

    Raises:
        ConfigError: an unknown choice, or ``uvloop`` when uvloop cannot be imported.
    """
    if choice not in LOOPS:
        raise ConfigError(f"loop: expected one of {', '.join(LOOPS)}, got {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(
                    "loop uvloop: uvloop is not installed (pip install 'binrpc[uvloop]')"
                ) from None
        else:
            version = getattr(uvloop, "__version__", "")
            return uvloop.new_event_loop, f"uvloop {version}".strip()
    return None, "asyncio"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
"""Shut down cleanly: listeners closed, socket and FIFO files removed, pending replies sent."""

IGNORED_SIGNALS = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
"""Logged and ignored (their default action would kill binrpcd and leave its socket files
behind). SIGHUP is reserved for a reload."""


async def _run(addresses: list[str | Listen], options: ServerOptions, registry: Registry) -> int:
    server = serve(registry, *addresses, options=options)
    loop = asyncio.get_running_loop()
    stop_requested = False

    def stop(sig: signal.Signals) -> None:
        nonlocal stop_requested
        log.info("%s received: shutting down", sig.name)
        stop_requested = True
        if server.listeners:  # else start() is still opening them: closed once it is done
            server.close()

    def ignore(sig: signal.Signals) -> None:
        log.warning("%s received: ignored", sig.name)

    # before start(): a signal while the listeners are being opened must not kill the
    # process with its socket files on disk
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    for sig in IGNORED_SIGNALS:
        loop.add_signal_handler(sig, ignore, sig)
    try:
        await server.start()
        if stop_requested:
            server.close()
        else:
            for listener in server.listeners:
                over_socket = listener.payload == "fifo" and listener.address.proto != "fifo"
                suffix = " (fifo)" if over_socket else ""
                print(f"listening on {listener.address}{suffix}", flush=True)
            addresses_text = ", ".join(str(a) for a in server.addresses)
            log.info("binrpcd %d ready: %s", os.getpid(), addresses_text)
        await server.serve_forever()
    finally:
        for sig in (*STOP_SIGNALS, *IGNORED_SIGNALS):
            loop.remove_signal_handler(sig)
    log.info("binrpcd stopped")
    return 0


def _loop_choice(args: argparse.Namespace) -> str:
    """``--loop``, else the config file's ``loop``, else auto."""
    if args.loop:
        return str(args.loop)
    if args.config:
        return str(_read_config(args.config).get("loop", "auto"))
    return "auto"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``binrpcd``. Returns the exit status (0 after a clean shutdown)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO if args.verbose else
        logging.WARNING,
        stream=sys.stderr,
        format="binrpcd[%(process)d] %(levelname)s: %(message)s",
    )  # fmt: skip
    from ..rpcs import core

    core.PROCESS_NAME = "binrpcd"
    try:
        addresses, options, modules = options_from(args)
        registry = Registry()
        if modules:
            sys.path[:0] = module_search_path(args.module_path or [])
        for name in modules:
            load_module(name, registry)
        factory, loop_name = loop_factory(_loop_choice(args))
        print(f"binrpcd: event loop {loop_name}", file=sys.stderr, flush=True)
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_run(addresses, options, registry))
    except (ConfigError, ListenerError, AddressError) as exc:
        print(f"binrpcd: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
