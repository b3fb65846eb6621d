"""Trabecular ROI placement against the phantom's tissue map (cortex, vein channel, bodies)."""

from __future__ import annotations

import numpy as np
import pytest
from OsteoAIBaseLib import levels as lv
from OsteoAIBaseLib.volume import Volume
from OsteoAILib.roi import RoiSet, place_rois, roi_from_box
from OsteoAISegmentLib.segmentation import SpineSegmentation
from scipy import ndimage as ndi

VEIN, CORTICAL = 12, 5


@pytest.fixture(scope="module")
def phantom(phantoms):

    return phantoms(seed=3, levels="T12-L2", matrix=192, spacing=(1.0, 1.0, 1.5))


def _truth_seg(ph) -> SpineSegmentation:
    ids = [int(x) for x in np.unique(ph.vertebrae) if x]
    ids = sorted(ids, key=lv.ORDER.index)
    partial = [x for x in ids if any(np.take(ph.vertebrae == x, e, axis=0).any() for e in (0, -1))]
    return SpineSegmentation(
        ph.vertebrae.astype(np.int16), ph.bodies.astype(np.int16), ids, [], {"partial_levels": partial}, "truth"
    )


@pytest.fixture(scope="module")
def truth_rois(phantom) -> RoiSet:
    return place_rois(phantom.volume, _truth_seg(phantom))


def _complete_levels(ph):
    return [
        int(x)
        for x in np.unique(ph.bodies)
        if x and not ph.bodies[0].__eq__(x).any() and not ph.bodies[-1].__eq__(x).any()
    ]


def test_roi_inside_body_away_from_cortex_and_vein(phantom, truth_rois):
    spacing_kji = np.asarray(phantom.volume.spacing[::-1])
    levels = _complete_levels(phantom)
    assert len(levels) >= 2
    for lab in levels:
        roi = truth_rois.labelmap == lab
        assert roi.sum() * np.prod(spacing_kji) >= 500, f"{lv.name(lab)} ROI too small"
        body = phantom.bodies == lab
        assert body[roi].all()
        # >= 2 mm from the body's outer surface (the cortex), measured in mm on this anisotropic grid
        dist = ndi.distance_transform_edt(ndi.binary_fill_holes(body), sampling=spacing_kji)
        assert dist[roi].min() > 2.0 - 1e-6
        tis = phantom.tissues[roi]
        assert not (tis == VEIN).any(), f"{lv.name(lab)} ROI includes the basivertebral vein"
        assert not (tis == CORTICAL).any()


def test_roi_stays_in_central_height_band(phantom, truth_rois):
    for lab in _complete_levels(phantom):
        kb = np.nonzero((phantom.bodies == lab).any(axis=(1, 2)))[0]
        kr = np.nonzero((truth_rois.labelmap == lab).any(axis=(1, 2)))[0]
        h = kb.max() - kb.min()
        assert kr.min() >= kb.min() + 0.15 * h and kr.max() <= kb.max() - 0.15 * h


def test_roi_info_and_heights(phantom, truth_rois):
    for lab in _complete_levels(phantom):
        info = truth_rois.info[lab]
        assert info.level == lv.name(lab)
        n = int((truth_rois.labelmap == lab).sum())
        assert info.volume_mm3 == pytest.approx(n * phantom.volume.voxel_volume_mm3, rel=1e-3)
        (k0, j0, i0), (k1, j1, i1) = info.box_kji
        assert k0 <= info.center_kji[0] <= k1 and j0 <= info.center_kji[1] <= j1
        hts = info.heights_mm
        kb = np.nonzero((phantom.bodies == lab).any(axis=(1, 2)))[0]
        full = (kb.max() - kb.min() + 1) * phantom.volume.spacing[2]
        for key in ("anterior", "middle", "posterior"):
            assert 0.6 * full < hts[key] <= full + 1e-6, (lv.name(lab), key, hts, full)
        assert not info.qc


def test_small_roi_and_cut_body_are_flagged(phantom):
    seg = _truth_seg(phantom)
    rs = place_rois(phantom.volume, seg, min_volume_mm3=1e9)
    assert all(any(q.startswith("roi_small:") for q in i.qc) for i in rs.info.values())
    vol = phantom.volume
    k = vol.shape[0]
    keep = slice(0, int(0.5 * k))
    cut_vol = Volume(vol.array[keep].copy(), vol.spacing, vol.origin, vol.direction)
    cut_seg = SpineSegmentation(seg.vertebrae[keep].copy(), seg.bodies[keep].copy(), seg.levels, [], {}, "truth")
    cut_seg.levels = [x for x in seg.levels if (cut_seg.bodies == x).any()]
    rs = place_rois(cut_vol, cut_seg)
    cut = [lab for lab in cut_seg.levels if (cut_seg.bodies[-1] == lab).any()]
    assert cut
    for lab in cut:
        assert any(q.startswith("body_cut:") for q in rs.info[lab].qc)
        assert not (rs.labelmap == lab).any()


def test_roi_from_box(phantom):
    seg = _truth_seg(phantom)
    lab = _complete_levels(phantom)[0]
    idx = np.argwhere(phantom.bodies == lab)
    c = idx.mean(0).astype(int)
    box = (tuple(c - 6), tuple(c + 6))
    roi = roi_from_box(phantom.volume, seg, lab, box)
    assert roi.any()
    assert (phantom.bodies[roi] == lab).all()
    w = np.argwhere(roi)
    assert (w.min(0) >= np.array(box[0])).all() and (w.max(0) <= np.array(box[1])).all()
    assert not roi_from_box(phantom.volume, seg, lab, ((0, 0, 0), (1, 1, 1))).any()


def test_rois_on_classical_segmentation(phantom):
    from OsteoAISegmentLib.api import segment_spine

    seg = segment_spine(phantom.volume, method="classical")
    rs = place_rois(phantom.volume, seg)
    placed = [lab for lab in _complete_levels(phantom) if (rs.labelmap == lab).any()]
    assert placed
    for lab in placed:
        roi = rs.labelmap == lab
        assert (phantom.bodies[roi] == lab).all(), f"{lv.name(lab)} ROI leaves the true body"
        assert not (phantom.tissues[roi] == VEIN).any()


def test_body_split_off_the_discs_gets_no_roi(phantom):
    """Bodies shifted half a vertebra along the spine (a segmenter that put its cuts mid-body):
    the ROI must not straddle the disc; it is refused with a seg_suspect flag."""
    seg = _truth_seg(phantom)
    levels = _complete_levels(phantom)
    kb = [np.nonzero((phantom.bodies == lab).any(axis=(1, 2)))[0] for lab in levels]
    half = int(round(np.median([k.max() - k.min() for k in kb]) / 2))
    shifted = SpineSegmentation(
        np.roll(seg.vertebrae, half, axis=0), np.roll(seg.bodies, half, axis=0), seg.levels, [], {}, "shifted"
    )
    rs = place_rois(phantom.volume, shifted)
    for lab in levels:
        roi = rs.labelmap == lab
        flagged = any(q.startswith("seg_suspect:") for q in rs.info[lab].qc) if lab in rs.info else True
        assert flagged or not roi.any() or (phantom.bodies[roi] == lab).mean() > 0.99
    assert any(any(q.startswith("seg_suspect:") for q in i.qc) for i in rs.info.values())


def _ratio_errors(ph, rs) -> dict[str, float]:
    """|measured - true| anterior/posterior height ratio per complete level that got an ROI."""
    out = {}
    for t in ph.truth["levels"]:
        lab = int(t["label"])
        info = rs.info.get(lab)
        if t["partial"] or info is None or not (rs.labelmap == lab).any():
            continue
        th, h = t["heights_mm"], info.heights_mm
        assert h["posterior"] > 0, (t["level"], h)
        out[t["level"]] = abs(h["anterior"] / h["posterior"] - th["anterior"] / th["posterior"])
    return out


def test_heights_follow_the_endplates_of_a_wedge_fracture(phantoms):
    """A wedge fracture (T12 anterior 30% short) reads as one, its unfractured neighbours as
    A = P. On the true bodies: the classical segmenter currently draws the T11/T12 disc plane into
    this phantom's wedge gap (see the report), which no height reading can undo."""

    ph = phantoms(seed=0, levels="T10-L1", fracture={"T12": 0.3})
    rs = place_rois(ph.volume, _truth_seg(ph))
    err = _ratio_errors(ph, rs)
    assert "T12" in err and len(err) >= 3, err
    assert max(err.values()) <= 0.1, err


@pytest.mark.slow
def test_heights_on_default_phantom_classical(phantoms):
    from OsteoAISegmentLib.api import segment_spine

    ph = phantoms(seed=0)
    rs = place_rois(ph.volume, segment_spine(ph.volume, method="classical"))
    err = _ratio_errors(ph, rs)
    assert len(err) >= 8, err
    assert max(err.values()) <= 0.1, err


def test_heights_on_truth_bodies_match_the_phantom(phantom, truth_rois):
    by_label = {int(t["label"]): t for t in phantom.truth["levels"]}
    for lab in _complete_levels(phantom):
        h, th = truth_rois.info[lab].heights_mm, by_label[lab]["heights_mm"]
        for key in ("anterior", "middle", "posterior"):
            # the endplate's outer edge is read at half maximum: ~1 mm of partial volume
            assert h[key] == pytest.approx(th[key], abs=2.0), (lv.name(lab), key, h, th)


def test_roi_clear_of_an_enhanced_aorta_stuck_to_the_body(phantoms):
    """Contrast phantom: the classical body masks take in part of the enhanced aorta beside the
    upper thoracic bodies; the ROI must still stay in bone (centred on the canal's midline)."""
    from OsteoAISegmentLib.api import segment_spine

    ph = phantoms(seed=0, contrast=True, levels="T3-T6")
    rs = place_rois(ph.volume, segment_spine(ph.volume, method="classical"))
    # labels are not checked (this field of view does not show where the ribs end): each ROI
    # must lie in one true body
    checked = 0
    for lab in rs.info:
        roi = rs.labelmap == lab
        if not roi.any():
            continue
        own = np.bincount(ph.bodies[roi].astype(np.int64)).argmax()
        frac = float((ph.bodies[roi] == own).mean())
        assert own and frac >= 0.99, (lv.name(lab), frac)
        checked += 1
    assert checked >= 2


def test_a_body_is_merged_only_when_taller_beyond_the_height_resolution():
    """Two bodies merged (a missed disc) are about twice as tall as their neighbours, and caught at any
    slice thickness; a body 45% taller than its neighbours on 5 mm slices is within what such slices
    can measure (each endplate to about half a slice, plus the disc-plane grid)."""
    from OsteoAILib.roi import _looks_merged

    order = [15, 16, 17, 18, 19]  # T8-T12
    mids = {15: 18.0, 16: 18.0, 17: 26.0, 18: 18.0, 19: 18.0}
    assert _looks_merged(17, mids, order, resolution_mm=0.0)
    assert not _looks_merged(17, mids, order, resolution_mm=7.0)
    mids[17] = 38.0
    assert _looks_merged(17, mids, order, resolution_mm=7.0)
