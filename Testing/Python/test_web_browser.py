"""``osteoai web`` in a real browser (Playwright driving Debian's chromium): a patient uploads the phantom and
reads the result; a reviewer logs in, opens the study, moves an ROI box, recomputes and accepts, then erases
part of the ROI and recomputes.

Starts the real server on a free port. Skips when chromium, Playwright or trame-slicer is absent.
``OSTEOAI_WEB_SCREENSHOTS=1`` writes the screenshots to docs/images/ (the README shows them).
"""

from __future__ import annotations

import ctypes.util
import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("OSTEOAI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

# The review app's views render offscreen through EGL (Mesa's without a GPU).
HAS_EGL = bool(os.environ.get("DISPLAY")) or ctypes.util.find_library("EGL") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM, reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(
        not HAS_EGL, reason="no display and no libEGL to render offscreen (apt-get install libegl1 libegl-mesa0)"
    ),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytest.importorskip("trame_slicer", reason="trame-slicer is not installed")
from support.servers import free_port, start_web  # noqa: E402 (after the skips)

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from OsteoAIWeb.accounts import hash_password

    root = tmp_path_factory.mktemp("web")
    data = root / "data"
    data.mkdir()
    accounts = root / "accounts.yaml"
    accounts.write_text(f'reviewers:\n  alice: "{hash_password(PASSWORD)}"\n')
    port = free_port()
    log = open(root / "server.log", "w")  # noqa: SIM115 - closed below
    url = f"http://127.0.0.1:{port}"
    try:
        proc = start_web(data, port, accounts, log, cwd=root, timeout=120)
    except RuntimeError as e:
        log.close()
        pytest.fail(f"{e}: " + (root / "server.log").read_text()[-3000:])
    try:
        yield {"url": url, "data": data, "root": root, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    d = tmp_path_factory.mktemp("phantom")
    files = write_phantom(make_phantom(PhantomParams(seed=3, matrix=160, spacing=(1.8, 1.8, 2.5), levels="T12-L2")), d)
    return Path(files["ct"])


def _shot(page, name: str, tmp: Path) -> None:
    folder = REPO / "docs" / "images" if os.environ.get("OSTEOAI_WEB_SCREENSHOTS") == "1" else tmp
    page.screenshot(path=str(folder / name))


@pytest.fixture(scope="module")
def uploaded(server, browser, phantom):
    """The phantom uploaded through the page; returns the result page's URL and the results.json."""
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    page.goto(server["url"] + "/upload")
    assert page.title() == "OsteoAI: screen a CT"
    page.set_input_files("#scan", str(phantom))
    page.click("#send")
    page.wait_for_url("**/r/*/*", timeout=60_000)
    result_url = page.url
    # the progress page reloads itself until done
    page.wait_for_selector("#headline, #error", timeout=240_000)
    assert page.query_selector("#error") is None, page.inner_text("#error")
    upload_id = result_url.split("/")[-2]
    results = json.loads((server["data"] / "uploads" / upload_id / "result" / "results.json").read_text())
    yield {"page": page, "url": result_url, "id": upload_id, "results": results}
    page.close()


def test_upload_result_page_shows_the_numbers_of_results_json(uploaded, server):
    page, results = uploaded["page"], uploaded["results"]
    page.wait_for_load_state("networkidle")  # the plot and the key images
    assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    _shot(page, "web_upload_result.png", server["root"])
    d = results["diagnosis"]
    assert page.inner_text("#diagnosis-vbmd") == f"{d['vbmd_mg_cm3']:.1f}"
    assert page.inner_text("#diagnosis-category") == d["category"]
    for lv in results["levels"]:
        cell = page.inner_text(f"#levels tr[data-level='{lv['level']}'] td.vbmd")
        assert cell == ("" if lv["vbmd_mg_cm3"] is None else f"{lv['vbmd_mg_cm3']:.1f}"), lv["level"]
    assert "not a diagnosis" in page.inner_text("body")
    assert page.title() == "OsteoAI: result"  # no identity in the title
    with page.expect_download() as dl:
        page.click("#pdf")
    assert Path(dl.value.path()).read_bytes()[:5] == b"%PDF-"
    left = {p.name for p in (server["data"] / "uploads" / uploaded["id"]).iterdir()}
    assert left == {"status.json", "result"}, left  # the uploaded scan itself is gone once screened


def test_a_wrong_token_finds_nothing(uploaded, server):
    upload_id = uploaded["id"]
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{server['url']}/r/{upload_id}/not-the-token", timeout=5)
    assert e.value.code == 404


def test_reviewer_moves_a_box_recomputes_and_accepts(uploaded, server, browser):
    study_dir = server["data"] / "uploads" / uploaded["id"] / "result"
    auto_sha = hashlib.sha256((study_dir / "results.json").read_bytes()).hexdigest()
    page = browser.new_page(viewport={"width": 1500, "height": 950})
    page.goto(server["url"] + "/")
    assert "/login" in page.url  # the review app is behind the login
    page.fill("#name", "alice")
    page.fill("#password", "wrong password")
    page.click("#login")
    assert "wrong name or password" in page.inner_text("#error")
    page.fill("#name", "alice")
    page.fill("#password", PASSWORD)
    page.click("#login")
    page.wait_for_selector(".study-row", timeout=60_000)
    _shot(page, "web_study_list.png", server["root"])
    page.click(".study-row")
    page.wait_for_selector("#bmd-table tbody tr", timeout=60_000)
    auto = {lv["level"]: lv["vbmd_mg_cm3"] for lv in uploaded["results"]["levels"]}
    for row in page.query_selector_all("#bmd-table tbody tr"):
        level, vbmd = row.query_selector("td").inner_text(), row.query_selector("td.vbmd").inner_text()
        assert (vbmd == "" and auto[level] is None) or float(vbmd) == round(auto[level], 1), level
    page.click("#show-3d")
    page.wait_for_selector("#message:has-text('3D surfaces built')", timeout=60_000)
    page.wait_for_timeout(2500)  # the views stream their frames
    _shot(page, "web_study_view.png", server["root"])

    page.click("#tab-review")
    level = page.inner_text("#edit-level").split()[-1]
    page.click("#move-Sp")
    page.click("#move-Sp")
    page.wait_for_selector(f"#edits li:has-text('{level} box moved +2 mm along S')")
    page.click("#recompute")
    page.wait_for_selector("#reviewed-diagnosis", timeout=60_000)
    row = page.locator("#reviewed-table tbody tr", has=page.locator("td:first-child", has_text=level))
    volume = row.locator("td.roi-volume").inner_text()
    before = next(lv for lv in uploaded["results"]["levels"] if lv["level"] == level)["roi_volume_mm3"]
    assert abs(float(volume) - before) > 1.0, "the moved box did not change the measured ROI"
    page.fill("#comment", "box moved 4 mm up")
    page.click("#accept")
    page.wait_for_selector("#message:has-text('accepted')")
    page.wait_for_timeout(1500)
    _shot(page, "web_review.png", server["root"])

    page.click("#tab-teaching")
    page.click("#teach")  # the slice views jump to the ROI's centre
    page.wait_for_selector("#teaching:has-text('trabecular ROI mean')")
    assert "cortical shell median" in page.inner_text("#teaching")

    # erase the ROI on the axial slice shown (through the ROI's centre): Recompute measures fewer voxels
    page.click("#tab-review")
    page.click("#erase")
    page.wait_for_selector(f"#edits li:has-text('{level} ROI erased on the axial slice')")
    page.click("#recompute")
    page.wait_for_function(
        "([level, v]) => Array.from(document.querySelectorAll('#reviewed-table tbody tr')).some("
        "r => r.cells[0].innerText === level && parseFloat(r.querySelector('td.roi-volume').innerText) < v)",
        arg=[level, float(volume)],
        timeout=60_000,
    )

    reviews = sorted(study_dir.glob("reviews/*/review.json"))
    assert len(reviews) == 1
    review = json.loads(reviews[0].read_text())
    assert review["reviewer"] == "alice" and review["decision"] == "accepted" and review["recomputed"]
    assert review["comment"] == "box moved 4 mm up" and review["time"]
    assert f"{level} box moved +2 mm along S" in review["edits"]
    reviewed = json.loads((reviews[0].parent / "results.json").read_text())
    assert any("edited" in q for q in reviewed["qc"])
    assert hashlib.sha256((study_dir / "results.json").read_bytes()).hexdigest() == auto_sha  # never overwritten
    page.close()


def test_no_identity_or_token_in_the_server_log(uploaded, server):
    log = (server["root"] / "server.log").read_text()
    token = uploaded["url"].rsplit("/", 1)[-1]
    assert token not in log
    assert "ct.nii" not in log and str(server["root"]) not in log
