"""Shared constants and fixtures of the test suite.

`tests/unit` runs in process, without sockets or child servers, in seconds
(`pytest tests/unit`); `tests/integration` starts real servers, resolvers and
fake API servers on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ZONE = "pods.example.internal"
REVERSE_ZONE = "244.10.in-addr.arpa"
POD_CIDR = "10.244.0.0/16"
POD_CIDR_V6 = "fd00:10:244::/48"
REPO = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test by its folder, so `-m unit` and `-m integration` select them too."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "unit" in parts:
            item.add_marker(pytest.mark.unit)
        elif "integration" in parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def write_file(tmp_path: Path):
    """Write text to a file under tmp_path and return its path as a string."""

    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write
