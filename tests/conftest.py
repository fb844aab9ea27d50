"""Shared test helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .pki import pki  # noqa: F401  (the throwaway-CA fixture of the TLS tests)

VECTORS = Path(__file__).resolve().parent / "vectors" / "kamailio-5.6.3.jsonl"


def load_vectors(path: Path = VECTORS) -> list[dict[str, Any]]:
    """The exchanges captured from a real Kamailio 5.6.3 (the repository's tests/vectors, see
    its README). A missing file fails the test that needs it (never a skip): every checkout
    has it."""
    if not path.exists():
        pytest.fail(f"test vectors missing: {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
