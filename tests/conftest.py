"""Shared fixtures: paths to the real samples in ../shared/data and a scratch data dir."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty data directory."""
    return tmp_path / "data"


@pytest.fixture
def snapshot_data_dir(tmp_path: Path) -> Path:
    """A data directory filled with the bundled offline snapshot (all 41 companies)."""
    from stockllm import store

    target = tmp_path / "data"
    store.install_snapshot(target)
    return target
