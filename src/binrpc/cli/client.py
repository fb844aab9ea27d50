"""``binrpc``: a drop-in replacement for kamcmd 1.5, with extensions (see ``binrpc -h`` and
docs/client.md).

Start-up is kept lean: the one-shot path imports neither asyncio nor prompt_toolkit (several
``-s`` use threads; the interactive mode imports prompt_toolkit only on a terminal).
"""

from __future__ import annotations

import io
import os
import sys

from .._address import AddressError
from .._errors import LocalProtocolError, RemoteProtocolError, TransportError
from ..client import Client, Timeouts
from ..client._core import DEFAULT_MAX_REPLY_SIZE
from ._options import Options, UsageExit, parse_args
from ._runner import (
    EXIT_ERROR,
    EXIT_FAULT,
    EXIT_OK,
    Quit,
    Runner,
    address_error_message,
    error_message,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import BinaryIO

__all__ = ["main"]


def _stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _worst(statuses: Sequence[int]) -> int:
    if EXIT_ERROR in statuses:
        return EXIT_ERROR
    if EXIT_FAULT in statuses:
        return EXIT_FAULT
    return max(statuses, default=EXIT_OK)


def make_client(opts: Options, address: str) -> Client:
    """A client for ``address`` as the options ask (raises AddressError)."""
    timeout = None if opts.timeout is None else Timeouts(opts.timeout, opts.timeout)
    tls = None
    if opts.tls or opts.tls_ca or opts.tls_cert or opts.tls_insecure or opts.tls_server_name:
        from ..client._tls import client_context  # imports ssl: only when TLS is asked for

        tls = client_context(
            True,
            cafile=opts.tls_ca,
            certfile=opts.tls_cert,
            keyfile=opts.tls_key,
            insecure=opts.tls_insecure,
        )
    return Client(
        address,
        timeout=timeout,
        reply_path=opts.reply_path,
        reply_dir=opts.reply_dir,
        udp_default=opts.udp_default,
        max_reply_size=opts.max_reply if opts.max_reply is not None else DEFAULT_MAX_REPLY_SIZE,
        tls=tls,
        server_hostname=opts.tls_server_name,
    )


def _open(
    opts: Options, address: str, out: BinaryIO, err: Callable[[str], object], prefix: bytes
) -> Runner | int:
    """Parse the address, connect (kamcmd connects before running anything, even builtins)."""
    try:
        client = make_client(opts, address)
    except AddressError as exc:
        err(address_error_message(address, exc))
        return _open_failed(opts, address, out, prefix, exc)
    try:
        client.connect()
    except TransportError as exc:
        client.close()
        err(error_message(exc, client.address))
        return _open_failed(opts, address, out, prefix, exc)
    runner = Runner(client, opts, out, err, prefix=prefix)
    runner.address = address
    return runner


def _open_failed(opts: Options, address: str, out: BinaryIO, prefix: bytes, exc: Exception) -> int:
    """With ``--json``, print the document of an address or connect error; return 255."""
    if opts.json:
        from ._jsondoc import exception_document, json_line

        out.write(json_line(exception_document(exc, address), address if prefix else None))
    return EXIT_ERROR


def _one_shot(runner: Runner, words: list[str]) -> int:
    try:
        return runner.run(words)
    except Quit:
        return EXIT_OK


def _batch_lines(source: str) -> list[str]:
    if source == "-":
        return sys.stdin.read().splitlines()
    with open(source, encoding="utf-8", errors="surrogateescape") as fh:
        return fh.read().splitlines()


def _run_nodes(opts: Options, job: Callable[[Runner], int]) -> int:
    """The same job on every ``-s`` node concurrently (threads); output grouped per node, in
    the order of the options, every line prefixed with ``[address] ``."""
    import threading

    results: list[tuple[int, bytes, str]] = [(EXIT_ERROR, b"", "")] * len(opts.sockets)

    def work(k: int, address: str) -> None:
        out = io.BytesIO()
        errs: list[str] = []
        prefix = f"[{address}] ".encode()

        def err(text: str) -> None:
            errs.extend(prefix.decode() + line + "\n" for line in text.splitlines())

        opened = _open(opts, address, out, err, prefix)
        if isinstance(opened, int):
            results[k] = (opened, out.getvalue(), "".join(errs))
            return
        try:
            status = job(opened)
        finally:
            opened.client.close()
        results[k] = (status, out.getvalue(), "".join(errs))

    threads = [
        threading.Thread(target=work, args=(k, a), daemon=True) for k, a in enumerate(opts.sockets)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stdout = sys.stdout.buffer
    for _status, data, errs in results:
        stdout.write(data)
        stdout.flush()
        if errs:
            _stderr(errs)
    return _worst([r[0] for r in results])


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``binrpc`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = parse_args(args, os.environ)
    except UsageExit as exc:
        if exc.stdout:
            sys.stdout.write(exc.stdout)
            sys.stdout.flush()
        if exc.stderr:
            _stderr(exc.stderr)
        return exc.status
    if opts.fifo is not None:
        from ._fifo_cmd import run_fifo

        status = run_fifo(opts, opts.words, sys.stdout.buffer)
        sys.stdout.flush()
        return status
    if not opts.sockets:
        from .._defaults import default_client_address

        opts.sockets = [default_client_address()]
    words = opts.words
    lines: list[str] | None = None
    if opts.batch is not None:
        try:
            lines = _batch_lines(opts.batch)
        except OSError as exc:
            _stderr(f"ERROR: cannot read {opts.batch}: {exc.strerror}\n")
            return EXIT_ERROR

    def job(runner: Runner) -> int:
        if lines is not None:
            from ._batch import run_batch

            return run_batch(runner, lines, words)
        return _one_shot(runner, words)

    if len(opts.sockets) > 1 and (words or lines is not None):
        return _run_nodes(opts, job)
    address = opts.sockets[-1]
    stdout = sys.stdout.buffer
    opened = _open(opts, address, stdout, _stderr, b"")
    if isinstance(opened, int):
        return opened
    try:
        if lines is None and not words:
            from ._repl import interactive

            return interactive(opened)
        return job(opened)
    except (TransportError, RemoteProtocolError, LocalProtocolError) as exc:  # pragma: no cover
        _stderr(error_message(exc, opened.client.address))
        return EXIT_ERROR
    except BrokenPipeError:
        return EXIT_ERROR
    finally:
        opened.client.close()
        try:
            stdout.flush()
        except BrokenPipeError:
            pass


def run() -> None:
    """Console-script entry: exit with :func:`main`'s status."""
    sys.exit(main())


if __name__ == "__main__":
    run()
