"""The upload area: one folder per upload, named by a random id, reached with a link token.

``<area>/<id>/status.json`` says where the upload is (queued, running, done, failed), its progress
and its message; ``input/`` holds what was uploaded until it is screened, ``result/`` the outputs and
``summary.pdf``. A file being received lives in ``<area>/.incoming-*/`` and becomes ``<id>/`` with one
rename once it has passed every check: a rejected or broken upload leaves nothing. Nothing here holds
the uploader's file name; the token is stored only as its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import shutil
import time
from pathlib import Path

from OsteoAIBaseLib.atomic import write_json

ID_RE = re.compile(r"^[0-9a-f]{16}$")
STATES = ("queued", "running", "done", "failed")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_incoming(area: Path) -> Path:
    area.mkdir(parents=True, exist_ok=True)
    d = area / f".incoming-{secrets.token_hex(8)}"
    d.mkdir()
    return d


def publish(area: Path, incoming: Path, input_path: Path) -> tuple[str, str]:
    """Turn a checked incoming folder into ``<id>/`` (queued); returns ``(id, token)``."""
    upload_id, token = secrets.token_hex(8), secrets.token_urlsafe(18)
    rel = input_path.relative_to(incoming)
    write_json(
        incoming / "status.json",
        {
            "id": upload_id,
            "created": time.time(),
            "token_sha256": token_hash(token),
            "state": "queued",
            "progress": 0.0,
            "message": "waiting for the screening worker",
            "input": str(rel),
        },
    )
    incoming.rename(area / upload_id)
    return upload_id, token


def read_status(d: Path) -> dict | None:
    try:
        return json.loads((d / "status.json").read_text())
    except (OSError, ValueError):
        return None


def update_status(d: Path, **changes) -> dict:
    status = read_status(d) or {}
    status.update(changes)
    write_json(d / "status.json", status)
    return status


def find(area: Path, upload_id: str, token: str) -> Path | None:
    """The upload's folder when ``token`` is its token; None for any wrong id or token (the same
    answer for both, so ids cannot be probed)."""
    if not ID_RE.match(upload_id or ""):
        return None
    d = area / upload_id
    status = read_status(d)
    if status is None or not hmac.compare_digest(status.get("token_sha256", ""), token_hash(token or "")):
        return None
    return d


def pending(area: Path) -> list[Path]:
    """Uploads not yet screened (a restarted server picks them up), oldest first."""
    out = []
    for d in area.glob("*") if area.is_dir() else []:
        s = read_status(d) if ID_RE.match(d.name) else None
        if s and s.get("state") in ("queued", "running"):
            out.append((s.get("created", 0), d))
    return [d for _, d in sorted(out)]


def purge(area: Path, days: float, now: float | None = None) -> list[str]:
    """Delete uploads older than ``days`` (results included) and incoming folders of uploads that
    never finished (over an hour old). Returns the ids removed."""
    now = time.time() if now is None else now
    removed = []
    if not area.is_dir():
        return removed
    for d in area.iterdir():
        if d.name.startswith(".incoming-"):
            if now - d.stat().st_mtime > 3600:
                shutil.rmtree(d, ignore_errors=True)
            continue
        s = read_status(d) if ID_RE.match(d.name) else None
        if s is not None and now - float(s.get("created", now)) > days * 86400:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d.name)
    return removed
