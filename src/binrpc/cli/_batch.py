"""``binrpc --batch``: every command of a file on one connection, pipelined.

Lines are parsed in order (shell-like words, ``#`` comments, blank lines skipped) and planned
by the :class:`Runner` without I/O: a request to send, or a local action (a builtin, an
argument error). Requests go out ahead of their replies (``Client.pipeline``: a window of up
to 64 in flight, replies matched by cookie); everything is printed strictly in input order,
with the very rendering of a one-at-a-time run (``-f``, ``--json``, ``-v``, faults, errors).

* A fault or an error does not stop the batch.
* ``quit`` / ``exit`` stops it: the lines after it are never sent (they are not even parsed);
  the replies to the lines before it are all printed.
* When the connection fails (closed by the server, reset, read timeout), every request in
  flight on it is reported as an error on its own (the same message for each, in order: it
  may or may not have been executed) and the lines after them go on a new connection; a line
  is never sent twice, never silently dropped.
* ``-vvv`` (hex dumps of every read) runs one command at a time, as kamcmd.
"""

from __future__ import annotations

import io

from ..client._pipeline import DEFAULT_WINDOW, open_pipeline
from ._runner import EXIT_OK, RPC, Call, Quit, worst_status

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from typing import BinaryIO

    from .._values import Value
    from ._runner import Local, Runner

__all__ = ["run_batch", "split_line"]


def split_line(line: str) -> list[str]:
    """The words of a batch line, as ``shlex.split(line, comments=True)``.

    Raises:
        ValueError: unbalanced quotes, a final backslash (shlex's message).
    """
    # most lines have no quoting: str.split gives shlex's result 20x faster, as long as the
    # only whitespace is shlex's (printable ASCII and TABs: spaces and TABs only)
    if (
        "'" not in line
        and '"' not in line
        and "\\" not in line
        and "#" not in line
        and line.isascii()
        and (line.isprintable() or line.replace("\t", " ").isprintable())
    ):
        return line.split()
    import shlex

    return shlex.split(line, comments=True)


def run_batch(runner: Runner, lines: list[str], first: list[str] | None = None) -> int:
    """Run ``first`` (the command line's method and arguments, if any) then every line, in
    order, on the runner's connection; return the worst status (255 > 1 > 0)."""
    if runner.opts.verbose >= 3:
        return _one_at_a_time(runner, lines, first)
    # stdout is written in blocks (even with PYTHONUNBUFFERED, whose raw stdout would cost a
    # write per line), flushed before anything goes to stderr (the two keep their relative
    # order), whenever the pipeline waits for the server, and at the end
    out, err = runner.out, runner.err
    raw = isinstance(out, io.RawIOBase)
    buffered: BinaryIO = io.BufferedWriter(out, 1 << 16) if raw else out

    def err_after_out(text: str) -> object:
        buffered.flush()
        return err(text)

    runner.out, runner.err = buffered, err_after_out
    try:
        return _pipelined(runner, lines, first, buffered.flush)
    finally:
        runner.out, runner.err = out, err
        if raw:
            buffered.detach()  # type: ignore[attr-defined]  # flushes; never closes stdout
        else:
            buffered.flush()


def _pipelined(
    runner: Runner, lines: list[str], first: list[str] | None, on_wait: Callable[[], object]
) -> int:
    jobs: list[Call | Local] = []  # planned, in order (_requests() appends)
    worst = EXIT_OK  # 255 > 1 > 0: the numeric maximum
    done = 0  # jobs run or printed
    show = runner.show
    show_rpc = runner.show_rpc
    requests = _requests(runner, lines, first, jobs)
    pipeline = open_pipeline(runner.client, requests, DEFAULT_WINDOW, on_wait)
    # the i-th result is the i-th Call's: the local jobs before that Call run first
    for chunk in pipeline.chunks():
        for result in chunk:
            job = jobs[done]
            done += 1
            while not isinstance(job, Call):
                worst = max(worst, job())
                job = jobs[done]
                done += 1
            if job.kind == RPC:
                worst = max(worst, show_rpc(result, job.fmt))
            else:
                worst = max(worst, show(job, result))
        if done > 1024:
            del jobs[:done]
            done = 0
    for job in jobs[done:]:  # local jobs after the last request
        assert not isinstance(job, Call)
        status = job()
        worst = max(worst, status)
    return worst


def _requests(
    runner: Runner, lines: list[str], first: list[str] | None, jobs: list[Call | Local]
) -> Iterator[tuple[str, Sequence[Value]]]:
    """Plan ``first`` then each line as the pipeline takes them: every job is appended to
    ``jobs`` (in order), the requests among them are yielded; stops at ``quit``."""
    plan = runner.plan
    append = jobs.append
    if first:
        try:
            job = plan(first)
        except Quit:
            return
        append(job)
        if isinstance(job, Call):
            yield job.method, job.params
    for lineno, line in enumerate(lines, 1):
        try:
            words = split_line(line)
        except ValueError as exc:
            append(runner.failing(f"ERROR: line {lineno}: {exc}\n"))
            continue
        if not words:
            continue
        try:
            job = plan(words)
        except Quit:
            return  # nothing after it is parsed, let alone sent
        append(job)
        if isinstance(job, Call):
            yield job.method, job.params


def _parsed(
    lines: list[str], first: list[str] | None
) -> Iterator[tuple[int, list[str] | ValueError]]:
    """``(line number, words)`` of every command (``first`` is line 0), or the parse error."""
    if first:
        yield 0, first
    for lineno, line in enumerate(lines, 1):
        try:
            words = split_line(line)
        except ValueError as exc:
            yield lineno, exc
            continue
        if words:
            yield lineno, words


def _one_at_a_time(runner: Runner, lines: list[str], first: list[str] | None) -> int:
    statuses: list[int] = []
    for lineno, words in _parsed(lines, first):
        if isinstance(words, ValueError):
            statuses.append(runner.failing(f"ERROR: line {lineno}: {words}\n")())
            continue
        try:
            statuses.append(runner.run(words))
        except Quit:
            break
    return worst_status(statuses)
