"""Start-up cost of the ``binrpc`` command against kamcmd, on a real Kamailio.

    .venv/bin/python bench/cli_startup.py [--runs 20] [--batch 1000]

Starts Kamailio 5.6.3 (ctl on a /tmp unix socket; the test harness in tests/interop does it and
stops it by pid), then measures the median wall time of:

* ``python -c pass`` (the interpreter's own floor, same venv),
* ``binrpc core.version`` (one-shot) three ways: the ``binrpc`` console script next to the
  interpreter (when it exists), ``python -c "from binrpc.cli.main import main; ..."`` (the
  same work without the script), and ``python -m binrpc.cli.main`` (runpy adds its imports),
* ``python -c "import binrpc.cli.main"``: the import cost alone,
* ``kamcmd core.version``,
* ``binrpc --batch`` with N ``core.version`` lines (one process, one connection, pipelined)
  against a shell loop running kamcmd N times; the batch runs as the console script (what one
  types; falls back to ``python -m`` without it) and as ``python -m binrpc.cli.main``,
  interleaved with ``python -c pass``.

The package is byte-compiled first (``python -m compileall``): with PYTHONDONTWRITEBYTECODE set,
nothing would be cached and every run would compile binrpc from source.

The one-shot commands run interleaved (one of each per round) and "+x ms" is the median of the
per-round differences to ``python -c pass``: this machine's load comes in bursts, and medians
taken one command after the other were several ms apart from run to run.

Prints the times and the ratios. Not a test. ``bench/server.py`` calls :func:`measure` (with a
Kamailio it already runs) and prints :func:`report` in its table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from tests.interop.kamailio import Kamailio, ensure_kamailio  # noqa: E402


def wall(
    argv: Sequence[str],
    runs: int,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> float:
    """Median wall time of ``runs`` runs of ``argv`` (each must exit 0)."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, input=stdin, capture_output=True, check=True, env=env)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


MAIN_CODE = "import sys; from binrpc.cli.main import main; sys.exit(main())"


def interleaved(
    commands: Mapping[str, Sequence[str]], runs: int, env: Mapping[str, str] | None = None
) -> dict[str, list[float]]:
    """Wall times of ``runs`` rounds; each round runs every command once, in turn, so that a
    burst of load on this noisy machine hits all of them alike (each must exit 0)."""
    times: dict[str, list[float]] = {key: [] for key in commands}
    for _ in range(runs):
        for key, argv in commands.items():
            t0 = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=True, env=env)
            times[key].append(time.perf_counter() - t0)
    return times


def precompile(python: str, env: Mapping[str, str] | None = None) -> None:
    """Byte-compile the binrpc package that ``python`` imports (its .pyc files are then used
    even with PYTHONDONTWRITEBYTECODE set)."""
    where = subprocess.run(
        [python, "-c", "import binrpc, os; print(os.path.dirname(binrpc.__file__))"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    subprocess.run([python, "-m", "compileall", "-q", where], check=True, env=env)


def measure(
    sock: str,
    runs: int = 20,
    batch: int = 1000,
    *,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    loop_runs: int = 1,
) -> dict[str, float]:
    """Time the one-shot and batch cases against the ctl socket ``sock`` (kamcmd syntax).

    Returns seconds (medians): ``python``, ``binrpc_m`` (``python -m binrpc.cli.main``),
    ``binrpc_main`` (``python -c "from binrpc.cli.main import main ..."``), ``binrpc_script``
    (the console script, if found), ``import_only`` (``python -c "import binrpc.cli.main"``),
    ``kamcmd``, ``batch`` (``binrpc --batch`` with ``batch`` calls: the console script, else
    ``python -m``), ``batch_m`` (the batch with ``python -m``) and ``kamcmd_loop`` (a shell loop of
    ``batch`` kamcmd runs), plus ``batch_n``; ``<key>_over_python``: paired medians over
    ``python -c pass``. The package is byte-compiled first.
    """
    _kamailio, kamcmd = ensure_kamailio()
    precompile(python, env)
    binrpc = [python, "-m", "binrpc.cli.main"]
    one_shot = ["-s", sock, "core.version"]
    out: dict[str, float] = {"batch_n": float(batch)}
    commands: dict[str, list[str]] = {"python": [python, "-c", "pass"]}
    script = os.path.join(os.path.dirname(python), "binrpc")
    if os.access(script, os.X_OK):
        commands["binrpc_script"] = [script, *one_shot]
    commands["binrpc_main"] = [python, "-c", MAIN_CODE, *one_shot]
    commands["binrpc_m"] = [*binrpc, *one_shot]
    commands["import_only"] = [python, "-c", "import binrpc.cli.main"]
    commands["kamcmd"] = [kamcmd, *one_shot]
    times = interleaved(commands, runs, env)
    for key, values in times.items():
        out[key] = statistics.median(values)
        if key != "python":  # paired: this run minus python -c pass of the same round
            out[key + "_over_python"] = statistics.median(
                t - p for t, p in zip(values, times["python"], strict=True)
            )

    with tempfile.NamedTemporaryFile("w", suffix=".cmds", delete=False, dir="/tmp") as fh:
        fh.write("core.version\n" * batch)
        cmds = fh.name
    try:
        # the console script, as typed (the one-shot's "[console script]" row), and python -m
        batches: dict[str, list[str]] = {"python": [python, "-c", "pass"]}
        if "binrpc_script" in commands:
            batches["batch"] = [script, "-s", sock, "--batch", cmds]
        batches["batch_m"] = [*binrpc, "-s", sock, "--batch", cmds]
        times = interleaved(batches, max(3, runs // 2), env)
        for key in ("batch", "batch_m"):
            if key in times:
                out[key] = statistics.median(times[key])
                out[key + "_over_python"] = statistics.median(
                    t - p for t, p in zip(times[key], times["python"], strict=True)
                )
        out.setdefault("batch", out["batch_m"])
        out["kamcmd_loop"] = wall(
            [
                "sh",
                "-c",
                f'i=0; while [ $i -lt {batch} ]; do "{kamcmd}" -s "{sock}" '
                f"core.version >/dev/null; i=$((i+1)); done",
            ],
            loop_runs,
            env=env,
        )
    finally:
        os.unlink(cmds)
    return out


def report(m: Mapping[str, float]) -> list[str]:
    """The lines that :func:`main` prints for a :func:`measure` result."""
    py, theirs = m["python"], m["kamcmd"]
    n = int(m["batch_n"])
    lines = [f"python -c pass          {py * 1000:8.1f} ms"]
    for key, how in (
        ("binrpc_script", "console script"),
        ("binrpc_main", "python -c main()"),
        ("binrpc_m", "python -m"),
    ):
        if key in m:
            t = m[key]
            over = m.get(key + "_over_python", t - py) * 1000
            lines.append(
                f"binrpc core.version     {t * 1000:8.1f} ms  ({t / theirs:5.1f}x kamcmd, "
                f"{t / py:4.2f}x bare python, {over:+.1f} ms)  [{how}]"
            )
    if "import_only" in m:
        t = m["import_only"]
        extra = m.get("import_only_over_python", t - py) * 1000
        lines.append(
            f"import binrpc.cli.main{t * 1000:8.1f} ms  ({extra:+.1f} ms over bare python)"
        )
    lines.append(f"kamcmd core.version     {theirs * 1000:8.1f} ms")
    batch, loop = m["batch"], m["kamcmd_loop"]
    for key, how in (("batch", "console script"), ("batch_m", "python -m")):
        if key in m:
            t = m[key]
            over = m.get(key + "_over_python", t - py) * 1000
            lines.append(
                f"binrpc --batch ({n})    {t * 1000:8.1f} ms  ({loop / t:5.1f}x faster than the "
                f"loop, {over:+.1f} ms over bare python)  [{how}]"
            )
    lines.append(
        f"kamcmd shell loop ({n}) {loop * 1000:8.1f} ms  (batch is {loop / batch:5.1f}x faster; "
        f"{loop / n * 1000:.2f} ms per kamcmd run)"
    )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    ensure_kamailio()
    with Kamailio() as k:
        m = measure(k.addresses[0].kamcmd, args.runs, args.batch)
    for line in report(m):
        print(line)


if __name__ == "__main__":
    main()
