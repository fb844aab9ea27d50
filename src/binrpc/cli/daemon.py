"""``binrpcd``: run a binrpc (Kamailio ctl) server in the foreground.

Flags are named after the ctl module parameters (``--binrpc``, ``--fifo``, ``--mode``,
``--user``, ``--group``, ``--autoconversion``, ``--binrpc-buffer-size``,
``--binrpc-max-body-size``, ``--binrpc-struct-max-body-size``) plus the settings ctl lacks or
hard-codes (``--max-connections``, ``--idle-timeout``, ``--write-timeout``,
``--request-timeout``, ``--call-timeout``, ``--max-pending-per-connection``,
``--fifo-reply-dir``, ``--fifo-reply-timeout``). ``--config FILE`` reads the
same settings from TOML (keys with underscores or dashes); flags win over the file. The
server settings are derived from the :class:`~binrpc.server.ServerOptions` fields (see
:mod:`binrpc.cli._daemon_config`, which reads the command line and the file).

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

import asyncio
import dataclasses
import importlib
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from .._address import AddressError
from .._registry import Registry
from ..server import Listen, ListenerError, ServerOptions, serve
from ._daemon_config import LOOPS, ConfigError, build_parser, loop_choice, options_from

__all__ = ["ConfigError", "build_parser", "load_module", "loop_factory", "main", "options_from"]

log = logging.getLogger("binrpcd")


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
    try:
        addresses, options, modules = options_from(args)
        options = dataclasses.replace(options, process_name="binrpcd")
        registry = Registry()
        if modules:
            sys.path[:0] = module_search_path(args.module_path or [])
        for name in modules:
            load_module(name, registry)
        factory, loop_name = loop_factory(loop_choice(args))
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
