"""`osteoai batch` on local processes: discovery, cohort tables, failure isolation, resume."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from OsteoAILib.batch.command import run_batch
from OsteoAILib.batch.discover import discover, study_id
from OsteoAILib.batch.study import STUDY_FILE
from support.batch_helpers import OPTIONS, make_cohort, write_csv


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    cts = make_cohort(root / "tree")
    bad = root / "tree" / "DOE_JOHN_BROKEN" / "ct.nii.gz"
    bad.parent.mkdir()
    bad.write_bytes(b"not a CT at all")
    rows = [
        {"path": str(p.relative_to(root)), "age": 70 + i, "sex": "female", "site": f"site{i % 2}"}
        for i, p in enumerate(cts)
    ]
    rows += [
        {"path": str(bad.relative_to(root)), "age": "", "sex": "", "site": "site0"},
        {"path": "missing/DOE_MISSING.nii.gz", "age": "", "sex": "", "site": "site1"},
    ]
    return {"root": root, "cts": cts, "bad": bad, "csv": write_csv(root / "cohort.csv", rows)}


@pytest.fixture(scope="module")
def first_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    code = run_batch([cohort["csv"]], out, OPTIONS, workers=2, quiet=True)
    return out, code


def test_discovery_finds_ct_volumes_and_dicom_series_not_labelmaps(cohort, tmp_path):
    tree = discover([cohort["root"] / "tree"])
    assert sorted(s.input for s in tree) == sorted(str(p) for p in [*cohort["cts"], cohort["bad"]])
    assert all(len(s.id) == 16 and "DOE" not in s.id for s in tree)
    dcm = tmp_path / "series"
    dcm.mkdir()
    for i in range(3):
        (dcm / f"IM{i}").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)  # the preamble marks a DICOM file
    (tmp_path / "vertebrae.nii.gz").write_bytes(b"")  # a labelmap beside it is not a study
    lst = tmp_path / "studies.txt"
    lst.write_text(f"# one per line\n{cohort['cts'][1]}\nseries\n")
    found = discover([tmp_path, lst])
    assert [s.input for s in found] == [str(dcm), str(cohort["cts"][1])]  # the list's "series" is the same study
    with_cols = discover([cohort["csv"]])
    assert with_cols[0].extra == {"age": 70.0, "sex": "F", "site": "site0"}
    assert with_cols[0].id == study_id(cohort["cts"][0])


def test_one_bad_input_fails_alone_with_a_one_line_reason(cohort, first_run):
    out, code = first_run
    assert code == 0
    failures = (out / "failures.csv").read_text().splitlines()
    assert failures[0] == "study_id,reason" and len(failures) == 3
    assert {f.split(",")[0] for f in failures[1:]} == {
        study_id(cohort["bad"]),
        study_id(cohort["root"] / "missing/DOE_MISSING.nii.gz"),
    }
    assert "DOE" not in "".join(failures)  # the path (a patient's name here) is never repeated
    studies = sorted(p.name for p in (out / "studies").iterdir())
    assert studies == sorted(study_id(p) for p in cohort["cts"])
    for d in (out / "studies").iterdir():
        assert {"results.json", "results.csv", STUDY_FILE, "vertebrae.nii.gz"} <= {p.name for p in d.iterdir()}


def test_cohort_table_loads_in_pandas_and_duckdb_as_written(cohort, first_run):
    pd = pytest.importorskip("pandas")
    out, _ = first_run
    csv_df = pd.read_csv(out / "cohort.csv")
    pq_df = pd.read_parquet(out / "cohort.parquet")
    assert len(csv_df) == len(pq_df) >= 4 * 3  # one row per study and level
    assert list(csv_df.columns) == list(pq_df.columns)
    assert pq_df["vbmd_mg_cm3"].dtype == "float64" and pq_df["used_for_diagnosis"].dtype == bool
    assert csv_df["used_for_diagnosis"].dtype == bool
    by_study = pq_df.groupby("study_id").first()
    first = by_study.loc[study_id(cohort["cts"][0])]
    assert first["age"] == 70 and first["sex"] == "F" and first["site"] == "site0"  # from the CSV: no header age
    second = by_study.loc[study_id(cohort["cts"][1])]
    assert second["age"] == 55 and second["sex"] == "M"  # the header wins over the CSV
    assert set(pq_df["category"].dropna()) <= {"normal", "osteopenia", "osteoporosis"}
    assert (pq_df["osteoai_version"] == "0.1.0").all() and pq_df["segmenter"].str.startswith("classical").all()
    assert "DOE" not in (out / "cohort.csv").read_text()
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    n = con.execute(f"select count(*) from '{out / 'cohort.parquet'}' where used_for_diagnosis").fetchall()[0][0]
    assert n == int(pq_df["used_for_diagnosis"].sum())
    assert con.execute(f"select count(*) from read_csv_auto('{out / 'cohort.csv'}')").fetchall()[0][0] == len(csv_df)


def test_summary_counts_categories_qc_and_time(first_run):
    out, _ = first_run
    s = json.loads((out / "summary.json").read_text())
    assert s["studies"] == 6 and s["with_results"] == 4
    assert s["this_run"]["screened"] == 4 and s["this_run"]["failed"] == 2
    assert sum(s["categories"].values()) == 4
    assert s["seconds_per_study"]["mean"] > 0 and "segment" in s["stage_mean_s"]
    assert s["peak_mb"]["max"] > 100
    assert (out / "vbmd_by_level.png").stat().st_size > 1000 and (out / "vbmd_by_age_sex.png").is_file()
    assert "studies/hour" in (out / "summary.txt").read_text()


def test_resume_skips_complete_studies_and_reruns_changed_ones(cohort, first_run):
    out, _ = first_run
    before = {d.name: (d / STUDY_FILE).stat().st_mtime_ns for d in (out / "studies").iterdir()}
    table = (out / "cohort.csv").read_bytes()
    assert run_batch([cohort["csv"]], out, OPTIONS, workers=2, resume=True, quiet=True) == 0
    s = json.loads((out / "summary.json").read_text())["this_run"]
    assert s["skipped_complete"] == 4 and s["screened"] == 0 and s["failed"] == 2  # failures are retried
    assert {d.name: (d / STUDY_FILE).stat().st_mtime_ns for d in (out / "studies").iterdir()} == before
    assert (out / "cohort.csv").read_bytes() == table
    changed = cohort["cts"][2]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))  # input replaced
    assert run_batch([cohort["csv"]], out, OPTIONS, workers=2, resume=True, quiet=True) == 0
    s = json.loads((out / "summary.json").read_text())["this_run"]
    assert s["skipped_complete"] == 3 and s["screened"] == 1
    assert (out / "cohort.csv").read_bytes() == table  # same pixels, same numbers
    assert not list(Path(out, "studies").glob(".partial-*"))
