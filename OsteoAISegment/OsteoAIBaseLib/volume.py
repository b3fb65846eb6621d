"""A CT volume as a numpy array plus its physical geometry.

Conventions used throughout the core (and by every stage's interface):
- ``array`` is indexed ``[k, j, i]`` (slice, row, column), as SimpleITK's ``GetArrayFromImage`` and
  Slicer's ``arrayFromVolume`` return it.
- ``spacing`` is ``(si, sj, sk)`` in mm, ``origin`` is the LPS position of voxel (0, 0, 0) and
  ``direction`` is the 3x3 LPS direction matrix whose columns are the i, j, k axes (ITK/DICOM).
- Stages work on the *canonical* orientation produced by :func:`to_canonical`: i runs right->left,
  j anterior->posterior and k inferior->superior (DICOM "LPS" axial). So ``array[k]`` is an axial
  slice seen from the feet with the patient's right on the image left, ``array[:, :, i]`` a sagittal
  reformat and a larger ``k`` is more cranial.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Volume:
    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    meta: dict = field(default_factory=dict)  # acquisition tags: kvp, kernel, ctdivol, modality...

    def __post_init__(self):
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    def with_array(self, array: np.ndarray, **meta) -> Volume:
        """Same geometry, another array (e.g. a labelmap on this grid)."""
        return replace(self, array=array, meta={**self.meta, **meta})

    def ijk_to_lps(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix as Slicer's ``vtkMRMLVolumeNode.GetIJKToRASMatrix``."""
        m = self.ijk_to_lps()
        m[:3, :] = LPS_TO_RAS @ m[:3, :]
        return m

    def index_to_lps(self, kji) -> np.ndarray:
        """Physical LPS point(s) of array index/indices given as (k, j, i)."""
        kji = np.atleast_2d(np.asarray(kji, dtype=float))
        ijk = kji[:, ::-1]
        pts = ijk @ (self.direction @ np.diag(self.spacing)).T + np.asarray(self.origin)
        return pts if pts.shape[0] > 1 else pts[0]

    @classmethod
    def from_ijk_to_ras(cls, array: np.ndarray, ijk_to_ras: np.ndarray, meta: dict | None = None) -> Volume:
        m = np.asarray(ijk_to_ras, dtype=float)
        lps = LPS_TO_RAS @ m[:3, :]
        spacing = np.linalg.norm(lps[:, :3], axis=0)
        direction = lps[:, :3] / spacing
        return cls(array, tuple(spacing), tuple(lps[:, 3]), direction, dict(meta or {}))
