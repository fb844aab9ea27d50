"""The driver shared by the fuzz targets: atheris (coverage-guided) or a built-in mutation loop.

A target module defines ``check(data: bytes) -> None`` (raises :class:`AssertionError` when the
parser broke its invariant), ``SEEDS`` (valid-ish inputs to mutate) and ``TOKENS`` (fragments
spliced in by the mutator and given to libFuzzer as a dictionary), optionally ``generate(rng)``
(structure-aware inputs for half of the built-in loop's runs), then calls :func:`main`.

Two modes:

* ``--atheris [libFuzzer flags]``: coverage-guided with atheris (``pip install atheris``;
  prebuilt wheels for Linux x86_64). Everything imported so far is instrumented; the seeds are
  written to a corpus directory; ``-timeout`` (default 10 s per input) and ``-rss_limit_mb``
  (default 2048) are libFuzzer's. Example::

      .venv/bin/python fuzz/fifo_target.py --atheris -runs=1000000

* the built-in loop (no dependency): ``--runs N --seed S``. Each input gets a watchdog
  (``--timeout`` seconds, SIGALRM): a parser that does not return in time is reported as a
  hang with its input. ``--rss-limit-mb`` caps the address space (RLIMIT_AS), so that a parser
  that allocates without bound fails with MemoryError (reported as a failure) instead of
  swapping the machine. Failures are printed (hex input) and saved under ``--artifacts``.

Both print one summary line: ``<target>: N inputs, F failures, T s, R inputs/s, peak RSS M MiB``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Hang", "main", "mutate", "run_loop"]


class Hang(Exception):
    """Raised by the watchdog when one input takes longer than the timeout."""


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


def mutate(
    rng: random.Random, data: bytes, seeds: Sequence[bytes], tokens: Sequence[bytes]
) -> bytes:
    """A few random edits: flip, insert, delete, truncate, splice a seed or a token, repeat."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        if op < 0.25 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op < 0.4:
            buf.insert(rng.randint(0, len(buf)), rng.randrange(256))
        elif op < 0.55 and buf:
            start = rng.randrange(len(buf))
            del buf[start : start + rng.randint(1, 8)]
        elif op < 0.62:
            buf = buf[: rng.randint(0, len(buf))]
        elif op < 0.8 and tokens:
            at = rng.randint(0, len(buf))
            buf[at:at] = rng.choice(tokens)
        elif op < 0.9 and seeds:
            other = rng.choice(seeds)
            at = rng.randint(0, len(buf))
            buf[at:at] = other[rng.randint(0, len(other)) :]
        elif buf:
            # repeat a slice: long lines, deep nesting, many separators
            start = rng.randrange(len(buf))
            piece = bytes(buf[start : start + rng.randint(1, 6)])
            buf[start:start] = piece * rng.randint(2, 200)
    return bytes(buf)


def _generate(
    rng: random.Random,
    seeds: Sequence[bytes],
    tokens: Sequence[bytes],
    generate: Callable[[random.Random], bytes] | None = None,
) -> bytes:
    roll = rng.random()
    if generate is not None and roll < 0.5:
        data = generate(rng)
        return mutate(rng, data, seeds, tokens) if rng.random() < 0.2 else data
    if roll < 0.15:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 48)))
    if roll < 0.3 and tokens:
        return b"".join(rng.choice(tokens) for _ in range(rng.randint(1, 12)))
    data = rng.choice(seeds) if seeds else b""
    return mutate(rng, data, seeds, tokens)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_loop(
    check: Callable[[bytes], None],
    seeds: Sequence[bytes],
    tokens: Sequence[bytes],
    *,
    runs: int,
    seed: int,
    timeout: float = 5.0,
    max_time: float | None = None,
    artifacts: str | None = None,
    name: str = "target",
    max_failures: int = 20,
    generate: Callable[[random.Random], bytes] | None = None,
) -> tuple[int, list[tuple[bytes, str]]]:
    """The built-in mutation loop: ``(inputs checked, [(input, error)])``."""
    rng = random.Random(seed)
    failures: list[tuple[bytes, str]] = []
    # grow a small corpus from the inputs that passed: mutations of mutations go deeper
    corpus = list(seeds)
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    start = time.monotonic()
    done = 0
    try:
        for done in range(1, runs + 1):
            data = _generate(rng, corpus, tokens, generate)
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                check(data)
            except Hang:
                failures.append((data, f"hang: no result within {timeout} s"))
            except AssertionError as exc:
                failures.append((data, str(exc)))
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            if failures and failures[-1][0] is data:
                if artifacts:
                    _save(artifacts, name, data, failures[-1][1])
                if len(failures) >= max_failures:
                    break
            elif len(corpus) < 2000 and rng.random() < 0.01:
                corpus.append(data)
            if max_time is not None and done % 256 == 0 and time.monotonic() - start > max_time:
                break
    finally:
        signal.signal(signal.SIGALRM, previous)
    return done, failures


def _save(directory: str, name: str, data: bytes, error: str) -> None:
    os.makedirs(directory, exist_ok=True)
    digest = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(directory, f"{name}-{digest}.bin"), "wb") as fh:
        fh.write(data)
    with open(os.path.join(directory, f"{name}-{digest}.txt"), "w") as fh:
        fh.write(error + "\n")


INSTRUMENTED = ("binrpc", "fuzz", "tomllib")
"""Packages whose code gets coverage instrumentation (all of it is 3x slower, for nothing)."""


def _instrument(atheris: Any) -> None:
    try:
        from atheris.instrument_bytecode import _is_instrumentable  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:  # another atheris version: instrument everything
        atheris.instrument_all()
        return
    count = 0
    for obj in gc.get_objects():
        module = getattr(obj, "__module__", None) or ""
        if module.split(".")[0] in INSTRUMENTED and _is_instrumentable(obj):
            atheris.instrument_func(obj)
            count += 1
    print(f"INFO: instrumented {count} functions of {', '.join(INSTRUMENTED)}", file=sys.stderr)


def _run_atheris(
    check: Callable[[bytes], None],
    seeds: Sequence[bytes],
    tokens: Sequence[bytes],
    name: str,
    flags: list[str],
) -> None:
    import atheris  # type: ignore[import-not-found, import-untyped, unused-ignore]

    corpus = tempfile.mkdtemp(prefix=f"binrpc-fuzz-{name}-", dir="/tmp")
    for i, seed in enumerate(seeds):
        with open(os.path.join(corpus, f"seed-{i}"), "wb") as fh:
            fh.write(seed)
    dict_path = os.path.join(corpus, "tokens.dict")
    with open(dict_path, "w") as text:
        for token in tokens:
            text.write('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n')
    defaults = {"-timeout": "10", "-rss_limit_mb": "2048", "-dict": dict_path}
    for flag, value in defaults.items():
        if not any(f.startswith(flag + "=") for f in flags):
            flags.append(f"{flag}={value}")
    if not any(f.startswith("-artifact_prefix=") for f in flags):
        flags.append(f"-artifact_prefix={corpus}/")
    argv = [sys.argv[0], *flags, corpus]
    print(f"{name}: atheris corpus and artifacts in {corpus}", file=sys.stderr)

    def one(data: bytes) -> None:
        check(data)

    _instrument(atheris)
    atheris.Setup(argv, one)
    atheris.Fuzz()


def main(
    name: str,
    check: Callable[[bytes], None],
    seeds: Sequence[bytes],
    tokens: Sequence[bytes] = (),
    *,
    argv: Sequence[str] | None = None,
    generate: Callable[[random.Random], bytes] | None = None,
) -> int:
    """Command line of every target (see the module docstring). Returns the exit status."""
    logging.disable(logging.CRITICAL)  # handlers' "raised an exception" logs: noise here
    args_in = list(sys.argv[1:] if argv is None else argv)
    if "--atheris" in args_in:
        args_in.remove("--atheris")
        _run_atheris(check, seeds, tokens, name, args_in)
        return 0
    parser = argparse.ArgumentParser(prog=name, description=f"fuzz {name} (built-in loop)")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per input")
    parser.add_argument("--max-time", type=float, default=None, help="stop after seconds")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--artifacts", default=None, help="save failing inputs here")
    args = parser.parse_args(args_in)
    if args.rss_limit_mb > 0:
        limit = args.rss_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    start = time.monotonic()
    n, failures = run_loop(
        check,
        seeds,
        tokens,
        runs=args.runs,
        seed=args.seed,
        timeout=args.timeout,
        max_time=args.max_time,
        artifacts=args.artifacts,
        name=name,
        generate=generate,
    )
    elapsed = time.monotonic() - start
    for data, error in failures[:5]:
        print(f"FAIL {error}\n  input {data[:200].hex()}", file=sys.stderr)
    print(
        f"{name}: {n} inputs, {len(failures)} failures, seed {args.seed}, {elapsed:.1f} s, "
        f"{n / max(elapsed, 1e-9):.0f} inputs/s, peak RSS {_peak_rss_mib():.0f} MiB",
        flush=True,
    )
    return 1 if failures else 0
