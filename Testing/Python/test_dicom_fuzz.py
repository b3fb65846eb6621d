"""A fast sample of the DICOM header fuzzer (``Testing/benchmarks/robustness.py`` runs >= 10,000 cases):
every fuzzed series ends in a Volume or an InputError with a printable one-line message."""

from __future__ import annotations

import numpy as np
from OsteoAIBaseLib.imageio import read_volume
from support.dicom_fuzz import base_series, fuzz, run_case


def test_the_seed_series_is_valid(tmp_path):
    assert run_case(base_series(tmp_path / "base"))[0] == "volume"


def test_fuzzed_headers_never_crash_or_hang(tmp_path):
    counts, bad = fuzz(tmp_path, n=80, seed=12, timeout_s=20)
    assert bad == [], bad[:5]
    assert counts["input_error"] > 30 and counts["volume"] > 4  # the sample exercises both outcomes


def test_every_volume_read_from_a_fuzzed_series_holds_the_true_values(tmp_path):
    """No silent wrong number: a fuzzed series that still reads gives the seed's values (all slices, or a
    contiguous run of them when a slice was set apart as another series)."""
    from support.dicom_fuzz import mutate

    base = base_series(tmp_path / "base")
    ref = read_volume(base).array
    wrong = []
    for i in range(80):
        case = tmp_path / f"c{i}"
        done = mutate(base, case, np.random.default_rng([21, i]))
        if run_case(case)[0] == "volume":
            v = read_volume(case).array
            if not any(np.array_equal(v, ref[s : s + len(v)]) for s in range(len(ref) - len(v) + 1)):
                wrong.append(done)
    assert wrong == []
