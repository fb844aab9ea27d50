"""The binrpc (Kamailio ``ctl``) server: asyncio listeners over a sans-I/O core.

::

    from binrpc.server import Registry, serve

    registry = Registry()

    @registry.rpc("math.add")
    def add(a: int, b: int = 0) -> int:
        return a + b

    async with serve(registry, "unixs:/tmp/x.sock", "tcp:127.0.0.1:2049") as srv:
        await srv.serve_forever()
"""

from .._context import RpcContext, ScanResult
from .._limits import RpcLimits
from .._registry import Method, Registry
from ._access import Listen, ListenerPolicy
from ._options import ServerOptions
from ._server import Listener, Server, serve
from ._sockets import ListenerError

__all__ = [
    "Listen",
    "Listener",
    "ListenerError",
    "ListenerPolicy",
    "Method",
    "Registry",
    "RpcContext",
    "RpcLimits",
    "ScanResult",
    "Server",
    "ServerOptions",
    "serve",
]
