"""A study's ``scene.mrml`` imported with its CT read beside the import instead of inside it.

Slicer's NRRD reader inflates the CT's gzip stream on the importing thread: ~0.8 s of a study view on a
512 x 512 x 300 CT, after which it reads the segmentations, boxes and tables for another second. Here a thread
inflates the CT (ISA-L's inflate where installed, about twice zlib's speed; both let go of the GIL) while
slicer-core imports the rest; the voxels and the geometry the file gives are then handed to the volume node, as
its storage node would. A CT file this reader does not take (a detached header, another encoding or type, a
vector volume) is left to the scene import, as before.
"""

from __future__ import annotations

import html
import re
import threading
import zlib
from pathlib import Path

import numpy as np

try:
    from isal import isal_zlib as _inflate
except ImportError:  # plain zlib: the same bytes, slower
    _inflate = zlib

# NRRD type names -> numpy dtypes (little-endian; single bytes need no endian)
_TYPES = {
    "short": "<i2", "signed short": "<i2", "short int": "<i2", "int16": "<i2", "int16_t": "<i2",
    "unsigned short": "<u2", "ushort": "<u2", "uint16": "<u2", "uint16_t": "<u2",
    "int": "<i4", "signed int": "<i4", "int32": "<i4", "int32_t": "<i4",
    "float": "<f4", "double": "<f8",
    "unsigned char": "u1", "uchar": "u1", "uint8": "u1", "uint8_t": "u1",
    "signed char": "i1", "int8": "i1", "int8_t": "i1",
}  # fmt: skip
_LPS = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS: x and y change sign


class _CTRead(threading.Thread):
    """Reads and inflates one NRRD file; ``array`` ([k, j, i]) and ``ijk_to_ras`` when done, else ``error``."""

    def __init__(self, file: Path):
        super().__init__(daemon=True)
        self.file = file
        self.inflating = threading.Event()
        self.array = self.ijk_to_ras = self.error = None

    def run(self):
        try:
            data = self.file.read_bytes()
            end = data.find(b"\n\n")
            if end < 0:
                raise ValueError("no end of header")
            dtype, shape, self.ijk_to_ras, encoding = _header(data[:end].decode("latin-1").splitlines())
            self.inflating.set()
            size = int(np.prod(shape)) * dtype.itemsize
            # one output buffer of the whole size: the inflate then runs as one call without the GIL, where
            # growing buffers take it back at every step and wait behind the import, which holds it throughout
            raw = _inflate.decompress(data[end + 2 :], 31, size + 1) if encoding != "raw" else data[end + 2 :]
            self.array = np.frombuffer(raw, dtype, count=int(np.prod(shape))).reshape(shape)
        except Exception as e:  # any file this reader does not take goes back to Slicer's reader
            self.error = e
        finally:
            self.inflating.set()


def _header(lines: list[str]):
    """(dtype, [k, j, i] shape, 4x4 IJK-to-RAS, encoding) of an attached NRRD header, or ValueError."""
    if not lines or not lines[0].startswith("NRRD"):
        raise ValueError("not a NRRD header")
    fields = {}
    for line in lines[1:]:
        if line.startswith("#") or ":" not in line or ":=" in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    if fields.get("dimension") != "3" or "data file" in fields or "datafile" in fields:
        raise ValueError("not a single-file 3D NRRD")
    encoding = fields.get("encoding", "").lower()
    dtype = _TYPES.get(fields.get("type", "").lower())
    if encoding not in ("gzip", "gz", "raw") or dtype is None:
        raise ValueError("encoding or type not read here")
    if dtype[0] == "<" and fields.get("endian", "little") != "little":
        raise ValueError("big-endian")
    space = fields.get("space", "").lower()
    if space not in ("left-posterior-superior", "lps", "right-anterior-superior", "ras"):
        raise ValueError(f"space {space!r} not read here")
    sign = _LPS if space in ("left-posterior-superior", "lps") else np.ones(3)
    vectors = [[float(x) for x in v.split(",")] for v in re.findall(r"\(([^)]*)\)", fields["space directions"])]
    origin = [float(x) for x in re.findall(r"\(([^)]*)\)", fields["space origin"])[0].split(",")]
    if len(vectors) != 3 or any(len(v) != 3 for v in vectors) or len(origin) != 3:
        raise ValueError("not three space directions")
    m = np.eye(4)
    m[:3, :3] = (np.array(vectors) * sign).T  # columns: the i, j, k steps in RAS
    m[:3, 3] = np.array(origin) * sign
    nx, ny, nz = (int(s) for s in fields["sizes"].split())
    return np.dtype(dtype), (nz, ny, nx), m, encoding


def _ct_in_scene(text: str, folder: Path):
    """(volume node id, its XML tag, its storage reference in that tag, storage node id, file) of the scene's
    scalar volume stored in one NRRD file, or None."""
    for vol in re.finditer(r"<Volume\s[^>]*>", text):
        tag = vol.group(0)
        vid = re.search(r'\bid="([^"]+)"', tag)
        ref = re.search(r"storage:([^;\"]+);", tag)
        if not vid or not ref:
            continue
        store = re.search(r'<VolumeArchetypeStorage\s[^>]*\bid="' + re.escape(ref.group(1)) + r'"[^>]*>', text)
        name = store and re.search(r'\bfileName="([^"]+)"', store.group(0))
        if not name or "fileListMember1" in store.group(0) or not name.group(1).lower().endswith(".nrrd"):
            continue
        file = Path(html.unescape(name.group(1)))
        return vid.group(1), tag, ref.group(0), ref.group(1), file if file.is_absolute() else folder / file
    return None


def import_scene(scene, path: Path, meanwhile=None) -> bool:
    """``scene.Import()`` of ``path`` with its CT read on a second thread; False when the import fails.

    ``meanwhile()``, if given, runs on this thread while the CT is inflated (the study view draws its plots there).
    """
    from OsteoAILib.mrml.volumes import _array_to_image

    path = Path(path).resolve()
    text = path.read_text()
    found = _ct_in_scene(text, path.parent)
    scene.SetURL(str(path))
    if found is None or not found[-1].is_file():
        if meanwhile is not None:
            meanwhile()
        return bool(scene.Import())
    vid, tag, ref, sid, file = found
    read = _CTRead(file)
    read.start()
    if meanwhile is not None:
        meanwhile()
    read.inflating.wait()  # the thread holds no GIL from here; the import may hold it all along
    scene.SetRootDirectory(str(path.parent))  # what SetURL sets for a file, not for a string
    scene.SetLoadFromXMLString(1)
    # the volume comes without its storage node: slicer-core does not read it
    scene.SetSceneXMLString(text.replace(tag, tag.replace(ref, "", 1), 1))
    try:
        ok = bool(scene.Import())
    finally:
        scene.SetLoadFromXMLString(0)
        read.join()
    node, storage = scene.GetNodeByID(vid), scene.GetNodeByID(sid)
    if not ok or node is None or storage is None:
        return ok
    node.SetAndObserveStorageNodeID(sid)
    ras_to_ijk = None if read.error is not None or read.array is None else _slicer_geometry(file, read.ijk_to_ras)
    if ras_to_ijk is None:
        return bool(storage.ReadData(node))  # what the import would have done
    display = node.GetDisplayNode()
    if display is not None and display.IsA("vtkMRMLScalarVolumeDisplayNode"):
        # The scene holds the window/level that the automatic setting found on these very voxels: kept, instead
        # of a histogram of the whole CT again (~0.7 s), as if the reader had set it by hand.
        display.SetAutoWindowLevel(0)
    node.SetAndObserveImageData(_array_to_image(read.array))
    node.SetRASToIJKMatrix(ras_to_ijk)
    return True


def _slicer_geometry(file: Path, ijk_to_ras: np.ndarray):
    """The RAS-to-IJK matrix Slicer's reader gives the file (its header only: to the last bit what the storage
    node would set), or None when it does not match the header as read here (e.g. axes it would flip)."""
    import slicer
    import vtk
    from OsteoAILib.mrml.volumes import _matrix_to_numpy

    reader = slicer.vtkITKArchetypeImageSeriesScalarReader()
    reader.SetArchetype(str(file))
    reader.SetSingleFile(1)
    reader.SetUseOrientationFromFile(1)
    reader.SetOutputScalarTypeToNative()
    reader.SetDesiredCoordinateOrientationToNative()
    reader.UpdateInformation()
    ras_to_ijk = vtk.vtkMatrix4x4()
    ras_to_ijk.DeepCopy(reader.GetRasToIjkMatrix())
    if not np.allclose(np.linalg.inv(_matrix_to_numpy(ras_to_ijk)), ijk_to_ras, rtol=0, atol=1e-4):
        return None
    return ras_to_ijk
