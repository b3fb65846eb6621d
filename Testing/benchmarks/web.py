"""``osteoai web`` (issue 17) on this machine, in a real browser (Playwright + Debian's chromium). Prints:

1. study view open time: click in the study list -> BMD table shown, for the default phantom's result with its
   scene (the demo); the server's own share (scene import, views, plots) beside it; target <= 2 s; and the time
   until the four views have drawn the study;
2. Recompute time: click -> reviewed table shown, after moving the ROI box 2 mm; target <= 2 s;
3. 10 uploads of a small phantom at once: how many were screened, whether in the order they were accepted,
   none lost, and the server's answer time (upload page, a result page) while they screen, plus a study view
   opened meanwhile.

Run: .venv/bin/python Testing/benchmarks/web.py [--uploads 10] [--repeats 3] [--study default|small]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Python"))
from support.servers import free_port, start_web

PASSWORD = "benchmark password"


def make_study(data: Path, size: str) -> None:
    from OsteoAILib.cli import main as cli
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    params = (
        PhantomParams(seed=0)
        if size == "default"
        else PhantomParams(seed=5, matrix=160, spacing=(1.8, 1.8, 2.5), levels="T12-L2")
    )
    files = write_phantom(make_phantom(params), data.parent / "phantom")
    if cli(["run", str(files["ct"]), "--out", str(data / "demo"), "--scene", "--quiet"]):
        raise SystemExit("osteoai run failed")


def post_file(url: str, path: Path) -> tuple[int, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="scan"; filename="scan"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    req = urllib.request.Request(
        url + "/upload", data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    try:
        resp = urllib.request.build_opener(NoRedirect).open(req, timeout=300)
        return resp.status, resp.headers.get("Location", "")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Location", "")


def get_ms(url: str) -> float:
    t0 = time.perf_counter()
    urllib.request.urlopen(url, timeout=60).read()
    return 1000 * (time.perf_counter() - t0)


# the slice views' pictures (trame-rca <img>), by their blob URLs: a view has drawn the study when its URL changed
VIEW_URLS = "Array.from(document.querySelectorAll('img.image-display-area')).map(i => i.src)"
VIEWS_DRAWN = (
    "([old, n]) => Array.from(document.querySelectorAll('img.image-display-area'))"
    ".filter(i => i.src && !old.includes(i.src)).length >= n"
)


def open_study(page) -> tuple[float, float, float]:
    """(click -> BMD table shown, the server's own share, click -> all four views drawn again) in seconds."""
    if page.is_visible("#to-list"):
        page.click("#to-list")
    page.wait_for_selector(".study-row")
    time.sleep(1.0)  # the list's own renders settle first
    old = page.evaluate(VIEW_URLS)
    t0 = time.perf_counter()
    page.click(".study-row >> nth=0")  # the demo study: uploads come later under uploads/, sorted after it
    page.wait_for_selector("#bmd-table tbody tr", timeout=120_000)
    page.wait_for_function("document.querySelector('#open-seconds').innerText.match(/[0-9]/)")
    wall = time.perf_counter() - t0
    page.wait_for_function(VIEWS_DRAWN, arg=[old, 4], timeout=120_000)
    views = time.perf_counter() - t0
    server = float(page.inner_text("#open-seconds").split()[2])
    return wall, server, views


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uploads", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--study", choices=["default", "small"], default="default")
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("chromium is not installed (apt-get install chromium): nothing measured")
        return 1
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom
    from playwright.sync_api import sync_playwright

    from OsteoAIWeb.accounts import hash_password

    work = Path(tempfile.mkdtemp(prefix="osteoai-web-bench-"))
    data = work / "data"
    data.mkdir()
    print(f"screening the {args.study} phantom with --scene for the study view ...", flush=True)
    make_study(data, args.study)
    small = Path(
        write_phantom(
            make_phantom(PhantomParams(seed=9, matrix=160, spacing=(1.8, 1.8, 2.5), levels="T12-L2")), work / "small"
        )["ct"]
    )
    (work / "accounts.yaml").write_text(f'reviewers:\n  bench: "{hash_password(PASSWORD)}"\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "server.log", "w")  # noqa: SIM115
    proc = start_web(data, port, work / "accounts.yaml", log, timeout=120)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1500, "height": 950})
            page.goto(url + "/login")
            page.fill("#name", "bench")
            page.fill("#password", PASSWORD)
            page.click("#login")
            opens, recs = [], []
            for _ in range(args.repeats):
                opens.append(open_study(page))
                page.click("#tab-review")
                page.click("#move-Sp")
                page.wait_for_selector("#edits li")
                t0 = time.perf_counter()
                page.click("#recompute")
                page.wait_for_selector("#reviewed-diagnosis", timeout=120_000)
                wall = time.perf_counter() - t0
                recs.append((wall, float(page.inner_text("#message").split()[2])))
            print(
                f"\nstudy view open ({args.study} phantom, {args.repeats} runs): browser "
                f"{', '.join(f'{w:.2f}' for w, _, _ in opens)} s (median "
                f"{statistics.median(w for w, _, _ in opens):.2f} s; server share "
                f"{', '.join(f'{s:.2f}' for _, s, _ in opens)} s); target <= 2 s\n"
                f"  ... and its four views drawn: {', '.join(f'{v:.2f}' for _, _, v in opens)} s (median "
                f"{statistics.median(v for _, _, v in opens):.2f} s)"
            )
            print(
                f"Recompute after moving a box 2 mm: browser {', '.join(f'{w:.2f}' for w, _ in recs)} s (median "
                f"{statistics.median(w for w, _ in recs):.2f} s; server share "
                f"{', '.join(f'{s:.2f}' for _, s in recs)} s); target <= 2 s"
            )

            # --- 10 uploads at once ------------------------------------------------------------------
            if not args.uploads:
                browser.close()
                return 0
            answers: list = [None] * args.uploads
            t_start = time.perf_counter()

            def send(i):
                answers[i] = post_file(url, small)

            threads = [threading.Thread(target=send, args=(i,)) for i in range(args.uploads)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            accepted = [loc for code, loc in answers if code == 303]
            ids = [loc.split("/")[2] for loc in accepted]
            lat, during_open = [], None
            while True:
                states = [json.loads((data / "uploads" / i / "status.json").read_text()) for i in ids]
                if all(s["state"] in ("done", "failed") for s in states):
                    break
                lat.append(get_ms(url + "/upload"))
                lat.append(get_ms(url + accepted[0]))
                if during_open is None and sum(s["state"] == "running" for s in states):
                    during_open = open_study(page)
                time.sleep(0.5)
            total = time.perf_counter() - t_start
            by_accept = sorted(states, key=lambda s: s["created"])
            finished = [s["finished"] for s in by_accept]
            in_order = all(a <= b for a, b in zip(finished, finished[1:], strict=False))
            done = sum(s["state"] == "done" for s in states)
            print(
                f"\n{args.uploads} uploads at once (small phantom): {len(accepted)} accepted, {done} screened, "
                f"{len(accepted) - done} failed, lost {args.uploads - len(accepted)}; screened in the order accepted:"
                f" {in_order}; all done after {total:.0f} s ({total / max(done, 1):.1f} s per upload)"
            )
            print(
                f"server answers while screening: {len(lat)} page requests, median {statistics.median(lat):.0f} ms,"
                f" max {max(lat):.0f} ms; a study view opened meanwhile in {during_open[0]:.2f} s (server share "
                f"{during_open[1]:.2f} s)"
                if during_open
                else ""
            )
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
