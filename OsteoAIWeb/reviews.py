"""Reviews stored beside a result: ``reviews/<UTC time>-<reviewer>/review.json`` (decision, comment,
reviewer, time, the edits made) and, when the reviewer recomputed, that ``results.json``. The automatic
``results.json`` of the study folder is never written: every review is a new folder."""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone
from pathlib import Path

from OsteoAIBaseLib.atomic import write_json
from OsteoAIBaseLib.errors import InputError

DECISIONS = ("accepted", "rejected")


def save_review(
    study_dir: Path,
    reviewer: str,
    decision: str,
    comment: str = "",
    results: dict | None = None,
    edits: list[str] | None = None,
) -> Path:
    if decision not in DECISIONS:
        raise InputError(f"decision must be one of {', '.join(DECISIONS)}")
    now = datetime.now(timezone.utc)
    folder = Path(study_dir) / "reviews" / f"{now:%Y%m%dT%H%M%S%fZ}-{reviewer}-{secrets.token_hex(2)}"
    folder.mkdir(parents=True)
    if results is not None:
        write_json(folder / "results.json", results)
    write_json(
        folder / "review.json",
        {
            "schema": "osteoai/review/v1",
            "reviewer": reviewer,
            "time": now.isoformat(timespec="seconds"),
            "decision": decision,
            "comment": comment[:4000],
            "edits": list(edits or []),
            "recomputed": results is not None,
            "automatic_vbmd": _auto_vbmd(study_dir),
            "reviewed_vbmd": (results or {}).get("diagnosis", {}).get("vbmd_mg_cm3") if results else None,
        },
    )
    return folder


def _auto_vbmd(study_dir: Path):
    try:
        return json.loads((Path(study_dir) / "results.json").read_text())["diagnosis"]["vbmd_mg_cm3"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def reviews_of(study_dir: Path) -> list[dict]:
    out = []
    for f in sorted((Path(study_dir) / "reviews").glob("*/review.json")):
        try:
            out.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    return out


def latest_review(study_dir: Path) -> dict | None:
    all_ = reviews_of(study_dir)
    return all_[-1] if all_ else None
