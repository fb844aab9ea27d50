"""RPCs that only the benchmark needs, loaded into binrpcd with ``--module bench/_rpcs.py``.

* ``bench.sleep5``: an async RPC that waits 5 ms (``asyncio.sleep``) and returns 0;
* ``bench.big [size]``: a BYTES reply of ``size`` bytes (default 10 MiB), built per call.
"""

from __future__ import annotations

import asyncio

from binrpc.server import Registry

rpcs = Registry()

TEN_MIB = 10 * 1024 * 1024


@rpcs.rpc("bench.sleep5")
async def sleep5() -> int:
    """Wait 5 ms, then return 0."""
    await asyncio.sleep(0.005)
    return 0


@rpcs.rpc("bench.big")
def big(size: int = TEN_MIB) -> bytes:
    """Return ``size`` bytes (default 10 MiB)."""
    return b"x" * size
