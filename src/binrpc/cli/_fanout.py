"""Several ``-s``: every command goes to every node, and each node's output is printed as one
block, in the order of the options, every line prefixed with ``[address] `` (stdout and
stderr alike).

The one-shot mode and ``--batch`` run the nodes concurrently (threads); the interactive mode
runs them one after the other, so that ^C abandons exactly the call in progress. Both print
the same bytes for the same command.
"""

from __future__ import annotations

import io

from ._runner import EXIT_ERROR, Runner, worst_status

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import BinaryIO, TypeAlias

    Job: TypeAlias = Callable[[Runner], int]
    """What to do on one node's runner; returns the exit status."""
    Open: TypeAlias = Callable[[str, BinaryIO, Callable[[str], object], bytes], Runner | int]
    """``(address, out, err, prefix)`` -> a connected runner, or the exit status of a failure
    (its error sent to ``err``/``out``)."""

__all__ = ["Fanout", "Node"]


class Node:
    """One ``-s`` address: a runner whose stdout and stderr are collected, prefixed, until
    :meth:`flush` prints them."""

    __slots__ = ("_errs", "_open", "address", "out", "prefix", "runner")

    def __init__(self, address: str, open_runner: Open) -> None:
        self.address = address
        self.prefix = f"[{address}] "
        self.out = io.BytesIO()
        self._errs: list[str] = []
        self._open = open_runner
        self.runner: Runner | None = None

    def err(self, text: str) -> None:
        self._errs.extend(self.prefix + line + "\n" for line in text.splitlines())

    def run(self, job: Job) -> int:
        """Connect unless connected (kamcmd connects before running anything, even builtins;
        a connection that failed is tried again), then ``job``; the exit status (255 when the
        address or the connection fails, whose error is collected like any output)."""
        if self.runner is None:
            opened = self._open(self.address, self.out, self.err, self.prefix.encode())
            if isinstance(opened, int):
                return opened
            self.runner = opened
        return job(self.runner)

    def flush(self, stdout: BinaryIO, stderr: Callable[[str], object]) -> None:
        """Print what was collected (stdout first) and forget it."""
        data, errs = self.out.getvalue(), "".join(self._errs)
        self.discard()
        stdout.write(data)
        stdout.flush()
        if errs:
            stderr(errs)

    def discard(self) -> None:
        """Forget what was collected (an abandoned call)."""
        self.out.seek(0)
        self.out.truncate()
        self._errs.clear()

    def close(self) -> None:
        """Close the node's connection (its next request opens a new one)."""
        if self.runner is not None:
            self.runner.client.close()


class Fanout:
    """The nodes of several ``-s``, printing to ``stdout`` and ``stderr``."""

    def __init__(
        self,
        addresses: Sequence[str],
        open_runner: Open,
        stdout: BinaryIO,
        stderr: Callable[[str], object],
    ) -> None:
        self.nodes = [Node(a, open_runner) for a in addresses]
        self.stdout = stdout
        self.stderr = stderr
        self._closing = False

    def run(self, job: Job) -> int:
        """``job`` on every node in turn, each node's block printed as soon as it is done;
        the worst status (255 > 1 > 0). An exception (``Quit``, ``KeyboardInterrupt``) stops
        at the node that raised it: see :meth:`abandon`."""
        statuses = []
        for node in self.nodes:
            statuses.append(node.run(job))
            node.flush(self.stdout, self.stderr)
        return worst_status(statuses)

    def run_concurrently(self, job: Job) -> int:
        """``job`` on every node at once (a thread each), then every block in order; the
        worst status."""
        import threading

        statuses = [EXIT_ERROR] * len(self.nodes)

        def work(k: int) -> None:
            try:
                statuses[k] = self.nodes[k].run(job)
            except BaseException:
                if not self._closing:
                    raise
                # its connection closed under it (^C in the main thread): nothing to tell

        threads = [
            threading.Thread(target=work, args=(k,), daemon=True) for k in range(len(self.nodes))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for node in self.nodes:
            node.flush(self.stdout, self.stderr)
        return worst_status(statuses)

    def abandon(self) -> None:
        """Drop the call in progress (^C): close every connection, so that no late reply can
        be read as the answer to the next command, and forget the output not yet printed."""
        for node in self.nodes:
            node.close()
            node.discard()

    def close(self) -> None:
        """Close every connection, even under a thread still running a job on it (^C during
        :meth:`run_concurrently`: the process is ending)."""
        self._closing = True
        for node in self.nodes:
            node.close()
