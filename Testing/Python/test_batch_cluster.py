"""The same batch on a Dask LocalCluster (2 worker processes, 1 thread each) gives the same cohort table as local
processes, and a bad study fails alone there too."""

from __future__ import annotations

import json

import pytest
from OsteoAILib.batch.command import run_batch
from OsteoAILib.batch.discover import study_id
from support.batch_helpers import OPTIONS, make_cohort


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster") / "tree"
    cts = make_cohort(root, 3)
    bad = root / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b garbage")
    return root, cts, bad


def test_local_cluster_matches_local_processes(tree, tmp_path):
    distributed = pytest.importorskip("distributed")
    root, cts, bad = tree
    local_out, dask_out = tmp_path / "local", tmp_path / "dask"
    assert run_batch([root], local_out, OPTIONS, workers=2, quiet=True) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc:
        assert run_batch([root], dask_out, OPTIONS, dask=lc, quiet=True) == 0
    s = json.loads((dask_out / "summary.json").read_text())
    assert s["this_run"]["screened"] == 3 and s["this_run"]["failed"] == 1
    assert "2 workers, 2 threads" in s["this_run"]["workers"]
    assert (dask_out / "failures.csv").read_text().splitlines()[1].startswith(study_id(bad))
    assert sorted(p.name for p in (dask_out / "studies").iterdir()) == sorted(study_id(p) for p in cts)
    assert (dask_out / "cohort.csv").read_bytes() == (local_out / "cohort.csv").read_bytes()
