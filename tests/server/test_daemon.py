"""binrpcd: flags, TOML, --module, start-up errors, SIGTERM/SIGINT shutdown (subprocesses)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from binrpc import encode_request
from binrpc.cli.daemon import ConfigError, build_parser, options_from

from .conftest import RawClient, free_port
from .helpers import binrpcd_command

MODULE = textwrap.dedent(
    '''
    import asyncio
    from binrpc.server import Registry, RpcContext

    rpcs = Registry()

    @rpcs.rpc("demo.add")
    def add(a: int, b: int = 0) -> int:
        """Add two integers."""
        return a + b

    @rpcs.rpc("demo.slow")
    async def slow(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "done"

    def register(registry):
        registry.register("demo.ctx", lambda ctx: ctx.add("s", "ctx"), context=True)
    '''
)


class Daemon:
    """binrpcd as a subprocess, stopped by pid."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            binrpcd_command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.listening: list[str] = []

    def wait_ready(self, n: int, timeout: float = 10.0) -> list[str]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while len(self.listening) < n:
            assert time.monotonic() < deadline, "binrpcd not ready"
            line = self.proc.stdout.readline().decode()
            if not line:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise AssertionError(f"binrpcd exited: {self.proc.wait()} {err}")
            if line.startswith("listening on "):
                self.listening.append(line.split(" ", 2)[2].strip())
        return self.listening

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def run_to_end(self, timeout: float = 10.0) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()


@pytest.fixture
def module_file(workdir: str) -> str:
    path = Path(workdir) / "demo_rpcs.py"
    path.write_text(MODULE)
    return str(path)


@pytest.fixture
def daemon_all(workdir: str, module_file: str) -> Iterator[tuple[Daemon, dict[str, str]]]:
    addrs = {
        "unixs": f"unixs:{workdir}/d.sock",
        "unixd": f"unixd:{workdir}/d.dgram",
        "udp": f"udp:127.0.0.1:{free_port()}",
        "tcp": f"tcp:127.0.0.1:{free_port()}",
    }
    args = [a for v in addrs.values() for a in ("--binrpc", v)]
    d = Daemon(*args, "--module", module_file)
    try:
        d.wait_ready(4)
        yield d, addrs
    finally:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_daemon_serves_and_stops_cleanly(
    daemon_all: tuple[Daemon, dict[str, str]], workdir: str, sig: int
) -> None:
    d, addrs = daemon_all
    assert d.listening == list(addrs.values())
    clients = [RawClient(addrs[t], workdir) for t in ("unixs", "unixd", "udp", "tcp")]
    try:
        for c in clients:
            assert c.call("demo.add", [2, 3]) == ("reply", [5])
            assert c.call("demo.ctx") == ("reply", ["ctx"])
            assert c.call("system.methodHelp", ["demo.add"]) == ("reply", ["Add two integers."])
        _kind, ps = clients[0].call("core.ps")
        assert ps[1] == "main process - binrpcd"  # its ServerOptions.process_name
        # an in-flight async request on a stream still gets its reply after SIGTERM
        clients[0].send(encode_request("demo.slow", [0.5], 9))
        time.sleep(0.1)
        assert d.stop(sig) == 0
        p = clients[0].recv_packet(2.0)
        assert p is not None and p.cookie == 9
        assert clients[3].closed_by_server(2.0)
    finally:
        for c in clients:
            c.close()
    assert not os.path.exists(f"{workdir}/d.sock")
    assert not os.path.exists(f"{workdir}/d.dgram")


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2])
def test_hup_and_usr_signals_are_logged_and_ignored(workdir: str, sig: int) -> None:
    files = [f"{workdir}/s.sock", f"{workdir}/d.dgram", f"{workdir}/ctl.fifo"]
    d = Daemon("--binrpc", f"unixs:{files[0]}", "--binrpc", f"unixd:{files[1]}", "--fifo", files[2])
    try:
        d.wait_ready(3)
        os.kill(d.proc.pid, sig)
        with RawClient(f"unixs:{files[0]}") as c:
            assert c.call("core.echo", ["after"]) == ("reply", ["after"])
        assert d.proc.poll() is None
        assert d.stop(signal.SIGTERM) == 0
    finally:
        if d.proc.poll() is None:
            d.stop(signal.SIGKILL)
    _, err = d.proc.communicate()
    name = signal.Signals(sig).name
    assert f"WARNING: {name} received: ignored" in err.decode(), err
    assert [f for f in files if os.path.exists(f)] == []


def test_core_kill_stops_the_daemon(workdir: str) -> None:
    d = Daemon("--binrpc", f"unixs:{workdir}/k.sock")
    d.wait_ready(1)
    with RawClient(f"unixs:{workdir}/k.sock") as c:
        c.send(encode_request("core.kill", [], 0x77))
        p = c.recv_packet()
        assert p is not None and (p.type, p.cookie, p.body) == (1, 0x77, b"")
    assert d.proc.wait(10) == 0
    assert not os.path.exists(f"{workdir}/k.sock")


def test_config_file_and_flags(workdir: str, module_file: str) -> None:
    cfg = Path(workdir) / "binrpcd.toml"
    cfg.write_text(
        textwrap.dedent(
            f"""
            binrpc = ["unixs:{workdir}/c.sock"]
            mode = "0640"
            binrpc-max-body-size = 1
            autoconversion = 1
            modules = ["{module_file}"]
            """
        )
    )
    d = Daemon("--config", str(cfg))
    try:
        d.wait_ready(1)
        st = os.stat(f"{workdir}/c.sock")
        assert stat.S_IMODE(st.st_mode) == 0o640
        with RawClient(f"unixs:{workdir}/c.sock") as c:
            assert c.call("demo.add", ["2", 3]) == ("reply", [5])  # autoconversion
            kind, (code, text) = c.call("core.echo", ["y" * 1100])
            assert (kind, code) == ("fault", 500) and "overflow" in text
    finally:
        assert d.stop() == 0
    # flags win over the file
    d = Daemon("--config", str(cfg), "--mode", "0600", "--binrpc", f"unixs:{workdir}/f.sock")
    try:
        assert d.wait_ready(1) == [f"unixs:{workdir}/f.sock"]
        assert stat.S_IMODE(os.stat(f"{workdir}/f.sock").st_mode) == 0o600
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--binrpc", "foo:/tmp/x"], "'foo:/tmp/x'"),
        (["--binrpc", "unix:/tmp/a:b"], "'unix:/tmp/a:b'"),
        (["--fifo", "/tmp/binrpcd-no-such-dir/f.fifo"], "cannot create the FIFO"),
        (["--fifo", "fifo:/tmp/a:b"], "'fifo:/tmp/a:b'"),
        (["--mode", "9x"], "bad mode"),
        (["--module", "binrpc._values"], "exports no RPCs"),
        (["--module", "no_such_module_xyz"], "no_such_module_xyz"),
        (["--max-connections", "many"], "max_connections"),
        (["--idle-timeout", "-1"], "idle_timeout: bad timeout '-1'"),
        (["--binrpc-buffer-size", "0"], "binrpc_buffer_size must be an int >= 1, got 0"),
    ],
)
def test_startup_errors(args: list[str], message: str) -> None:
    d = Daemon(*args)
    rc, err = d.run_to_end()
    assert rc == 1
    assert message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'binrpc = "unixs:/tmp/\xff"\n', "not UTF-8 text (byte 21)"),
        (b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested too deeply"),
        (b"max_connections = inf\n", "max_connections: expected an integer, got inf"),
        (b"mode = -1\n", "bad mode -1 (-0o1)"),
        (b"user = true\n", "user: expected a name or an id, got True"),
        (b"group = 99999999999\n", "group: bad id 99999999999"),
        (b'user = "a\\u0000b"\n', "user: bad name 'a\\x00b'"),
        (b"write_timeout = -0.5\n", "write_timeout: bad timeout -0.5"),
        (b"max_connections = 0\n", "max_connections must be an int >= 1, got 0"),
    ],
)
def test_bad_config_values_are_errors_not_tracebacks(
    workdir: str, content: bytes, message: str
) -> None:
    cfg = Path(workdir) / "bad.toml"
    cfg.write_bytes(content)
    rc, err = Daemon("--config", str(cfg), "--binrpc", f"unixs:{workdir}/b.sock").run_to_end()
    assert rc == 1, err
    (line,) = err.splitlines()  # one line, no traceback
    assert line.startswith("binrpcd: error: ") and message in line, err
    assert os.listdir(workdir) == ["bad.toml"]  # refused before any socket or chown


def test_non_socket_path_refused(workdir: str) -> None:
    path = Path(workdir) / "plain"
    path.write_text("x")
    rc, err = Daemon("--binrpc", f"unixs:{path}").run_to_end()
    assert rc == 1 and "not a socket" in err
    assert path.read_text() == "x"


def test_options_from_names() -> None:
    args = build_parser().parse_args(
        ["--binrpc", "tcp:1.2.3.4:5", "--binrpc", "udp:6", "--autoconversion",
         "--binrpc-buffer-size", "16", "--idle-timeout", "2.5", "--write-timeout", "0",
         "--user", "0", "--group", "root"]
    )  # fmt: skip
    addresses, opts, modules = options_from(args)
    assert addresses == ["tcp:1.2.3.4:5", "udp:6"]
    assert opts.autoconversion is True
    assert opts.binrpc_buffer_size == 16
    assert opts.idle_timeout == 2.5 and opts.write_timeout is None
    assert (opts.user, opts.group) == ("0", "root")
    assert modules == []


# setting -> flag values and TOML values binrpcd refuses
_TIMEOUT_BAD = (["-1", "-0.5", "nan", "soon"], ["-1", "true", "nan", "[1]"])
_SIZE_BAD = (["0", "-1", "1.5", "x"], ["0", "-1", "true", "1.5", '"x"'])
_CTL_SIZE_BAD = (["1.5", "x", ""], ["true", "1.5", '"x"'])  # <= 0 is ctl's fallback
DAEMON_BAD: dict[str, tuple[list[str], list[str]]] = {
    **dict.fromkeys(("idle_timeout", "write_timeout", "request_timeout", "call_timeout"),
                    _TIMEOUT_BAD),
    "fifo_reply_timeout": (["0", "off", *_TIMEOUT_BAD[0]], ["0", *_TIMEOUT_BAD[1]]),
    **dict.fromkeys(("binrpc_buffer_size", "max_connections", "max_pending_per_connection"),
                    _SIZE_BAD),
    **dict.fromkeys(("binrpc_max_body_size", "binrpc_struct_max_body_size"), _CTL_SIZE_BAD),
}  # fmt: skip


def test_daemon_table_covers_every_timeout_and_size_setting() -> None:
    from binrpc.cli._daemon_config import SETTINGS

    numeric = {s.key for s in SETTINGS if s.kind in ("int", "timeout", "seconds")}
    assert set(DAEMON_BAD) == numeric


@pytest.mark.parametrize(
    ("key", "flag", "value"),
    [(k, True, v) for k, (flags, _) in DAEMON_BAD.items() for v in flags]
    + [(k, False, v) for k, (_, toml) in DAEMON_BAD.items() for v in toml],
)
def test_bad_timeout_or_size_setting_is_a_config_error(
    workdir: str, key: str, flag: bool, value: str
) -> None:
    if flag:
        args = build_parser().parse_args([f"--{key.replace('_', '-')}", value])
    else:
        cfg = Path(workdir) / "bad.toml"
        cfg.write_text(f"{key} = {value}\n")
        args = build_parser().parse_args(["--config", str(cfg)])
    with pytest.raises(ConfigError, match=key):
        options_from(args)


def test_config_unknown_key(workdir: str) -> None:
    cfg = Path(workdir) / "bad.toml"
    cfg.write_text('binrpc = "unixs:/tmp/x"\nbogus = 1\n')
    with pytest.raises(ConfigError, match="bogus"):
        options_from(build_parser().parse_args(["--config", str(cfg)]))


def test_options_from_limits_flags_and_toml(workdir: str) -> None:
    args = build_parser().parse_args(
        ["--request-timeout", "2.5", "--call-timeout", "10", "--max-pending-per-connection", "16"]
    )
    _, opts, _ = options_from(args)
    assert (opts.request_timeout, opts.call_timeout) == (2.5, 10.0)
    assert opts.max_pending_per_connection == 16
    _, opts, _ = options_from(build_parser().parse_args(["--call-timeout", "0"]))
    assert (opts.request_timeout, opts.call_timeout, opts.max_pending_per_connection) == (
        None, None, 128
    )  # fmt: skip
    cfg = Path(workdir) / "limits.toml"
    cfg.write_text('request-timeout = 1.5\ncall_timeout = "inf"\nmax_pending_per_connection = 4\n')
    _, opts, _ = options_from(build_parser().parse_args(["--config", str(cfg)]))
    assert (opts.request_timeout, opts.call_timeout) == (1.5, None)
    assert opts.max_pending_per_connection == 4
    for bad in (["--max-pending-per-connection", "0"], ["--call-timeout", "x"]):
        with pytest.raises(ConfigError):
            options_from(build_parser().parse_args(bad))


BINRPCD = os.path.join(os.path.dirname(sys.executable), "binrpcd")
"""The installed entry point (``python -m`` would put the working directory on the path
itself)."""


@pytest.mark.parametrize("where", ["cwd", "module-path"])
def test_module_found_like_python_m(workdir: str, where: str) -> None:
    app = Path(workdir) / "proj" / "myapp"
    app.mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "rpcs.py").write_text(MODULE)
    sock = f"{workdir}/m.sock"
    args = ["--binrpc", f"unixs:{sock}", "--module", "myapp.rpcs"]
    if where == "cwd":
        cwd = str(app.parent)  # the folder that holds myapp/
    else:
        cwd = workdir
        args += ["--module-path", str(app.parent)]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    proc = subprocess.Popen(
        [BINRPCD, "--loop", "asyncio", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert line.startswith(b"listening on "), proc.stderr.read().decode()
        with RawClient(f"unixs:{sock}") as c:
            assert c.call("demo.add", [2, 3]) == ("reply", [5])
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0


def test_module_path_must_be_a_directory(workdir: str) -> None:
    d = Daemon("--module", "myapp.rpcs", "--module-path", f"{workdir}/nope")
    rc, err = d.run_to_end()
    assert rc == 1 and "module path" in err and "not a directory" in err, err


# ---------------------------------------------------------------------------------------------
# the settings come from the ServerOptions fields (cli/_daemon_config.py)

# kind -> (a flag argument, the same as a TOML value, the ServerOptions value); "" as flag
# argument: the flag takes none
_KIND_SAMPLES: dict[str, tuple[str, str, object]] = {
    "mode": ("0640", '"0640"', 0o640),
    "owner": ("nobody", '"nobody"', "nobody"),  # kept as given, resolved at start-up
    "bool": ("1", "true", True),
    "int": ("7", "7", 7),
    "timeout": ("2.5", "2.5", 2.5),
    "seconds": ("2.5", "2.5", 2.5),
    "text": ("/srv/x", '"/srv/x"', "/srv/x"),
    "listeners": ("/tmp/x.fifo", '"/tmp/x.fifo"', ("/tmp/x.fifo",)),
}

# binrpcd's command line and file keys: a compatibility contract (scripts, unit files)
BINRPCD_FLAGS = {
    "--help", "--binrpc", "--fifo", "--fifo-reply-dir", "--fifo-reply-timeout", "--mode",
    "--user", "--group", "--autoconversion", "--binrpc-buffer-size", "--binrpc-max-body-size",
    "--binrpc-struct-max-body-size", "--max-connections", "--idle-timeout", "--write-timeout",
    "--request-timeout", "--call-timeout", "--max-pending-per-connection", "--no-builtins",
    "--loop", "--allow-uid", "--allow-gid", "--allow-network", "--allow-method",
    "--deny-method", "--tls-cert", "--tls-key", "--tls-ca", "--tls-allow-cn", "--config",
    "--module", "--module-path", "--verbose",
}  # fmt: skip


def test_every_server_option_is_a_setting_or_says_why_not() -> None:
    import dataclasses

    from binrpc.cli._daemon_config import SETTINGS
    from binrpc.server import ServerOptions
    from binrpc.server._options import NO_SETTING, SETTING

    with_setting = []
    for f in dataclasses.fields(ServerOptions):
        has, why = SETTING in f.metadata, f.metadata.get(NO_SETTING)
        assert has != bool(why), f"{f.name}: a setting, or a reason for none (not both)"
        if has:
            with_setting.append(f.name)
    assert [s.key for s in SETTINGS] == with_setting


def test_a_field_without_a_setting_or_a_reason_is_refused() -> None:
    import dataclasses

    from binrpc.cli._daemon_config import derive_settings
    from binrpc.server._options import not_a_setting, setting

    @dataclasses.dataclass
    class Good:
        a: int = dataclasses.field(default=1, metadata=setting("a ({default})"))
        b: int = dataclasses.field(default=2, metadata=not_a_setting("internal"))

    @dataclasses.dataclass
    class Silent:
        a: int = 1

    @dataclasses.dataclass
    class Unreadable:
        a: complex = dataclasses.field(default=1j, metadata=setting("a"))

    assert [(s.key, s.flag, s.help) for s in derive_settings(Good)] == [("a", "--a", "a (1)")]
    with pytest.raises(TypeError, match="a: neither a binrpcd setting nor a reason"):
        derive_settings(Silent)
    with pytest.raises(TypeError, match="a: binrpcd cannot read a complex"):
        derive_settings(Unreadable)


def test_binrpcd_flags_are_unchanged() -> None:
    flags = {o for a in build_parser()._actions for o in a.option_strings if o.startswith("--")}
    assert flags == BINRPCD_FLAGS


def test_every_setting_is_in_the_help_with_its_default() -> None:
    from binrpc.cli._daemon_config import SETTINGS

    text = " ".join(build_parser().format_help().split())  # argparse wraps lines
    for s in SETTINGS:
        assert f"{s.flag} " in text
        assert "{default}" not in s.help and " ".join(s.help.split()) in text, s.key
    assert "printf scratch (1024)" in text and "close idle streams (never)" in text
    assert "octal (default 0600)" in text and "does not read its reply (5)" in text


@pytest.mark.parametrize("how", ["flag", "toml", "toml-dashes"])
def test_every_setting_reads_its_flag_and_its_toml_key(workdir: str, how: str) -> None:
    from binrpc.cli._daemon_config import SETTINGS

    for s in SETTINGS:
        flag_arg, toml_value, expected = _KIND_SAMPLES[s.kind]
        if s.negated:  # --no-builtins; builtins = false in a file
            flag_args, toml_value, expected = [s.flag], "false", False
        else:
            flag_args = [s.flag, flag_arg]
        if how == "flag":
            args = build_parser().parse_args(flag_args)
        else:
            key = s.key.replace("_", "-") if how == "toml-dashes" else s.key
            cfg = Path(workdir) / "s.toml"
            cfg.write_text(f"{key} = {toml_value}\n")
            args = build_parser().parse_args(["--config", str(cfg)])
        _, options, _ = options_from(args)
        assert getattr(options, s.key) == expected, (s.key, how)
        # and nothing else moved from its default
        from binrpc.server import ServerOptions

        changed: dict[str, Any] = {s.key: expected}
        assert options == ServerOptions(**changed), s.key
