"""Pseudo-labels for the vertebra model: classical segmentations of unlabelled CTs become training
targets where they are trustworthy (bright bone inside the mask), unknown elsewhere near the column."""

from __future__ import annotations

import numpy as np
import pytest
from OsteoAILib.segmenter_training import dataset as ds
from OsteoAISegmentLib.ai.labels import BODY, IGNORE, POSTERIOR


@pytest.fixture
def small_lumbar_phantom(phantoms):
    """L1-L3 on 1.6 mm voxels (a copy of its own: the tests below may change it)."""
    return phantoms(seed=3, levels="L1-L3", matrix=160, spacing=(1.6, 1.6, 2.0))


def test_levels_trusted_only_without_labelling_flags():
    assert ds.levels_trusted(["fov_cut: T9 is cut by the edge of the scan"])
    assert ds.levels_trusted(["label_uncertain: 2 segment(s) below L5 dropped (sacrum or L6)"])
    assert not ds.levels_trusted(["label_uncertain: no ribs visible; lumbar levels assumed, centred on L3"])
    assert not ds.levels_trusted(["rib_count: 11 rib pairs found; labels may be shifted"])


def test_pseudo_truth_on_a_phantom_with_its_true_labels(small_lumbar_phantom):
    ph = small_lumbar_phantom
    vol = ph.volume
    verse = np.asarray(ph.vertebrae)
    bodies = np.where(np.asarray(ph.bodies) > 0, verse, 0)
    hu = np.asarray(vol.array)
    lev, sem = ds.pseudo_truth(vol, verse, bodies, qc=[])
    vert = verse > 0
    assert np.array_equal(lev, verse)  # no flag: level ids kept
    bright = vert & (hu >= ds.PSEUDO_MIN_VERT_HU)
    taught = np.isin(sem, (BODY, POSTERIOR))
    assert taught.any() and not (taught & ~vert).any()  # bone is only taught inside the mask
    assert np.all(sem[vert & (hu < ds.PSEUDO_MIN_VERT_HU)] == IGNORE)  # faint mask voxels unknown
    assert taught[bright].mean() > 0.5  # most bright bone is taught (the rest is at disc planes)
    # background well away from the column stays background (it is what the model must reject)
    assert (sem == 0).mean() > 0.5
    # a labelling flag drops the level ids, not the bone
    lev2, sem2 = ds.pseudo_truth(vol, verse, bodies, qc=["label_uncertain: no ribs visible"])
    assert not lev2.any() and np.array_equal(sem2, sem)


def test_disc_plane_and_dim_rim_of_a_classical_column_are_unknown():
    """A classical-style column: two touching labels (the disc assigned to one of them) and a dim
    rim of soft tissue inside the mask."""
    from OsteoAIBaseLib.volume import Volume

    hu = np.full((40, 30, 30), 40.0)
    hu[5:35, 10:20, 10:20] = 300.0  # bone
    hu[19:21, 10:20, 10:20] = 80.0  # disc
    verse = np.zeros(hu.shape, np.int16)
    verse[4:20, 9:21, 9:21] = 21  # k runs superior: L2 below L1
    verse[20:36, 9:21, 9:21] = 20
    vol = Volume(hu, spacing=(1.0, 1.0, 1.0))
    lev, sem = ds.pseudo_truth(vol, verse, verse, qc=[])
    assert np.all(sem[17:23, 10:20, 10:20] == IGNORE)  # within 3 mm of the meeting plane
    assert np.all(sem[9:14, 11:19, 11:19] == BODY) and np.all(sem[27:32, 11:19, 11:19] == BODY)
    assert np.all(sem[verse > 0][hu[verse > 0] < ds.PSEUDO_MIN_VERT_HU] == IGNORE)  # dim rim
    assert np.all(sem[:, :, :6] == 0)  # clear of the column: background


def test_prepare_pseudo_runs_the_classical_segmenter(small_lumbar_phantom, tmp_path):
    from OsteoAIBaseLib.imageio import write_volume

    ph = small_lumbar_phantom
    write_volume(ph.volume, tmp_path / "ct.nii.gz")
    out = tmp_path / "seg"
    paths = ds.prepare_pseudo(tmp_path, out, sources={"tiny": "ct.nii.gz"}, log=lambda m: None)
    assert [p.name for p in paths] == ["pseudo_tiny.npz"]
    s = ds.load_sample(paths[0])
    assert s["image"].shape == s["sem"].shape == s["lvl"].shape
    assert np.isin(s["sem"], (BODY, POSTERIOR)).sum() > 100  # the classical segmenter found bone
    # cropped to the body: no all-air border slab wider than the crop margin
    assert (s["image"][:, :, :5] > -0.5).any() and (s["image"][:, :, -5:] > -0.5).any()
