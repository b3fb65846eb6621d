"""The web app's pieces that need no browser: reviewer accounts and login, the upload area (tokens, retention),
the screening queue's order, reviews beside a result and the study list."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from pathlib import Path

import pytest
from OsteoAIBaseLib.errors import InputError

from OsteoAIWeb import accounts, reviews, studies, uploads

aiohttp = pytest.importorskip("aiohttp", reason="aiohttp (osteoai web) is not installed")


def test_passwords_are_hashed_with_a_salt_and_checked():
    h = accounts.hash_password("s3cret-pass")
    assert h.startswith("scrypt$") and "s3cret" not in h
    assert h != accounts.hash_password("s3cret-pass")  # salted
    assert accounts.verify_password(h, "s3cret-pass")
    assert not accounts.verify_password(h, "s3cret-pasS")
    assert not accounts.verify_password("plain", "plain")


def test_accounts_file_refuses_plain_passwords_and_odd_names(tmp_path):
    f = tmp_path / "a.yaml"
    f.write_text('reviewers:\n  alice: "hunter2"\n')
    with pytest.raises(InputError, match="scrypt hash"):
        accounts.load_accounts(f)
    f.write_text(f'reviewers:\n  "al ice/..": "{accounts.hash_password("x")}"\n')
    with pytest.raises(InputError, match="letters, digits"):
        accounts.load_accounts(f)
    f.write_text("- just a list\n")
    with pytest.raises(InputError, match="reviewers"):
        accounts.load_accounts(f)
    assert accounts.load_accounts(None) == {}


def test_session_cookies_cannot_be_forged_and_expire():
    s = accounts.Sessions({"alice": accounts.hash_password("pw-alice-1")})
    assert s.login("alice", "wrong") is None and s.login("bob", "pw-alice-1") is None
    cookie = s.login("alice", "pw-alice-1")
    assert s.user(cookie) == "alice"
    name, expiry, mac = cookie.split("|")
    assert s.user(f"bob|{expiry}|{mac}") is None
    assert s.user(f"alice|{int(expiry) + 999}|{mac}") is None
    assert s.user(s._sign("alice", time.time() - 1)) is None
    assert accounts.Sessions(s.accounts).user(cookie) is None  # another server start: another secret
    assert s.user(None) is None and s.user("garbage") is None


def test_review_app_is_behind_the_login(tmp_path):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from OsteoAIWeb.routes import COOKIE, Site, SiteConfig

    sessions = accounts.Sessions({"alice": accounts.hash_password("pw-alice-1")})
    site = Site(SiteConfig(tmp_path / "area", sessions=sessions), queue=None)

    async def run():
        app = web.Application()
        site.bind(app)

        async def review_app(request):
            return web.Response(text="review app")

        app.router.add_get("/", review_app)
        app.router.add_get("/ws", review_app)
        async with TestClient(TestServer(app)) as c:
            r = await c.get("/", allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/login"
            assert (await c.get("/ws")).status == 403
            r = await c.post("/login", data={"name": "alice", "password": "nope"}, allow_redirects=False)
            assert r.status == 401 and COOKIE not in r.cookies
            r = await c.post("/login", data={"name": "alice", "password": "pw-alice-1"}, allow_redirects=False)
            assert r.status == 303 and r.cookies[COOKIE]["httponly"]
            r = await c.get("/")
            assert r.status == 200 and await r.text() == "review app"
            assert (await c.get("/ws")).status == 200 and site.ws_user == "alice"
            await c.get("/logout")
            assert (await c.get("/", allow_redirects=False)).status == 303

    asyncio.run(run())


def _published(area: Path, age_days: float = 0.0) -> tuple[str, str]:
    inc = uploads.new_incoming(area)
    (inc / "ct.nii.gz").write_bytes(b"x")
    upload_id, token = uploads.publish(area, inc, inc / "ct.nii.gz")
    if age_days:
        uploads.update_status(area / upload_id, created=time.time() - age_days * 86400)
    return upload_id, token


def test_an_upload_is_found_only_with_its_token(tmp_path):
    upload_id, token = _published(tmp_path)
    assert uploads.find(tmp_path, upload_id, token) == tmp_path / upload_id
    assert uploads.find(tmp_path, upload_id, token + "x") is None
    assert uploads.find(tmp_path, "../" + upload_id, token) is None
    assert uploads.find(tmp_path, "0" * 16, token) is None
    assert token not in (tmp_path / upload_id / "status.json").read_text()


def test_retention_deletes_old_uploads_and_abandoned_incoming(tmp_path):
    old, _ = _published(tmp_path, age_days=8)
    new, _ = _published(tmp_path, age_days=1)
    stale = uploads.new_incoming(tmp_path)
    import os

    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = uploads.new_incoming(tmp_path)
    assert uploads.purge(tmp_path, days=7) == [old]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([new, fresh.name])


def slow_stand_in(upload_dir: str, options: dict) -> dict:
    """Stands in for the pipeline in the worker process: takes a moment, fails for one upload."""
    time.sleep(0.2)
    if json.loads((Path(upload_dir) / "status.json").read_text()).get("fail"):
        from OsteoAIBaseLib.errors import InputError

        raise InputError("no vertebra found")
    return {}


def test_queue_screens_uploads_in_order_and_reports_failures(tmp_path):
    from OsteoAIWeb.worker import ScreeningQueue

    q = ScreeningQueue(tmp_path, screen=slow_stand_in, warm_up=None)
    q.submit("ffffffffffffffff")
    q.submit("ffffffffffffffff")
    assert q.position("ffffffffffffffff") == 0 and q.q.qsize() == 1  # queued once
    q = ScreeningQueue(tmp_path, screen=slow_stand_in, warm_up=None)
    ids = []
    for i in range(5):
        upload_id, _ = _published(tmp_path)
        if i == 2:
            uploads.update_status(tmp_path / upload_id, fail=True)
        ids.append(upload_id)
        q.submit(upload_id)
    assert [q.position(i) for i in ids] == [0, 1, 2, 3, 4]
    q.start()  # also finds the queued uploads on disk (a restart): each is still screened once
    deadline = time.time() + 120
    while time.time() < deadline and q.waiting:  # an upload leaves the waiting list once its status is final
        time.sleep(0.2)
    assert q.q.qsize() == 0 and q.waiting == []
    q.stop()
    states = [uploads.read_status(tmp_path / i) for i in ids]
    assert [s["state"] for s in states] == ["done", "done", "failed", "done", "done"]
    assert states[2]["message"] == "no vertebra found"
    assert not (tmp_path / ids[2] / "ct.nii.gz").exists()  # a failed upload keeps nothing of the scan
    finished = [s["finished"] for s in states]
    assert finished == sorted(finished)


def _result(d: Path, vbmd=95.0) -> Path:
    d.mkdir(parents=True)
    res = {
        "input": {},
        "levels": [{"level": "L1", "label": 20, "vbmd_mg_cm3": vbmd, "qc": ["fov_cut: x"]}],
        "diagnosis": {"vbmd_mg_cm3": vbmd, "category": "osteopenia", "levels": ["L1"], "criteria": ""},
        "calibration": {"method": "internal"},
        "qc": ["label_uncertain: y"],
    }
    (d / "results.json").write_text(json.dumps(res))
    return d


def test_reviews_go_beside_the_result_and_never_overwrite_it(tmp_path):
    d = _result(tmp_path / "Doe_Jane" / "run")
    sha = hashlib.sha256((d / "results.json").read_bytes()).hexdigest()
    reviews.save_review(d, "alice", "rejected", "ROI in the endplate")
    edited = json.loads((d / "results.json").read_text())
    edited["diagnosis"]["vbmd_mg_cm3"] = 101.0
    folder = reviews.save_review(d, "bob", "accepted", "moved", results=edited, edits=["L1 box moved +2 mm along S"])
    assert hashlib.sha256((d / "results.json").read_bytes()).hexdigest() == sha
    assert json.loads((folder / "results.json").read_text())["diagnosis"]["vbmd_mg_cm3"] == 101.0
    all_ = reviews.reviews_of(d)
    assert [r["reviewer"] for r in all_] == ["alice", "bob"]
    assert all_[1]["automatic_vbmd"] == 95.0 and all_[1]["reviewed_vbmd"] == 101.0 and all_[1]["time"]
    with pytest.raises(InputError):
        reviews.save_review(d, "bob", "maybe")


def test_study_list_names_studies_by_hash_only(tmp_path):
    _result(tmp_path / "Doe_Jane" / "run")
    _result(tmp_path / "batch" / "studies" / "abc", vbmd=130.0)
    _result(tmp_path / "uploads" / "0123456789abcdef" / "input")  # never a study: an upload's own input
    found = studies.find_studies(tmp_path)
    assert len(found) == 2
    rows = [studies.summary(s) for s in found.values()]
    assert all("Doe" not in json.dumps(r) for r in rows)
    assert {r["category"] for r in rows} == {"osteopenia"} and {r["vbmd"] for r in rows} == {95.0, 130.0}
    assert rows[0]["qc"] == "fov_cut, label_uncertain" and rows[0]["review"] == "not reviewed"
