"""The same command lines as test_binrpc_vs_kamcmd, against our own server: `binrpc` and the
real kamcmd 1.5 both talk to binrpcd, on all four transports, and must print the same."""

from __future__ import annotations

import pytest

from .conftest import KamcmdRunner
from .test_binrpc_vs_kamcmd import (
    DYNAMIC,
    STATIC,
    TRANSPORTS,
    _id,
    assert_same,
    assert_same_command,
    run_binrpc,
)
from .test_kamcmd_vs_binrpcd import Binrpcd, binrpcd  # noqa: F401  (the binrpcd fixture)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("args", STATIC, ids=_id)
def test_same_output_as_kamcmd_on_binrpcd(
    binrpcd: Binrpcd,  # noqa: F811
    kamcmd: KamcmdRunner,
    transport: str,
    args: list[str],
) -> None:
    address = binrpcd.binrpc[transport]
    kam = kamcmd(args, address)
    assert_same_command(args, kam, run_binrpc(args, address), what=f"binrpcd {transport} {args}")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("args", DYNAMIC, ids=_id)
def test_same_shape_as_kamcmd_on_binrpcd(
    binrpcd: Binrpcd,  # noqa: F811
    kamcmd: KamcmdRunner,
    transport: str,
    args: list[str],
) -> None:
    address = binrpcd.binrpc[transport]
    assert_same(kamcmd(args, address), run_binrpc(args, address), dynamic=True)
