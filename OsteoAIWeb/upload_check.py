"""Checks of an uploaded file before anything is screened: type, size, zip safety, CT.

Every rejection is an :class:`UploadRejected` with one line for the uploader; the caller deletes
everything the upload wrote. The type is decided from the bytes, never from the file name (which is
the uploader's and may name the patient).
"""

from __future__ import annotations

import gzip
import shutil
import stat
import struct
import zipfile
from pathlib import Path, PurePosixPath

from OsteoAIBaseLib.errors import OsteoAIError

NIFTI1_HEADER = 348
NIFTI2_HEADER = 540
MAX_ZIP_MEMBERS = 5000
# A CT series zips to ~1/2..1/10 of its size; phantoms with large constant areas to ~1/60. A member
# that claims more than this ratio is a decompression bomb, whatever its total.
MAX_RATIO = 200
TYPES_HELP = "upload a zip of a DICOM folder, or a NIfTI (.nii, .nii.gz) or NRRD (.nrrd) file"


class UploadRejected(OsteoAIError):
    """An upload that will not be screened; the message is shown to the uploader as it is."""


def sniff(path: Path) -> str:
    """'zip', 'nifti', 'nifti-gz' or 'nrrd' from the first bytes; raises UploadRejected otherwise."""
    with open(path, "rb") as f:
        head = f.read(NIFTI2_HEADER)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:7] == b"NRRD000":
        return "nrrd"
    if _is_nifti(head):
        return "nifti"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(NIFTI2_HEADER)
        except (OSError, EOFError):
            raise UploadRejected("the upload is incomplete or damaged (a broken gzip file)") from None
        if _is_nifti(inner):
            return "nifti-gz"
    if head[:4] in (b"PK\x05\x06", b"PK\x07\x08"):
        raise UploadRejected("the upload is incomplete or damaged (an empty or split zip)")
    raise UploadRejected(f"wrong file type: {TYPES_HELP}")


def _is_nifti(head: bytes) -> bool:
    if len(head) < NIFTI1_HEADER:
        return False
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == NIFTI1_HEADER and head[344:347] in (b"n+1", b"ni1"):
            return True
        if size == NIFTI2_HEADER and head[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def check_gzip_complete(path: Path, max_bytes: int) -> None:
    """Reads the whole stream: a truncated .nii.gz fails here, not half way through screening; a gzip
    that inflates past ``max_bytes`` is a bomb."""
    total = 0
    try:
        with gzip.open(path, "rb") as g:
            while chunk := g.read(1 << 20):
                total += len(chunk)
                if total > max_bytes:
                    raise UploadRejected(f"the file unpacks to more than {max_bytes >> 20} MB (a zip bomb?): rejected")
    except (OSError, EOFError, zipfile.BadZipFile):
        raise UploadRejected("the upload is incomplete or damaged (the gzip stream ends early)") from None


def safe_extract(zip_path: Path, dest: Path, max_bytes: int) -> int:
    """Extract a zip into ``dest`` refusing path traversal, links, too many members and bombs.

    Sizes in the zip's directory can lie: bytes are counted while they are written, and the extraction
    stops at ``max_bytes`` actually written. Returns the number of files written.
    """
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise UploadRejected("the upload is incomplete or damaged (not a readable zip)") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise UploadRejected(f"the zip holds {len(infos)} entries (at most {MAX_ZIP_MEMBERS}): rejected")
        declared = 0
        for info in infos:
            _check_member(info)
            declared += info.file_size
            if info.compress_size and info.file_size / info.compress_size > MAX_RATIO:
                raise UploadRejected("a zip member inflates more than 200-fold (a zip bomb?): rejected")
        if declared > max_bytes:
            raise UploadRejected(f"the zip unpacks to more than {max_bytes >> 20} MB (a zip bomb?): rejected")
        written = files = 0
        root = dest.resolve()
        for info in infos:
            if info.is_dir():
                continue
            target = (root / info.filename).resolve()
            if root not in target.parents:  # belt and braces after _check_member
                raise UploadRejected("a zip member's name points outside the zip's folder: rejected")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "xb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise UploadRejected(
                                f"the zip unpacks to more than {max_bytes >> 20} MB (a zip bomb?): rejected"
                            )
                        out.write(chunk)
            except FileExistsError:
                raise UploadRejected("the zip holds the same file name twice: rejected") from None
            except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, NotImplementedError):
                raise UploadRejected("the upload is incomplete or damaged (a zip member cannot be read)") from None
            except OSError as e:
                if "CRC" in str(e) or "Error -3" in str(e):
                    raise UploadRejected("the upload is incomplete or damaged (a zip member fails its check)") from None
                raise
            files += 1
        if not files:
            raise UploadRejected(f"the zip is empty: {TYPES_HELP}")
        return files


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if (
        not name
        or name.startswith(("/", "\\"))
        or ".." in parts
        or (len(name) > 1 and name[1] == ":")
        or "\x00" in name
    ):
        raise UploadRejected("a zip member's name points outside the zip's folder: rejected")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UploadRejected("the zip holds a symbolic link: rejected")
    if info.flag_bits & 0x1:
        raise UploadRejected("the zip is encrypted: upload it without a password")


def screenable_input(upload: Path, work: Path, max_unpacked: int) -> Path:
    """The path to screen for an upload file: the extracted folder for a zip, the file (renamed to its
    type's extension, which ITK needs) otherwise. Raises UploadRejected; ``work`` is the upload's own
    folder and the caller removes it on rejection."""
    kind = sniff(upload)
    if kind == "zip":
        folder = work / "dicom"
        folder.mkdir()
        safe_extract(upload, folder, max_unpacked)
        upload.unlink()
        return folder
    if kind == "nifti-gz":
        check_gzip_complete(upload, max_unpacked)
    target = work / {"zip": "", "nrrd": "ct.nrrd", "nifti": "ct.nii", "nifti-gz": "ct.nii.gz"}[kind]
    shutil.move(upload, target)
    return target


def check_ct(path: Path) -> None:
    """Reads the input as ``osteoai run`` would and applies its checks: not CT, 2D, constant, broken
    slices... end here with the core's own one-line message."""
    from OsteoAIBaseLib.imageio import read_volume
    from OsteoAILib.validate import validate

    try:
        validate(read_volume(path))
    except OsteoAIError as e:
        raise UploadRejected(str(e)) from None
    except Exception as e:
        raise UploadRejected(f"the scan cannot be read ({type(e).__name__})") from None
