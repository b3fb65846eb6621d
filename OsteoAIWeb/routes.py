"""The aiohttp side of ``osteoai web``: upload page, result pages, login, and the guard that keeps the
review app (``/`` and its websocket) behind the login. Added to trame's own aiohttp application.

URLs carry only the random upload id and its token; tokens never reach a log line (aiohttp's access
log is off) and pages tell browsers not to send them on as a referrer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from OsteoAILib.results import Results

from . import pages, uploads
from .accounts import Sessions
from .upload_check import UploadRejected, check_ct, screenable_input

log = logging.getLogger("osteoai.web")
COOKIE = "osteoai_session"
KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


@dataclass
class SiteConfig:
    area: Path
    max_upload_mb: int = 1024
    max_unpacked_mb: int = 4096
    retention_days: float = 7.0
    sessions: Sessions = field(default_factory=lambda: Sessions({}))


class Site:
    def __init__(self, cfg: SiteConfig, queue):
        self.cfg, self.queue = cfg, queue
        self.ws_user: str | None = None  # the reviewer of the review app's latest connection

    # --- wiring -------------------------------------------------------------------------------
    def bind(self, app: web.Application) -> None:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # access lines would hold tokens
        app.middlewares.append(self.guard)
        r = "/r/{id}/{token}"
        app.add_routes(
            [
                web.get("/upload", self.get_upload),
                web.post("/upload", self.post_upload),
                web.get(r, self.get_result),
                web.get(r + "/status.json", self.get_status),
                web.get(r + "/summary.pdf", self.get_pdf),
                web.get(r + "/bmd.png", self.get_bmd),
                web.get(r + "/key/{name}.png", self.get_key),
                web.get("/login", self.get_login),
                web.post("/login", self.post_login),
                web.get("/logout", self.logout),
            ]
        )

    @web.middleware
    async def guard(self, request: web.Request, handler):
        path = request.path
        if path in ("/", "/index.html") or path.startswith("/ws"):
            user = self.cfg.sessions.user(request.cookies.get(COOKIE))
            if user is None:
                if path.startswith("/ws"):
                    raise web.HTTPForbidden(text="log in first")
                raise web.HTTPSeeOther("/login")
            if path.startswith("/ws"):
                self.ws_user = user
        resp = await handler(request)
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        if path.startswith("/r/"):
            resp.headers["Cache-Control"] = "no-store"
        return resp

    # --- upload -------------------------------------------------------------------------------
    def _form(self, error=None, status=200):
        html = pages.upload_form(self.cfg.max_upload_mb, self.cfg.retention_days, error)
        return web.Response(text=html, content_type="text/html", status=status)

    async def get_upload(self, request):
        return self._form()

    async def post_upload(self, request: web.Request):
        limit = self.cfg.max_upload_mb << 20
        if request.content_length is not None and request.content_length > limit + (64 << 10):
            return self._form(f"the file is over the size limit of {self.cfg.max_upload_mb} MB", 413)
        incoming = uploads.new_incoming(self.cfg.area)
        published = False
        try:
            path = await self._receive(request, incoming / "upload.bin", limit)
            input_path = await asyncio.to_thread(self._check, path, incoming)
            upload_id, token = uploads.publish(self.cfg.area, incoming, input_path)
            published = True
            self.queue.submit(upload_id)
            log.info("upload %s accepted", upload_id)
            raise web.HTTPSeeOther(f"/r/{upload_id}/{token}")
        except UploadRejected as e:
            log.info("upload rejected: %s", e)
            return self._form(str(e), 400)
        finally:
            if not published:
                shutil.rmtree(incoming, ignore_errors=True)

    async def _receive(self, request, target: Path, limit: int) -> Path:
        try:
            reader = await request.multipart()
            part = await reader.next()
            while part is not None and getattr(part, "name", None) != "scan":
                part = await reader.next()
            if part is None:
                raise UploadRejected("no file in the upload: choose a file first")
            size = 0
            with open(target, "wb") as f:
                while chunk := await part.read_chunk(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise UploadRejected(f"the file is over the size limit of {self.cfg.max_upload_mb} MB")
                    f.write(chunk)
            if request.content_length is not None and not reader.at_eof():
                await reader.release()  # the closing boundary must arrive: a cut connection fails here
        except UploadRejected:
            raise
        except (ValueError, AssertionError, ConnectionError, asyncio.IncompleteReadError, OSError) as e:
            raise UploadRejected(
                "the upload is incomplete (the connection ended before the whole file arrived): please try again"
            ) from e
        except Exception as e:  # aiohttp's payload errors (ClientPayloadError...) of a cut upload
            if type(e).__module__.startswith("aiohttp"):
                raise UploadRejected(
                    "the upload is incomplete (the connection ended before the whole file arrived): please try again"
                ) from e
            raise
        if size == 0:
            raise UploadRejected("the upload is empty: choose a file first")
        return target

    def _check(self, path: Path, incoming: Path) -> Path:
        input_path = screenable_input(path, incoming, self.cfg.max_unpacked_mb << 20)
        check_ct(input_path)
        return input_path

    # --- result -------------------------------------------------------------------------------
    def _upload(self, request) -> Path:
        d = uploads.find(self.cfg.area, request.match_info["id"], request.match_info["token"])
        if d is None:
            raise web.HTTPNotFound(text=pages.not_found(), content_type="text/html")
        return d

    def _results(self, d: Path) -> Results:
        status = uploads.read_status(d) or {}
        if status.get("state") != "done":
            raise web.HTTPNotFound(text=pages.not_found(), content_type="text/html")
        return Results.from_dict(json.loads((d / "result" / "results.json").read_text()))

    async def get_result(self, request):
        d = self._upload(request)
        status = uploads.read_status(d) or {}
        if status.get("state") != "done":
            html = pages.status_page(status, self.queue.position(d.name))
            return web.Response(text=html, content_type="text/html")
        results = self._results(d)
        keys = [
            (k["name"], k.get("title", ""))
            for k in results.key_images
            if KEY_RE.match(k.get("name", "")) and (d / "result" / "key_images" / f"{k['name']}.png").is_file()
        ]
        base = f"/r/{request.match_info['id']}/{request.match_info['token']}"
        return web.Response(text=pages.result_page(results, base, keys), content_type="text/html")

    async def get_status(self, request):
        d = self._upload(request)
        s = uploads.read_status(d) or {}
        return web.json_response(
            {
                "state": s.get("state"),
                "progress": s.get("progress"),
                "message": s.get("message"),
                "ahead": self.queue.position(d.name),
            }
        )

    async def get_pdf(self, request):
        d = self._upload(request)
        self._results(d)
        return web.FileResponse(
            d / "result" / "summary.pdf",
            headers={
                "Content-Disposition": 'attachment; filename="osteoai-summary.pdf"',
                "Content-Type": "application/pdf",
            },
        )

    async def get_bmd(self, request):
        from .plots import bmd_png

        results = self._results(self._upload(request))
        return web.Response(body=await asyncio.to_thread(bmd_png, results), content_type="image/png")

    async def get_key(self, request):
        d = self._upload(request)
        name = request.match_info["name"]
        if name not in {k.get("name") for k in self._results(d).key_images} or not KEY_RE.match(name):
            raise web.HTTPNotFound()
        return web.FileResponse(d / "result" / "key_images" / f"{name}.png")

    # --- login --------------------------------------------------------------------------------
    async def get_login(self, request):
        return web.Response(text=pages.login_page(), content_type="text/html")

    async def post_login(self, request):
        form = await request.post()
        name = str(form.get("name", ""))[:64]
        cookie = await asyncio.to_thread(self.cfg.sessions.login, name, str(form.get("password", ""))[:256])
        if cookie is None:
            log.info("failed reviewer login")
            return web.Response(text=pages.login_page("wrong name or password"), content_type="text/html", status=401)
        log.info("reviewer %s logged in", name)
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(COOKIE, cookie, httponly=True, samesite="Strict", max_age=int(self.cfg.sessions.seconds))
        raise resp

    async def logout(self, request):
        resp = web.HTTPSeeOther("/login")
        resp.del_cookie(COOKIE)
        raise resp


def start_retention(area: Path, days: float, every_s: float = 3600.0) -> threading.Event:
    """Purge expired uploads now and then every ``every_s``; set the returned event to stop."""
    stop = threading.Event()

    def loop():
        while True:
            removed = uploads.purge(area, days)
            if removed:
                log.info("retention: %d upload(s) older than %g days deleted", len(removed), days)
            if stop.wait(every_s):
                return

    threading.Thread(target=loop, name="upload-retention", daemon=True).start()
    return stop
