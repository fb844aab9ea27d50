"""``binrpcd``'s settings: its command line and its TOML configuration file, merged into a
:class:`~binrpc.server.ServerOptions`. No I/O but reading the file.

The settings of the server come from the :class:`~binrpc.server.ServerOptions` fields, not from
lists of their own: each field with a :class:`~binrpc.server._options.Setting` is a flag
``--name-with-dashes`` and a TOML key ``name`` (or ``name-with-dashes``), read as its type says
(:data:`SETTINGS`); a bool that is on by default is turned off by ``--no-name``. The daemon
adds the listeners (``--binrpc``, ``[[listener]]``), the access rules, ``--module``, ``--loop``
and ``--config``.
"""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import fields
from typing import Any

from .._address import AddressError, parse_address
from ..server import Listen, ServerOptions
from ..server._options import MODE, NO_SETTING, SETTING, Setting
from ..server._sockets import MAX_ID

__all__ = [
    "LOOPS",
    "SETTINGS",
    "ConfigError",
    "DaemonSetting",
    "build_parser",
    "derive_settings",
    "loop_choice",
    "options_from",
]

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


def _seconds(key: str, value: Any) -> float:
    """A timeout setting that cannot be turned off: seconds > 0."""
    timeout = _timeout(key, value)
    if timeout is None:
        raise ConfigError(f"{key}: expected a number of seconds > 0")
    return timeout


def _text(key: str, value: Any) -> str:
    """A string setting (a directory): not empty."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a non-empty string")
    return value


def _int(key: str, value: Any) -> int:
    """An integer setting: an int, or a string of decimal digits (a flag)."""
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected an integer, got {value!r}")


# -- the settings, from the ServerOptions fields ---------------------------------------------

# a field's type -> how a flag or TOML value for it is read (annotations are strings here)
_KIND_OF_TYPE = {
    "int": "int",
    "bool": "bool",
    "str": "text",
    "float": "seconds",
    "float | None": "timeout",
    "str | int | None": "owner",
    "tuple[str | Listen, ...]": "listeners",
}
_READERS: dict[str, Any] = {
    MODE: lambda key, value: _mode(value),
    "owner": _owner,
    "bool": lambda key, value: _bool(value),
    "int": _int,
    "timeout": _timeout,
    "seconds": _seconds,
    "text": _text,
}
"""kind -> reader(key, value) (raises ConfigError); listeners are read with the access rules."""
_METAVARS = {"timeout": "SECONDS", "seconds": "SECONDS", "bool": "0|1"}


class DaemonSetting:
    """A :class:`~binrpc.server.ServerOptions` field as binrpcd sets it.

    Attributes:
        key: the field, and the TOML key.
        kind: how a value is read: a key of ``_READERS``, or ``listeners``.
        dest: the flag's name with ``_`` (``no_<key>`` for ``negated``), its argparse dest.
        negated: a bool on by default: ``--no-<key>`` turns it off (the TOML key stays).
        help: the flag's ``--help`` text, with the field's default.
        metavar: the flag's argument in ``--help`` (None: argparse's, the dest in capitals).
    """

    __slots__ = ("dest", "help", "key", "kind", "metavar", "negated")

    def __init__(self, key: str, type_name: str, default: Any, spec: Setting) -> None:
        kind = spec.kind or _KIND_OF_TYPE.get(type_name)
        if kind is None:
            raise TypeError(f"{key}: binrpcd cannot read a {type_name}")
        self.key = key
        self.kind = kind
        self.negated = kind == "bool" and default is True
        self.dest = f"no_{key}" if self.negated else key
        self.help = spec.help.replace("{default}", _shown(kind, default))
        self.metavar = spec.metavar or _METAVARS.get(kind)

    @property
    def flag(self) -> str:
        return "--" + self.dest.replace("_", "-")

    def read(self, value: Any) -> Any:
        """The value for the ServerOptions field (raises ConfigError)."""
        return _READERS[self.kind](self.key, value)


def _shown(kind: str, default: Any) -> str:
    """A default as ``--help`` shows it."""
    if default is None:
        return "never" if kind == "timeout" else "none"
    if kind == MODE:
        return f"{default:04o}"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def derive_settings(options_type: type[Any] = ServerOptions) -> tuple[DaemonSetting, ...]:
    """The settings of the fields of ``options_type`` (a dataclass: ServerOptions) that have
    one, in field order.

    Raises:
        TypeError: a field with neither a Setting nor a reason for none, or of a type that
            binrpcd cannot read (a programming error, caught by the tests).
    """
    out = []
    for f in fields(options_type):
        spec = f.metadata.get(SETTING)
        if spec is None:
            if not f.metadata.get(NO_SETTING):
                raise TypeError(f"{f.name}: neither a binrpcd setting nor a reason for none")
            continue
        out.append(DaemonSetting(f.name, str(f.type), f.default, spec))
    return tuple(out)


SETTINGS = derive_settings()
"""binrpcd's settings of the server options, in the order of the fields (and of ``--help``)."""


# -- the command line ------------------------------------------------------------------------


def _add_setting(p: argparse.ArgumentParser, s: DaemonSetting) -> None:
    if s.kind == "listeners":
        p.add_argument(s.flag, action="append", metavar=s.metavar, help=s.help)
    elif s.negated:
        p.add_argument(s.flag, action="store_true", help=s.help)
    elif s.kind == "bool":
        p.add_argument(s.flag, nargs="?", const="1", metavar=s.metavar, help=s.help)
    else:
        p.add_argument(s.flag, metavar=s.metavar, help=s.help)


def build_parser() -> argparse.ArgumentParser:
    """binrpcd's command line: the listeners, the settings of :data:`SETTINGS`, the loop, the
    access rules, the config file and the modules."""
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
    for s in SETTINGS:
        _add_setting(p, s)
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

_DAEMON_KEYS = ("binrpc", "listener", "config", "module", "modules", "loop", "verbose")
"""The TOML keys of the daemon's own settings (the listeners, modules, loop ...)."""
_KNOWN = {*_DAEMON_KEYS, *_RULE_KEYS, *(s.key for s in SETTINGS), *(s.dest for s in SETTINGS)}
"""Every TOML key accepted. A negated flag's name (``no_builtins``) is accepted but not read,
as it always was."""


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
    settings = _settings(args)
    modules = _as_list(settings.get("modules"), "modules") + _as_list(
        settings.get("module"), "module"
    )
    modules += args.module or []
    kw = _option_values(settings)
    binrpc, fifo = _listeners(settings)
    if fifo:
        kw["fifo"] = tuple(fifo)
    try:
        options = ServerOptions(**kw)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return binrpc, options, modules


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """The config file's settings (unknown keys refused), overridden by the flags given."""
    settings: dict[str, Any] = {}
    if args.config:
        settings = _read_config(args.config)
        unknown = sorted(set(settings) - _KNOWN)
        if unknown:
            raise ConfigError(f"{args.config}: unknown setting(s): {', '.join(unknown)}")
    # the flags win over the file
    if args.binrpc is not None:
        settings["binrpc"] = args.binrpc
    for setting in SETTINGS:
        value = getattr(args, setting.dest)
        if setting.negated:
            if value:
                settings[setting.key] = False
        elif value is not None:
            settings[setting.key] = value
    for key, dest in _RULE_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            settings[key] = value
    return settings


def _option_values(settings: dict[str, Any]) -> dict[str, Any]:
    """The :class:`ServerOptions` keywords of the settings (listeners apart)."""
    kw: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.key not in settings or setting.kind == "listeners":  # listeners: below
            continue
        value = settings[setting.key]
        if setting.kind == "owner" and value in (None, ""):
            continue  # unset: the process's own
        kw[setting.key] = setting.read(value)
    return kw


def _listeners(settings: dict[str, Any]) -> tuple[list[str | Listen], list[str | Listen]]:
    """(binrpc, fifo) listeners: the plain addresses then the ``[[listener]]`` tables, each
    with the global access rules that fit it."""
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
    return binrpc, fifo


def loop_choice(args: argparse.Namespace) -> str:
    """``--loop``, else the config file's ``loop``, else auto."""
    if args.loop:
        return str(args.loop)
    if args.config:
        return str(_read_config(args.config).get("loop", "auto"))
    return "auto"
