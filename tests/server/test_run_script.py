"""scripts/run.sh (issue 10, point 19): it queries the binrpcd it started, on the socket that
binrpcd bound, and fails when that binrpcd cannot start. The default socket is pointed into
a temporary directory with $BINRPC_SOCKET (binrpcd and binrpc both honour it), so the
machine's real default socket is never touched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from binrpc._registry import Registry

from .conftest import ServerThread

RUN_SH = Path(__file__).resolve().parents[2] / "scripts" / "run.sh"


def _run_sh(workdir: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BINRPC_SOCKET": f"unixs:{workdir}/ctl.sock",
        "XDG_RUNTIME_DIR": workdir,
    }
    return subprocess.run(
        ["bash", str(RUN_SH), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,  # a hang guard (the script runs setup.sh first)
    )


def test_run_sh_queries_its_own_binrpcd(workdir: str) -> None:
    done = _run_sh(workdir, "core.echo", "from", "run.sh")
    assert (done.returncode, done.stdout) == (0, "from\nrun.sh\n"), done.stderr
    assert not os.path.exists(f"{workdir}/ctl.sock")  # its binrpcd stopped cleanly


def test_run_sh_fails_when_the_default_socket_is_taken(workdir: str) -> None:
    other = Registry()
    asked: list[str] = []

    @other.rpc("core.echo")
    def echo(*args: str) -> str:
        asked.append(" ".join(args))
        return "the other server"

    with ServerThread(other, f"unixs:{workdir}/ctl.sock"):
        done = _run_sh(workdir, "core.echo", "x")
    assert done.returncode != 0
    assert "another server is listening" in done.stderr
    assert "run: binrpcd did not start" in done.stderr
    assert done.stdout == "" and asked == []
