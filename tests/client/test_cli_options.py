"""The ``binrpc`` option table (cli/_options.py): each option is declared once, and parsing,
``-h`` and the :class:`Options` fields all come from that declaration."""

from __future__ import annotations

from pathlib import Path

import pytest

from binrpc import __version__
from binrpc.cli._commands import banner, license_text, version_text
from binrpc.cli._options import (
    APPEND,
    COUNT,
    EXIT,
    KAMCMD,
    OPTIONS,
    Option,
    Options,
    UsageExit,
    option_head,
    parse_args,
    usage_text,
)

HELP = Path(__file__).parent / "data" / "binrpc-h.txt"


def _ids(opt: Option) -> str:
    return opt.name or opt.long or opt.short


def test_help_is_byte_identical_to_the_published_one() -> None:
    # kamcmd compatibility: scripts and the docs quote `binrpc -h`; any change is deliberate
    assert usage_text() == HELP.read_text().replace("{version}", __version__, 1)


def test_fields_are_the_options_of_the_table() -> None:
    named = [o.name for o in OPTIONS if o.store != EXIT]
    assert all(named) and len(set(named)) == len(named)
    assert (*named, "words", "program") == Options.FIELDS
    assert not any(o.name for o in OPTIONS if o.store == EXIT)
    # the declarations are gone from the class: the instance holds the values
    assert not any(isinstance(v, Option) for v in vars(Options).values())
    letters = [o.short for o in OPTIONS if o.short]
    longs = [o.long for o in OPTIONS if o.long]
    assert len(set(letters)) == len(letters) and len(set(longs)) == len(longs)


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_every_option_is_in_the_help(opt: Option) -> None:
    text = usage_text()
    section = text.index("Options (as") if opt.section == KAMCMD else text.index("Extensions")
    first, *rest = opt.help.split("\n")
    row = f"    {option_head(opt)} "
    at = text.index(row, section)
    assert text[at:].split("\n", 1)[0].endswith(first)
    for line in rest:
        assert f" {line}\n" in text[at:]
    assert len(option_head(opt)) <= (10 if opt.section == KAMCMD else 22)  # fits its column


def _spellings(opt: Option, arg: str | None) -> list[list[str]]:
    """Every way to write ``opt`` (with ``arg``) on the command line."""
    out: list[list[str]] = []
    if opt.short:
        out += (
            [[f"-{opt.short}"]] if arg is None else [[f"-{opt.short}", arg], [f"-{opt.short}{arg}"]]
        )
    if opt.long:
        out += (
            [[f"--{opt.long}"]]
            if arg is None
            else [[f"--{opt.long}", arg], [f"--{opt.long}={arg}"]]
        )
    return out


@pytest.mark.parametrize("opt", OPTIONS, ids=_ids)
def test_every_option_parses_in_every_spelling(opt: Option) -> None:
    arg = "5" if opt.metavar else None  # "5" suits every converter (-f, -t, --max-reply)
    spellings = _spellings(opt, arg)
    assert spellings
    for argv in spellings:
        if opt.store == EXIT:
            with pytest.raises(UsageExit) as info:
                parse_args([*argv, "m"], {}, program="prog")
            assert info.value.status == 0
            assert opt.exits is not None and info.value.stdout == opt.exits("prog")
            continue
        opts = parse_args([*argv, "m"], {})
        value = "5" if opt.convert is None or arg is None else opt.convert(arg)
        expected: object
        if opt.store == COUNT:
            expected = 1
        elif arg is None:
            expected = True
        else:
            expected = [value] if opt.store == APPEND else value
        assert getattr(opts, opt.name) == expected, argv
        assert opts.words == ["m"]
        # and nothing else moved from its default
        rest = Options(**{opt.name: expected, "words": ["m"]})
        assert opts == rest


def test_defaults_and_the_options_object() -> None:
    opts = Options()
    for opt in OPTIONS:
        if opt.name:
            assert getattr(opts, opt.name) == opt.default()
    assert Options().sockets is not Options().sockets  # a new list each time
    assert opts.words == [] and opts.program == "binrpc"
    assert Options(json=True) != opts and Options(json=True) == Options(json=True)
    assert repr(Options()).startswith("Options(sockets=[], reply_path=None,")
    with pytest.raises(TypeError, match="nope"):
        Options(nope=1)


def test_the_program_name_goes_through_the_options() -> None:
    assert parse_args(["m"], {}).program == "binrpc"
    opts = parse_args(["m"], {}, program="kamctl-rpc")
    assert opts.program == "kamctl-rpc"
    with pytest.raises(UsageExit) as info:
        parse_args(["-h"], {}, program="kamctl-rpc")
    text = info.value.stdout
    assert text.startswith(f"version: kamctl-rpc {__version__}\nUsage: kamctl-rpc [options]")
    assert "binrpc -s" not in text and "        kamctl-rpc ps  # uses default" in text
    with pytest.raises(UsageExit) as info:
        parse_args(["-V"], {}, program="kamctl-rpc")
    assert info.value.stdout == version_text("kamctl-rpc")
    assert version_text("x").startswith(f"version: x {__version__}\nx: a kamcmd 1.5")
    assert banner("x").startswith(f"x {__version__} (kamcmd 1.5 compatible)\n")
    assert license_text("x").startswith(f"x {__version__}\n")
