"""The import graph of ``src/binrpc``: no cycle (imports under ``TYPE_CHECKING`` and inside
functions count), and the sans-I/O RPC core imports no I/O or event-loop module."""

from __future__ import annotations

import ast
from pathlib import Path

import binrpc

PACKAGE = Path(binrpc.__file__).resolve().parent

RPC_CORE = (
    "binrpc._cnum",
    "binrpc._limits",
    "binrpc._registry",
    "binrpc._context",
    "binrpc._binrpc_reply",
    "binrpc._binrpc_context",
    "binrpc._dispatch",
    "binrpc._fifo_wire",
    "binrpc._fifo_context",
)
"""The RPC layer's modules."""

FORBIDDEN = {"asyncio", "socket", "selectors", "ssl", "threading"}


def module_name(path: Path) -> str:
    parts = ["binrpc", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(name: str, path: Path) -> set[str]:
    """Every module ``name`` imports, anywhere in its source (absolute names)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # submodules
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path) & known.keys() - {name} for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_imports_resolve() -> None:
    edges = graph()
    assert "binrpc._registry" in edges["binrpc._context"]
    assert "binrpc._context" in edges["binrpc.rpcs.core"]


def test_no_import_cycle_in_the_package() -> None:
    """No cycle anywhere in binrpc, TYPE_CHECKING and function-level imports counted."""
    assert cycles(graph()) == []


def test_the_rpc_core_imports_no_io_module() -> None:
    known = modules()
    for name in RPC_CORE:
        direct = {module.partition(".")[0] for module in imports(name, known[name])}
        assert not direct & FORBIDDEN, (name, direct & FORBIDDEN)
    edges = graph()
    for name in RPC_CORE:  # nor does anything it imports from binrpc
        seen, todo = set(), [name]
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo.extend(edges[module])
        assert seen <= set(RPC_CORE) | {
            "binrpc",
            "binrpc._codec",
            "binrpc._packet",
            "binrpc._encode",
            "binrpc._decode",
            "binrpc._errors",
            "binrpc._values",
            "binrpc._frozen",
            "binrpc._address",
            "binrpc._framing",
            "binrpc._defaults",
        }, (name, seen)
