"""Shared test helpers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .pki import pki  # noqa: F401  (the throwaway-CA fixture of the TLS tests)

VECTORS = Path(__file__).resolve().parent / "vectors" / "kamailio-5.6.3.jsonl"


def load_vectors() -> list[dict[str, Any]]:
    """The exchanges captured from a real Kamailio 5.6.3 (tests/vectors, see its README)."""
    if not VECTORS.exists():
        pytest.fail(f"test vectors missing: {VECTORS}")
    return [json.loads(line) for line in VECTORS.read_text().splitlines() if line.strip()]
