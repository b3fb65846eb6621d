"""Vertebral level names as one global decision over every anchor the scan shows.

The segments (vertebrae split along the spine, cranial -> caudal) are consecutive, so a naming is
one offset: the level of the top segment. Each offset is scored by how well it explains all the
evidence at once, as a log-likelihood:

- ribs, per side: thoracic levels carry a rib (a little less often seen at T1 and T12: the first
  rib is short and steep, the twelfth short and often cut), cervical and lumbar ones do not (a
  cervical or lumbar rib, or a long transverse process, is rare). A rib that is not seen counts
  against a thoracic name only where the image could show it (``assessable``);
- the sacrum, where the scan shows one: the segment above it is L5;
- the carina (tracheal bifurcation), where a chest CT shows the trachea split: near the T4/T5
  disc, a level higher or lower with posture, breathing and age, so a weak anchor that only
  decides between namings the ribs and the sacrum leave open;
- body size: vertebral bodies grow caudally (T1 ~6 cm3, L3 ~30 cm3); with a free per-patient
  scale this is a weak prior that only rules out naming far off;
- the names must exist (C1 ... L5, the sacrum below).

The best offset wins; the runner-up and the margin (in nats) are reported. A small margin, anchors
that disagree (11 or 13 rib pairs, a lumbarised or sacralised segment) or no anchor at all give a
``label_uncertain`` flag naming the alternative: there is no silent "lowest = T12" fallback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from OsteoAIBaseLib import levels as lv

# ordinal -> VerSe id: C1..C7, T1..T12, L1..L5, then the sacrum (26)
ORDINAL = list(range(1, 25)) + [26]
SACRUM = len(ORDINAL) - 1
T1_ORD, T12_ORD = 7, 18
MARGIN_NATS = 6.0  # below this (odds < 400:1) the runner-up naming is reported as a real alternative
# rib seen on one side, given the level
P_RIB_THORACIC = 0.92
P_RIB_T1 = 0.8
P_RIB_T12 = 0.75
P_RIB_C7_L1 = 0.04  # cervical / lumbar rib or a long transverse process mistaken for a rib
P_RIB_OTHER = 0.01
# typical body volume (cm3) by ordinal, C1..L5, as the classical body masks measure it (the body
# grows ~10% a level down the spine; measured on the real scans of ../shared/data: T2 ~9, T10 ~18,
# L3 ~40 cm3)
BODY_CM3 = 1.35 * np.array(
    [
        3,
        3,
        3.5,
        4,
        4.5,
        5,
        5.5,  # C1-C7
        6,
        6.5,
        7,
        7.5,
        8.5,
        9.5,
        11,
        12,
        13.5,
        15,
        17,
        20,  # T1-T12
        23,
        26,
        28,
        29,
        29,
    ],
    float,
)  # L1-L5
SIZE_SD = 0.3  # log-volume spread of one body around the patient's own trend
SIZE_WEIGHT = 0.5
PATIENT_SCALE_SD = 0.35  # log spread of body size between patients: cervical and lumbar bodies differ ~7x


@dataclass
class SegmentEvidence:
    assessable: bool = False  # a missing rib here means no rib (not: out of view)
    volume_cm3: float | None = None  # body volume; None when cut by the scan
    sacrum_below: bool = False  # the segment directly below this one is the sacrum
    rib_sides: int = 0  # filled in by the naming: sides where a rib was matched to this segment


@dataclass
class RibEvidence:
    """One rib where it crosses the paravertebral strip: its side and its height in each segment's
    slab (0 = that segment's lower disc plane, 1 = its upper one)."""

    side: str
    t: np.ndarray  # one value per segment, cranial -> caudal


@dataclass
class Naming:
    ids: list[int]  # VerSe id per segment, cranial -> caudal (26 = sacrum)
    anchor: str
    qc: list[str] = field(default_factory=list)
    margin: float = math.inf
    runner_up: list[int] | None = None
    scores: dict[int, float] = field(default_factory=dict)  # offset -> log-likelihood
    rib_segment: dict[int, int] = field(default_factory=dict)  # rib index -> segment index it counts for


def _p_rib(ordinal: int) -> float:
    if T1_ORD < ordinal < T12_ORD:
        return P_RIB_THORACIC
    if ordinal == T1_ORD:
        return P_RIB_T1
    if ordinal == T12_ORD:
        return P_RIB_T12
    if ordinal in (T1_ORD - 1, T12_ORD + 1):
        return P_RIB_C7_L1
    return P_RIB_OTHER


# Where a rib crosses the strip, in its own vertebra's slab (0 = lower disc, 1 = upper disc): the
# tubercle sits on the transverse process near the top of the vertebra, higher in the kyphotic upper
# thorax (up to ~20 mm above it), lower for the last ribs, which slope steeply down from their heads.
# Read on the real scans of ../shared/data: T2-T6 0.6-1.1, T7-T10 0.4-0.9, T11 0.1-0.5, T12 -0.2-0.1.
RIB_T_SD = 0.5


def _rib_t_mean(ordinal: int) -> float:
    thoracic = ordinal - T1_ORD + 1
    if thoracic <= 1:
        return 0.5
    if thoracic <= 6:
        return 0.8
    if thoracic <= 10:
        return 0.6
    return 0.45 if thoracic == 11 else 0.25


P_UNMATCHED_RIB = 0.02  # a rib-like bone that is no rib of these segments (scapula tip, calcification)


def _rib_position(t: float, ordinal: int) -> float:
    return max(-0.5 * ((t - _rib_t_mean(ordinal)) / RIB_T_SD) ** 2, -8.0)


def align_side(evidence: list[SegmentEvidence], ribs: list[RibEvidence], offset: int):
    """Best monotone matching of one side's ribs (cranial -> caudal) to the segments, given a naming.

    Ribs are counted, not placed: each vertebra takes at most one rib per side and the order is kept,
    so a rib that crosses the strip a little above or below its own vertebra still counts for it.
    Returns (log-likelihood, [(segment index, rib index)] of the matched pairs).
    """
    n, m = len(evidence), len(ribs)
    ords = [min(offset + i, SACRUM) for i in range(n)]
    p = [_p_rib(o) for o in ords]
    D = np.full((n + 1, m + 1), -np.inf)
    D[0, 0] = 0.0
    back = np.zeros((n + 1, m + 1), np.int8)
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            best, how = -np.inf, 0
            if i > 0:  # segment i-1 without a rib on this side
                v = D[i - 1, j] + (math.log(1 - p[i - 1]) if evidence[i - 1].assessable else 0.0)
                if v > best:
                    best, how = v, 1
            if j > 0:  # rib j-1 belongs to none of the segments
                v = D[i, j - 1] + math.log(P_UNMATCHED_RIB)
                if v > best:
                    best, how = v, 2
            if i > 0 and j > 0:
                v = D[i - 1, j - 1] + math.log(p[i - 1]) + _rib_position(float(ribs[j - 1].t[i - 1]), ords[i - 1])
                if v > best:
                    best, how = v, 3
            D[i, j], back[i, j] = best, how
    matched = []
    i, j = n, m
    while i > 0 or j > 0:
        how = back[i, j]
        if how == 3:
            matched.append((i - 1, j - 1))
        i, j = (i - 1, j) if how == 1 else (i, j - 1) if how == 2 else (i - 1, j - 1)
    return float(D[n, m]), matched


def rib_loglik(evidence: list[SegmentEvidence], ribs: list[RibEvidence], offset: int) -> float:
    return sum(align_side(evidence, [r for r in ribs if r.side == side], offset)[0] for side in ("left", "right"))


def size_loglik(evidence: list[SegmentEvidence], offset: int) -> float:
    """Body volumes against the typical trend, with the patient's own scale fitted (profile likelihood)."""
    r = [
        math.log(ev.volume_cm3) - math.log(BODY_CM3[offset + i])
        for i, ev in enumerate(evidence)
        if ev.volume_cm3 and offset + i < len(BODY_CM3)
    ]
    if not r:
        return 0.0
    scale = float(np.median(r))
    r = np.asarray(r) - scale
    return (
        -0.5 * SIZE_WEIGHT * float(np.sum(np.minimum((r / SIZE_SD) ** 2, 9.0))) - 0.5 * (scale / PATIENT_SCALE_SD) ** 2
    )


# Carina position in ordinal units (T4 = 10; 11.0 = the T4/T5 disc). Anatomy texts put it at
# T4/T5 (range T4-T6); on the six chest CTs of ../shared/data it lay between mid-T4 and mid-T6.
CARINA_ORD = 11.25
CARINA_SD = 1.0


def spine_position(t: np.ndarray) -> float:
    """Position along the spine in segments (0 = top of the first segment, growing caudally) of a point
    whose heights in each segment's slab are ``t`` (0 = its lower disc plane, 1 = its upper one)."""
    if len(t) == 0:
        return 0.0
    # the slab it lies in, or (between non-parallel planes) the one it lies nearest
    i = int(np.argmin(np.maximum(np.maximum(-t, t - 1.0), 0.0)))
    return i + 1.0 - float(np.clip(t[i], 0.0, 1.0)) if 0 < i < len(t) - 1 else i + 1.0 - float(t[i])


def carina_loglik(carina_t: np.ndarray | None, offset: int) -> float:
    if carina_t is None or len(carina_t) == 0:
        return 0.0
    pos = offset + spine_position(carina_t)
    return max(-0.5 * ((pos - CARINA_ORD) / CARINA_SD) ** 2, -8.0)


def score_offset(
    evidence: list[SegmentEvidence], ribs: list[RibEvidence], offset: int, carina_t: np.ndarray | None = None
) -> float:
    ll = carina_loglik(carina_t, offset)
    for i, ev in enumerate(evidence):
        o = offset + i
        if o >= SACRUM:
            # sacral segments (or pieces of the sacrum split like vertebrae): possible, never free
            ll += -1.0
            o = SACRUM
        if ev.sacrum_below:
            ll += 0.0 if o == SACRUM - 1 else -6.0
    return ll + rib_loglik(evidence, ribs, offset) + size_loglik(evidence, offset)


def _range(ids: list[int]) -> str:
    named = [lv.NAMES.get(v, "?") for v in ids]
    return f"{named[0]}-{named[-1]}" if named else "-"


def name_segments(
    evidence: list[SegmentEvidence], ribs: list[RibEvidence] | None = None, carina_t: np.ndarray | None = None
) -> Naming:
    """Names for segments ordered cranial -> caudal, with the runner-up naming and the margin.
    ``carina_t``: the carina's heights in each segment's slab, when the scan shows it."""
    n = len(evidence)
    ribs = ribs or []
    if n == 0:
        return Naming([], "none")
    scores = {o: score_offset(evidence, ribs, o, carina_t) for o in range(SACRUM + 1)}
    order = sorted(scores, key=lambda o: -scores[o])
    best = order[0]
    ids = [ORDINAL[min(best + i, SACRUM)] for i in range(n)]
    second = order[1] if len(order) > 1 else None
    margin = scores[best] - scores[second] if second is not None else math.inf
    runner = [ORDINAL[min(second + i, SACRUM)] for i in range(n)] if second is not None else None
    qc: list[str] = []
    for ev in evidence:
        ev.rib_sides = 0
    rib_segment: dict[int, int] = {}  # rib index -> segment index, in the chosen naming
    for side in ("left", "right"):
        idx = [q for q, r in enumerate(ribs) if r.side == side]
        for i, j in align_side(evidence, [ribs[q] for q in idx], best)[1]:
            evidence[i].rib_sides += 1
            rib_segment[idx[j]] = i
    anchors = _anchors(evidence, best)
    if not anchors:
        weak = "the carina and body size" if carina_t is not None else "body size alone"
        qc.append(
            f"label_uncertain: no anchor in view (no first or last rib, no sacrum); named {_range(ids)} "
            f"from {weak}, {_range(runner)} as likely"
        )
    elif margin < MARGIN_NATS:
        qc.append(
            f"label_uncertain: named {_range(ids)} from {', '.join(anchors)}, but {_range(runner)} "
            f"explains the anchors almost as well (margin {margin:.1f})"
        )
    qc += _rib_count_flags(evidence, best)
    weak = "carina+size_prior" if carina_t is not None else "size_prior"
    return Naming(ids, "+".join(anchors) or weak, qc, float(margin), runner, scores, rib_segment)


def _anchors(evidence: list[SegmentEvidence], offset: int) -> list[str]:
    """The transitions the naming rests on: a rib-free vertebra next to a rib-bearing one, the sacrum."""
    out = []
    ribbed = [i for i, ev in enumerate(evidence) if ev.rib_sides > 0]
    free = [ev.assessable and ev.rib_sides == 0 for ev in evidence]
    if ribbed and ribbed[0] > 0 and free[ribbed[0] - 1]:
        out.append(f"first rib at {lv.name(ORDINAL[min(offset + ribbed[0], SACRUM)])}")
    if ribbed and ribbed[-1] < len(evidence) - 1 and free[ribbed[-1] + 1]:
        out.append(f"last rib at {lv.name(ORDINAL[min(offset + ribbed[-1], SACRUM)])}")
    if any(ev.sacrum_below for ev in evidence):
        out.append("sacrum")
    return out


def _rib_count_flags(evidence: list[SegmentEvidence], offset: int) -> list[str]:
    """11 or 13 rib-bearing vertebrae (or ribs where the naming says none) shift one anchor against
    the other: the names then depend on which anchor is trusted."""
    ribbed = [i for i, ev in enumerate(evidence) if ev.rib_sides > 0]
    if not ribbed:
        return []
    first, last = ribbed[0], ribbed[-1]
    whole = (
        first > 0
        and evidence[first - 1].assessable
        and evidence[first - 1].rib_sides == 0
        and last < len(evidence) - 1
        and evidence[last + 1].assessable
        and evidence[last + 1].rib_sides == 0
    )
    if not whole:
        return []
    pairs = last - first + 1
    if pairs == 12:
        return []
    return [
        f"label_uncertain: ribs on {pairs} vertebrae of a rib cage seen whole (12 expected: 11 or 13 rib "
        f"pairs, or a missed rib); names counted from the {'first' if offset + first == T1_ORD else 'last'} rib"
    ]
