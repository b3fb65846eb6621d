"""Score a spine segmentation against reference landmarks read by eye on real CT.

A reference vertebra (``landmarks.json`` in ../shared/data) is its level, the centres of its
superior and inferior endplates and of its body, in LPS world mm. Its *slab* is the space between
the two planes through the endplate centres, normal to the inferior -> superior axis. Scores:

- identification: the predicted body whose centroid lies in the slab (+- ``ID_TOL_MM`` along the
  axis, and near the reference centre across it) carries the reference name (or the readers'
  alternative name);
- ROI placement: the share of an ROI's voxels inside the slab of its own level, and, name-blind,
  inside the slab of the body the ROI's centroid sits in (an ROI across a disc fails either way);
- wrong names without ``label_uncertain`` (the worst error: a confident wrong level);
- ``fracture`` flags on reference levels (no reader reported a fracture on these scans).

Pure numpy: the segmentation is given as canonical-grid labelmaps plus the canonical volume's geometry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from OsteoAIBaseLib import levels as lv
from scipy import ndimage as ndi

ID_TOL_MM = 3.0
ACROSS_TOL_MM = 25.0  # a body centroid farther than this from the reference centre is another structure


@dataclass
class RefVertebra:
    level: str
    alt_level: str | None
    superior: np.ndarray
    inferior: np.ndarray
    centroid: np.ndarray
    fully_in_view: bool

    @property
    def names(self) -> set[str]:
        return {self.level} | ({self.alt_level} if self.alt_level else set())

    @property
    def axis(self) -> np.ndarray:
        a = self.superior - self.inferior
        return a / max(np.linalg.norm(a), 1e-6)

    @property
    def height(self) -> float:
        return float(np.linalg.norm(self.superior - self.inferior))

    def along(self, pts: np.ndarray) -> np.ndarray:
        """Signed distance (mm) of LPS points above the inferior endplate plane."""
        return (np.atleast_2d(pts) - self.inferior) @ self.axis

    def across(self, pts: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(pts) - self.centroid
        return np.linalg.norm(d - np.outer(d @ self.axis, self.axis), axis=1)

    def in_slab(self, pts: np.ndarray, tol: float = 0.0) -> np.ndarray:
        t = self.along(pts)
        return (t >= -tol) & (t <= self.height + tol)


@dataclass
class Reference:
    scan: str
    vertebrae: list[RefVertebra]
    confidence: str  # high | medium | low
    names_agreed: bool = True
    extra: dict = field(default_factory=dict)


def load_landmarks(path: str | Path) -> Reference:
    d = json.loads(Path(path).read_text())
    verts = [
        RefVertebra(
            v["level"],
            v.get("alt_level"),
            np.asarray(v["superior"], float),
            np.asarray(v["inferior"], float),
            np.asarray(v["centroid"], float),
            bool(v.get("fully_in_view", True)),
        )
        for v in d["vertebrae"]
    ]
    return Reference(
        d.get("scan", Path(path).parent.name),
        verts,
        d.get("level_confidence", "high"),
        bool(d.get("names_agreed", True)),
    )


def _world_points(canonical, kji: np.ndarray) -> np.ndarray:
    return np.atleast_2d(canonical.index_to_lps(kji))


def _centroids(lab: np.ndarray) -> dict[int, np.ndarray]:
    ids = [int(v) for v in np.unique(lab) if v]
    if not ids:
        return {}
    com = ndi.center_of_mass(np.ones(lab.shape, np.uint8), lab, ids)
    return {v: np.asarray(c) for v, c in zip(ids, com, strict=True)}


def score_scan(
    ref: Reference,
    canonical,
    bodies: np.ndarray,
    rois: np.ndarray,
    scan_qc: list[str],
    level_qc: dict[int, list[str]] | None = None,
) -> dict:
    """Per-reference-level and per-ROI rows, and the scan's totals. Labelmaps on the canonical grid."""
    uncertain = any(f.startswith("label_uncertain") for f in scan_qc)
    level_qc = level_qc or {}
    body_c = {v: _world_points(canonical, c)[0] for v, c in _centroids(bodies).items()}
    rows = []
    for rv in ref.vertebrae:
        if rv.level not in lv.IDS or lv.IDS[rv.level] > 24:
            continue  # the sacrum gets no vertebra label and no ROI
        hits = [v for v, p in body_c.items() if rv.in_slab(p, ID_TOL_MM)[0] and rv.across(p)[0] <= ACROSS_TOL_MM]
        # two predicted bodies in one reference slab: the nearer one is this vertebra
        hit = min(hits, key=lambda v: float(np.linalg.norm(body_c[v] - rv.centroid))) if hits else None
        name = lv.NAMES.get(hit) if hit else None
        ok = name in rv.names
        fracture = bool(hit and any(f.startswith("fracture") for f in level_qc.get(hit, [])))
        rows.append(
            {
                "level": rv.level,
                "alt": rv.alt_level,
                "full": rv.fully_in_view,
                "predicted": name,
                "identified": ok,
                "wrong_unflagged": bool(name and not ok and not uncertain),
                "fracture_flag": fracture,
            }
        )
    return {
        "scan": ref.scan,
        "confidence": ref.confidence,
        **totals(rows, score_rois(ref, canonical, rois), uncertain),
        # a low-confidence scan names its levels honestly only with label_uncertain
        "missing_uncertain_flag": bool(ref.confidence == "low" and not uncertain),
    }


def totals(rows: list[dict], roi_rows: list[dict], uncertain: bool) -> dict:
    """The per-scan counts over level rows (``full``, ``identified``, ``wrong_unflagged``, ``fracture_flag``)."""
    full = [r for r in rows if r["full"]]
    return {
        "label_uncertain": uncertain,
        "levels": rows,
        "rois": roi_rows,
        "n_full": len(full),
        "n_identified": sum(r["identified"] for r in full),
        "wrong_unflagged": sum(r["wrong_unflagged"] for r in rows),
        "fracture_flags": sum(r["fracture_flag"] for r in rows),
    }


def score_rois(ref: Reference, canonical, rois: np.ndarray) -> list[dict]:
    """Share of each ROI's voxels in its own level's slab and (name-blind) in the slab it sits in."""
    out = []
    for lab in (int(v) for v in np.unique(rois) if v):
        kji = np.argwhere(rois == lab)
        pts = _world_points(canonical, kji)
        c = pts.mean(0)
        name = lv.NAMES.get(lab, str(lab))
        own = [rv for rv in ref.vertebrae if name in rv.names]  # either reading of the level counts
        named = max(float(rv.in_slab(pts).mean()) for rv in own) if own else None
        homes = [rv for rv in ref.vertebrae if rv.in_slab(c)[0] and rv.across(c)[0] <= ACROSS_TOL_MM]
        blind = float(homes[0].in_slab(pts).mean()) if homes else None
        out.append(
            {
                "roi": name,
                "voxels": len(kji),
                "inside_named": named,
                "inside_body": blind,
                "home": homes[0].level if homes else None,
            }
        )
    return out


def roi_dice(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per-label Dice between two ROI labelmaps (invariance checks)."""
    out = {}
    for lab in sorted({int(v) for v in np.unique(a) if v} | {int(v) for v in np.unique(b) if v}):
        x, y = a == lab, b == lab
        s = x.sum() + y.sum()
        out[lv.NAMES.get(lab, str(lab))] = float(2 * (x & y).sum() / s) if s else 1.0
    return out


def score_discs(ref: Reference, disc_points_lps: np.ndarray, tol_frac: float = 0.35) -> dict:
    """Predicted disc centres against the reference discs (midway between neighbouring endplates).

    A reference disc is found when a predicted disc centre lies within ``tol_frac`` of the local
    pitch of it along the spine axis (and near it across); a predicted disc with no reference disc
    that close, inside the referenced span, is spurious (it splits a body).
    """
    verts = ref.vertebrae
    refs = []
    for up, dn in zip(verts[:-1], verts[1:], strict=False):
        c = 0.5 * (up.inferior + dn.superior)
        axis = up.centroid - dn.centroid
        pitch = float(np.linalg.norm(axis))
        refs.append((f"{up.level}/{dn.level}", c, axis / max(pitch, 1e-6), pitch))
    pts = np.atleast_2d(np.asarray(disc_points_lps, float)) if len(disc_points_lps) else np.zeros((0, 3))
    found, missed, used = [], [], set()
    for name, c, a, pitch in refs:
        d = pts - c
        along = d @ a
        across = np.linalg.norm(d - np.outer(along, a), axis=1)
        ok = np.nonzero((np.abs(along) <= tol_frac * pitch) & (across <= ACROSS_TOL_MM))[0]
        if len(ok):
            q = int(ok[np.argmin(np.abs(along[ok]))])
            used.add(q)
            found.append((name, round(float(along[q]), 1)))
        else:
            near = float(along[np.argmin(np.abs(along))]) if len(pts) else float("nan")
            missed.append((name, round(near, 1)))
    bottom = verts[-1].inferior
    ax = verts[0].superior - bottom  # the referenced span, top endplate to bottom endplate
    spurious = []
    for q, p in enumerate(pts):
        if q in used:
            continue
        t = float((p - bottom) @ ax / (ax @ ax))
        if 0.0 < t < 1.0:
            spurious.append([round(float(x), 1) for x in p])
    return {"discs": len(refs), "found": found, "missed": missed, "spurious": spurious}
