"""``osteoai web``: the review app (trame-slicer) and the upload page, in one server process."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from OsteoAIBaseLib.errors import InputError
from OsteoAILib import options as run_options

UPLOAD_OPTIONS = ("segmenter", "vbmd_method", "calibration", "kvp", "device")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="folder of results to review (osteoai run / batch outputs, found recursively)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--uploads", help="upload area (default DATA/uploads); finished uploads appear in the study list")
    p.add_argument(
        "--accounts",
        help="reviewer accounts (YAML: reviewers: {name: scrypt hash}); without it nobody can log in to the review app",
    )
    p.add_argument("--retention-days", type=float, default=7.0, help="delete uploads and results after (default 7)")
    p.add_argument("--max-upload-mb", type=int, default=1024, help="largest upload accepted (default 1024)")
    # how uploads are screened: the run options of osteoai run, from the one table they are defined in
    run_options.add_arguments(p, names=UPLOAD_OPTIONS)
    p.add_argument(
        "--demo-reviewer",
        action="store_true",
        help="add a reviewer 'demo' with a random password printed at start (127.0.0.1 only; make web)",
    )
    p.add_argument(
        "--hash-password",
        action="store_true",
        help="read a password on stdin, print its hash for the accounts file, and exit",
    )


def main(args) -> int:
    from .accounts import Sessions, hash_password, load_accounts

    if args.hash_password:
        import getpass

        pw = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
        if len(pw) < 8:
            raise InputError("a password needs at least 8 characters")
        print(hash_password(pw))
        return 0
    if not args.data:
        raise InputError("--data DIR is required")
    data = Path(args.data)
    if not data.is_dir():
        raise InputError("--data must be an existing folder of results")
    if args.max_upload_mb < 1 or args.retention_days <= 0:
        raise InputError("--max-upload-mb and --retention-days must be positive")
    accounts = load_accounts(args.accounts)
    if args.demo_reviewer:
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            raise InputError("--demo-reviewer only on 127.0.0.1: use --accounts for a server others reach")
        import secrets

        password = secrets.token_urlsafe(9)
        accounts["demo"] = hash_password(password)
        print(f"osteoai web: reviewer 'demo', password {password} (this run only)", flush=True)
    sessions = Sessions(accounts)
    area = Path(args.uploads) if args.uploads else data / "uploads"
    serve(data, area, sessions, args)
    return 0


def serve(data: Path, area: Path, sessions, args) -> None:
    from trame.app import get_server

    from .app import ReviewApp
    from .routes import Site, SiteConfig, start_retention
    from .worker import ScreeningQueue

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("osteoai.web").setLevel(logging.INFO)  # upload ids and reviewer actions, no identity
    area.mkdir(parents=True, exist_ok=True)
    import dataclasses

    queue = ScreeningQueue(area, dataclasses.asdict(run_options.options_from_args(args)))
    site = Site(SiteConfig(area, args.max_upload_mb, 4 * args.max_upload_mb, args.retention_days, sessions), queue)
    server = get_server("osteoai-web", client_type="vue3")
    ReviewApp(server, data, site)
    server.controller.on_server_bind.add(lambda ws: site.bind(ws.app))
    stop = start_retention(area, args.retention_days)
    queue.start()
    print(
        f"osteoai web: http://{args.host}:{args.port}/ (review app, after /login) and "
        f"http://{args.host}:{args.port}/upload; {len(sessions.accounts)} reviewer account(s)",
        flush=True,
    )
    try:
        server.start(host=args.host, port=args.port, open_browser=False, show_connection_info=False)
    finally:
        stop.set()
        queue.stop()
