"""Shared fixtures. Real data lives in ../shared/data next to the checkout; tests that need it
skip with a clear message when it is absent."""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
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


# --- phantoms ----------------------------------------------------------------------------------------
# A phantom takes seconds to build; several tests need the same one. Tests whose subject is the phantom
# itself (test_phantom_*) call make_phantom directly: a cached copy would hide what they check.

CACHE_VOXELS = 40_000_000  # phantoms held for reuse, in voxels (~8 bytes each over its arrays): the most
# recently used are kept, so a test run's memory stays bounded however many phantoms it builds


class PhantomCache:
    """``phantoms(**params)``: the phantom for those PhantomParams, built once per test run (while it is
    among the recently used). Each call returns a deep copy, so a test may change its phantom without
    touching another test's."""

    def __init__(self, budget_voxels: int = CACHE_VOXELS):
        self.budget = budget_voxels
        self._built: OrderedDict[str, object] = OrderedDict()

    def __call__(self, **params):
        from OsteoAILib.phantom import PhantomParams, make_phantom

        key = repr(sorted(params.items()))
        ph = self._built.pop(key, None)
        if ph is None:
            ph = make_phantom(PhantomParams(**params))
        self._built[key] = ph  # most recent last
        while sum(int(np.prod(p.volume.shape)) for p in self._built.values()) > self.budget and len(self._built) > 1:
            self._built.popitem(last=False)
        return copy.deepcopy(ph)


@pytest.fixture(scope="session")
def phantoms() -> PhantomCache:
    return PhantomCache()


@pytest.fixture(scope="session")
def small_phantom(phantoms):
    """T12-L2 on a 128 x 128 grid of 2 mm voxels: the smallest phantom a whole run screens (seconds)."""
    return phantoms(levels="T12-L2", matrix=128, spacing=(2, 2, 2))


@pytest.fixture(scope="session")
def small_phantom_nrrd(small_phantom, tmp_path_factory) -> Path:
    """``small_phantom``'s CT as an NRRD file, the input of the command-line and Slicer-module tests.
    Read-only: a test that changes its input copies it first."""
    from OsteoAIBaseLib.imageio import write_volume

    path = tmp_path_factory.mktemp("small_phantom") / "in.nrrd"
    write_volume(small_phantom.volume, path)
    return path
