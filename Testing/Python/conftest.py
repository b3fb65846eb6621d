"""Shared fixtures. Real data lives in ../shared/data next to the checkout; tests that need it
skip with a clear message when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("OSTEOAI_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CT data not found at {SHARED_DATA} (set OSTEOAI_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def hs():
    """A headless MRML scene (slicer-core). The HeadlessScene keeps vtkSlicerApplicationLogic alive for as
    long as the scene is used; without it the process segfaults."""
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from OsteoAILib import mrml

    h = mrml.new_scene()
    yield h
    h.close()
