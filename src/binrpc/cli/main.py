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

    from _typeshed import ReadableBuffer

__all__ = ["main"]


# A ^C or a stdout whose reader went away ends binrpc as those signals end kamcmd: main()
# returns these statuses (128 + the signal number, what a shell shows for such a death) and
# run() dies of the signal itself, so that its parent (a shell loop, `head`) sees a death by
# SIGINT or SIGPIPE, with nothing on stderr.
EXIT_INTERRUPTED = 130  # SIGINT (2)
EXIT_BROKEN_PIPE = 141  # SIGPIPE (13)


def _stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``binrpc`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status:
    :data:`EXIT_INTERRUPTED` after a ^C, :data:`EXIT_BROKEN_PIPE` when stdout's reader went
    away (nothing printed on stderr for either; every connection closed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    stdout = _binary_stdout()
    try:
        status = _main(args, stdout)
        stdout.flush()  # a reader gone away shows here, not at the interpreter's exit
        sys.stdout.flush()
    except KeyboardInterrupt:
        try:
            stdout.flush()  # what was printed before the ^C
        except (OSError, ValueError):
            pass
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    return status


def _binary_stdout() -> BinaryIO:
    """``sys.stdout.buffer``, or with ``PYTHONUNBUFFERED`` (a raw stdout) a :class:`WholeWrites`
    on it."""
    out: BinaryIO = sys.stdout.buffer
    if isinstance(out, io.RawIOBase):
        return WholeWrites(out)  # type: ignore[return-value]  # a raw binary stream
    return out


class WholeWrites(io.RawIOBase):
    """An unbuffered binary stream whose writes are never partial. A raw write may write only
    part of its data (the reader went away in the middle, a signal); the rest is written
    then, so that it is never lost silently (a broken pipe raises ``BrokenPipeError``).
    Closing it leaves ``raw`` open."""

    def __init__(self, raw: io.RawIOBase) -> None:
        super().__init__()
        self._raw = raw

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._raw.fileno()

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            n = self._raw.write(view[done:])
            if n is None:  # a non-blocking descriptor, full: wait until it takes more
                import select

                select.select([], [self._raw], [])
                continue
            done += n
        return done


def _main(args: list[str], stdout: BinaryIO) -> int:
    try:
        opts = parse_args(args, os.environ)
    except UsageExit as exc:
        return _usage_exit(exc)
    if opts.fifo is not None:
        from ._fifo_cmd import run_fifo

        return run_fifo(opts, opts.words, stdout)
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

    # no command and no batch: the interactive mode
    command = job if words or lines is not None else None
    if len(opts.sockets) > 1:
        return _on_every_node(opts, command, stdout)
    return _on_one_node(opts, command, stdout)


def _usage_exit(exc: UsageExit) -> int:
    """Print what ``-h``, ``-V`` or a usage error has to say; return its status."""
    if exc.stdout:
        sys.stdout.write(exc.stdout)
        sys.stdout.flush()
    if exc.stderr:
        _stderr(exc.stderr)
    return exc.status


def _on_every_node(opts: Options, job: Callable[[Runner], int] | None, stdout: BinaryIO) -> int:
    """Several ``-s``: run ``job`` on each node at once, or (None) the interactive mode."""
    from ._fanout import Fanout

    def make(
        address: str, out: BinaryIO, err: Callable[[str], object], prefix: bytes
    ) -> Runner | int:
        return _open(opts, address, out, err, prefix)

    fanout = Fanout(opts.sockets, make, stdout, _stderr)
    try:
        if job is not None:
            return fanout.run_concurrently(job)
        from ._repl import interactive_nodes

        return interactive_nodes(fanout, opts.program)
    finally:
        fanout.close()


def _on_one_node(opts: Options, job: Callable[[Runner], int] | None, stdout: BinaryIO) -> int:
    """One node (the last ``-s``): run ``job`` on it, or (None) the interactive mode."""
    address = opts.sockets[-1]
    opened = _open(opts, address, stdout, _stderr, b"")
    if isinstance(opened, int):
        return opened
    try:
        if job is None:
            from ._repl import interactive

            return interactive(opened)
        return job(opened)
    except (TransportError, RemoteProtocolError, LocalProtocolError) as exc:  # pragma: no cover
        _stderr(error_message(exc, opened.client.address))
        return EXIT_ERROR
    finally:
        opened.client.close()


def _die(signum: int) -> None:
    """End the process by signal ``signum``, with its default action."""
    import signal  # imports enum: only on the way out

    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
    os._exit(128 + signum)  # pragma: no cover - not reached: the signal ended the process


def run() -> None:
    """Console-script entry: exit with :func:`main`'s status; die of SIGINT after a ^C and of
    SIGPIPE when stdout's reader went away, as kamcmd does (a shell shows 130 and 141)."""
    status = main()
    if status in (EXIT_INTERRUPTED, EXIT_BROKEN_PIPE):
        _die(status - 128)
    sys.exit(status)


if __name__ == "__main__":
    run()
