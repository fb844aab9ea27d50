"""The interactive mode (no method on the command line), as kamcmd's (spec kamcmd 5).

* On a terminal: prompt_toolkit, with tab completion (method names from ``system.listMethods``,
  aliases, builtins; cfg group/variable and counter group/name parameters, as kamcmd) and a
  persistent history file: ``$BINRPC_HISTORY``, default ``~/.binrpc_history``, created 0600;
  an empty ``BINRPC_HISTORY`` keeps the history in memory only. Without prompt_toolkit: a
  plain reader.
* Otherwise (piped input): a plain line reader that, like kamcmd with readline, prints the
  prompt and echoes each line, so piped sessions give the same output as kamcmd's.

With several ``-s`` every line goes to every node (``_fanout``). ^C during a line abandons
it (its connections closed) and returns to the prompt.

Lines are split on spaces and TABs (no quoting, as kamcmd); the banner and the ``kamcmd> ``
prompt are kept so that scripts driving kamcmd keep working (the banner names binrpc).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO, Final

from .._codec import MsgType
from .._errors import DecodeError, RemoteProtocolError, TransportError
from ._commands import ALIASES, BUILTINS, banner
from ._render import render_fault
from ._runner import EXIT_ERROR, EXIT_OK, Quit, Runner

if TYPE_CHECKING:
    from ._fanout import Fanout, Job

__all__ = [
    "PROMPT",
    "CompletionData",
    "history_path",
    "interactive",
    "interactive_nodes",
    "open_history_file",
    "split_line",
]

PROMPT: Final = "kamcmd> "
_TRIM: Final = " \t\r\n"

HELP_LIKE: Final = ("?", "h", "help", "system.methodHelp", "system.methodSignature")
CFG_CMDS: Final = (
    "cfg.get",
    "cfg.help",
    "cfg.set_delayed_int",
    "cfg.set_delayed_string",
    "cfg.set_now_int",
    "cfg.set_now_string",
)
CNT_GROUP_CMDS: Final = (
    "cnt.get",
    "cnt.get_raw",
    "cnt.grp_get_all",
    "cnt.reset",
    "cnt.var_list",
    "cnt.help",
)
CNT_NAME_CMDS: Final = ("cnt.get", "cnt.get_raw", "cnt.reset", "cnt.help")


def split_line(line: str) -> list[str]:
    """kamcmd's word splitting: trim, then split on runs of spaces and TABs (no quoting)."""
    return [w for w in line.strip(_TRIM).replace("\t", " ").split(" ") if w]


def history_path() -> str | None:
    """The history file, or None for an in-memory history."""
    env = os.environ.get("BINRPC_HISTORY")
    if env is not None:
        return env or None
    return os.path.join(os.path.expanduser("~"), ".binrpc_history")


def open_history_file(path: str) -> None:
    """Make sure the history file exists, created with mode 0600: it holds everything typed,
    parameters included. An existing file keeps its mode (never widened, nor narrowed).

    Raises:
        OSError: the file cannot be opened for appending.
    """
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))


class CompletionData:
    """What can be completed, fetched once at start-up like kamcmd."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.cfg: dict[str, list[str]] = {}
        self.counters: dict[str, list[str]] = {}

    def candidates(self, words: list[str]) -> list[str]:
        """Completions for the word after ``words`` (the words already complete)."""
        if not words:
            return self.commands
        cmd = words[0]
        if len(words) == 1:
            if cmd in HELP_LIKE:
                return self.commands
            if cmd in CFG_CMDS:
                return sorted(self.cfg)
            if cmd in CNT_GROUP_CMDS:
                return sorted(self.counters)
        if len(words) == 2:
            if cmd in CFG_CMDS:
                return self.cfg.get(words[1], [])
            if cmd in CNT_NAME_CMDS:
                return self.counters.get(words[1], [])
        return []


def _strings(runner: Runner, method: str, *params: str) -> list[str]:
    """The string values of an RPC's reply; faults printed, transport errors silent."""
    try:
        reply = runner.client.request(method, params)
    except (TransportError, RemoteProtocolError):
        return []
    if reply.type == MsgType.FAULT:
        runner.write(render_fault(reply.body).out)
        return []
    try:
        return [v for v in reply.values() if isinstance(v, str)]
    except DecodeError:
        return []


def fetch_completion(runner: Runner) -> CompletionData:
    data = CompletionData()
    methods = runner.fetch_methods() or []
    data.commands = [a.name for a in ALIASES] + list(BUILTINS) + ["h"] + methods
    if "cfg.list" in methods:
        for item in _strings(runner, "cfg.list"):
            group, sep, var = item.partition(": ")
            if sep:
                data.cfg.setdefault(group, []).append(var)
    if "cnt.grps_list" in methods:
        for group in _strings(runner, "cnt.grps_list"):
            data.counters[group] = _strings(runner, "cnt.var_list", group)
    return data


def _execute(run: Callable[[Job], object], out: BinaryIO, line: str) -> bool:
    """Run one line; False when the session must end."""
    words = split_line(line)
    if not words:
        return True
    try:
        run(lambda runner: runner.run(words, interactive=True))
    except Quit:
        return False
    finally:
        out.flush()
    return True


def interrupted_text() -> bytes:
    """What to print after a ^C: ``^C`` and a new line, or only the new line when stdin is a
    terminal in line mode echoing control characters (ECHOCTL: the terminal has shown the
    ``^C`` already)."""
    import termios

    try:
        lflag = termios.tcgetattr(sys.stdin.fileno())[3]
    except (OSError, ValueError, AttributeError, termios.error):  # not a terminal
        return b"^C\n"
    shown = termios.ECHO | termios.ECHOCTL | termios.ICANON
    return b"\n" if lflag & shown == shown else b"^C\n"


def readline_tabs(line: str, data: CompletionData) -> tuple[str, int]:
    """What GNU readline makes of TABs in piped input: each TAB completes the word before it
    (a unique match is inserted with a trailing space, several matches their common prefix,
    none nothing), so the TAB itself never reaches the command, as with kamcmd. Returns the line
    and the number of bells readline rings (no match, or an ambiguous one)."""
    if "\t" not in line:
        return line, 0
    out = ""
    bells = 0
    for ch in line:
        if ch != "\t":
            out += ch
            continue
        parts = out.split(" ")
        current = parts[-1]
        done = [w for w in parts[:-1] if w]
        matches = sorted({c for c in data.candidates(done) if c.startswith(current)})
        if len(matches) == 1:
            out += matches[0][len(current) :] + " "
        else:
            bells += 1
            if matches:
                out += os.path.commonprefix(matches)[len(current) :]  # noqa: RUF071
    return out, bells


def _plain_lines(
    echo: bool, out: BinaryIO, err: Callable[[str], object], data: CompletionData
) -> Iterator[str]:
    stdin = sys.stdin.buffer
    while True:
        out.write(PROMPT.encode())
        out.flush()
        try:
            raw = stdin.readline()
        except KeyboardInterrupt:  # ^C at the prompt: a new prompt
            out.write(interrupted_text())
            continue
        if not raw:
            return
        line = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        if echo:
            line, bells = readline_tabs(line, data)
            if bells:
                err("\a" * bells)
            out.write(line.encode("utf-8", "surrogateescape") + b"\n")
        yield line


def _prompt_toolkit_lines(data: CompletionData) -> Iterable[str] | None:
    try:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import Completer, Completion
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory
    except ImportError:  # pragma: no cover - prompt_toolkit is an optional dependency
        return None

    class _Completer(Completer):
        def get_completions(self, document, complete_event):  # type: ignore[no-untyped-def]
            text = document.text_before_cursor
            parts = text.replace("\t", " ").split(" ")
            current = parts[-1]
            done = [w for w in parts[:-1] if w]
            for cand in sorted(set(data.candidates(done))):
                if cand.startswith(current):
                    yield Completion(cand, start_position=-len(current))

    class _PrivateHistory(FileHistory):
        def store_string(self, string: str) -> None:
            open_history_file(str(self.filename))  # removed meanwhile: created 0600 again
            super().store_string(string)

    path = history_path()
    history: History = InMemoryHistory()
    if path is not None:
        try:
            open_history_file(path)
            history = _PrivateHistory(path)
        except OSError:
            history = InMemoryHistory()
    session: PromptSession[str] = PromptSession(
        history=history, completer=_Completer(), complete_while_typing=False
    )

    def lines() -> Iterator[str]:
        while True:
            try:
                yield session.prompt(PROMPT)
            except KeyboardInterrupt:
                continue
            except EOFError:
                return

    return lines()


def interactive(runner: Runner) -> int:
    """The interactive session on one node; returns 0 (kamcmd's status whatever happened
    inside)."""
    data = fetch_completion(runner)
    return _session(
        data,
        runner.opts.program,
        runner.out,
        runner.err,
        run=lambda job: job(runner),
        abandon=runner.client.close,
    )


def interactive_nodes(fanout: Fanout, program: str) -> int:
    """The interactive session with several ``-s``: every line goes to every node, in the
    order of the options, printed as the one-shot fan-out prints it. Completion comes from
    the first node that connects; 255 (the errors printed) when none does, else 0."""
    found: list[CompletionData] = []

    def first_completion(runner: Runner) -> int:
        if not found:
            found.append(fetch_completion(runner))
        return EXIT_OK

    fanout.run(first_completion)  # connects every node, as a one-shot call would
    if not found:
        return EXIT_ERROR
    return _session(
        found[0], program, fanout.stdout, fanout.stderr, run=fanout.run, abandon=fanout.abandon
    )


def _session(
    data: CompletionData,
    program: str,
    out: BinaryIO,
    err: Callable[[str], object],
    *,
    run: Callable[[Job], object],
    abandon: Callable[[], object],
) -> int:
    """Print the banner of ``program``, read lines and ``run`` each. A ^C during a line calls
    ``abandon`` (which drops the connections, so that a late reply is never read as the answer
    to the next line), prints ``^C`` and goes back to the prompt."""
    out.write(banner(program).encode())
    out.flush()
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    lines: Iterable[str] | None = None
    if tty:
        lines = _prompt_toolkit_lines(data)
    if lines is None:
        lines = _plain_lines(not tty, out, err, data)
    for line in lines:
        try:
            if not _execute(run, out, line):
                break
        except KeyboardInterrupt:
            abandon()
            out.write(interrupted_text())
            out.flush()
    return EXIT_OK
