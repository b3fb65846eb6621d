"""Every bad upload of the web upload page is rejected with its one-line message, leaves nothing in the
upload area and nothing outside it, and the server answers the next request (no browser needed)."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import shutil
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="aiohttp (osteoai web) is not installed")
from aiohttp import FormData, web
from aiohttp.test_utils import TestClient, TestServer

from OsteoAIWeb.routes import Site, SiteConfig


class FakeQueue:
    def __init__(self):
        self.ids = []

    def submit(self, upload_id):
        self.ids.append(upload_id)

    def position(self, upload_id):
        return self.ids.index(upload_id) if upload_id in self.ids else None


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture(scope="module")
def ct_nifti(tmp_path_factory) -> bytes:
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    d = tmp_path_factory.mktemp("ph")
    files = write_phantom(make_phantom(PhantomParams(seed=3, matrix=96, spacing=(2.5, 2.5, 2.5), levels="L1-L2")), d)
    return Path(files["ct"]).read_bytes()


@pytest.fixture(scope="module")
def mr_dicom_zip(tmp_path_factory) -> bytes:
    """A real DICOM series (the phantom's) re-labelled as MR: screened as 'not CT' from its header."""
    import pydicom
    from OsteoAILib.phantom import PhantomParams, make_phantom, write_phantom

    d = tmp_path_factory.mktemp("mr")
    write_phantom(
        make_phantom(PhantomParams(seed=4, matrix=96, spacing=(2.5, 2.5, 2.5), levels="L1-L2")), d, dicom=True
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(d.rglob("*.dcm")):
            ds = pydicom.dcmread(f)
            ds.Modality = "MR"
            out = io.BytesIO()
            ds.save_as(out)
            zf.writestr(f"series/{f.name}", out.getvalue())
    return buf.getvalue()


class Harness:
    def __init__(self, tmp_path: Path, max_mb: int = 8, unpacked_mb: int | None = None):
        self.root = tmp_path
        self.area = tmp_path / "area" / "uploads"
        self.area.mkdir(parents=True)
        self.queue = FakeQueue()
        cfg = SiteConfig(self.area, max_upload_mb=max_mb, max_unpacked_mb=unpacked_mb or 4 * max_mb)
        self.site = Site(cfg, self.queue)

    def outside(self) -> set[str]:
        return {f for f in _files(self.root) if not f.startswith("area/uploads/")}

    async def post(self, data: bytes, name="scan.bin"):
        app = web.Application()
        self.site.bind(app)
        async with TestClient(TestServer(app)) as client:
            form = FormData()
            form.add_field("scan", data, filename=name, content_type="application/octet-stream")
            resp = await client.post("/upload", data=form, allow_redirects=False)
            text = await resp.text()
            again = await client.get("/upload")  # the server still answers
            assert again.status == 200
            return resp.status, text, resp.headers.get("Location")

    def upload(self, data: bytes, name="scan.bin"):
        before = self.outside()
        status, text, location = asyncio.run(self.post(data, name))
        assert self.outside() == before, "a file was written outside the upload area"
        return status, text, location

    def rejected(self, data: bytes, expect: str, name="scan.bin", status=400) -> str:
        got, text, _ = self.upload(data, name)
        assert got == status, text
        assert expect in text, text
        assert list(self.area.iterdir()) == [], f"left behind: {_files(self.area)}"
        assert self.queue.ids == []
        return text


def _zip(members: dict[str, bytes], **kw) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data, **kw)
    return buf.getvalue()


def test_a_ct_upload_is_accepted_under_a_random_id_and_token(tmp_path, ct_nifti):
    h = Harness(tmp_path)
    status, _text, location = h.upload(ct_nifti, name="Doe^Jane_chest.nii.gz")
    assert status == 303
    _, r, upload_id, token = location.split("/")
    assert r == "r" and len(upload_id) == 16 and len(token) >= 20
    assert "Doe" not in location and h.queue.ids == [upload_id]
    d = h.area / upload_id
    assert (d / "ct.nii.gz").is_file() and "Doe" not in "".join(_files(d))
    assert token not in (d / "status.json").read_text()  # only its hash is stored


def test_a_real_ct_dicom_folder_as_a_zip_is_accepted(tmp_path, shared_data):
    """A real CT series (20 slices of ../shared/data, files without a .dcm suffix, in a sub-folder) zipped by
    the patient: accepted and queued, its files unpacked only inside its own upload folder."""
    series = shared_data / "ts-dicom-t11-t12" / "dicom"
    if not series.is_dir():
        pytest.skip(f"{series} is not available")
    data = _zip({f"my scan/{f.name}": f.read_bytes() for f in sorted(series.iterdir()) if f.is_file()})
    h = Harness(tmp_path)
    status, text, location = h.upload(data, name="chest.zip")
    assert status == 303, text
    upload_id = location.split("/")[2]
    assert h.queue.ids == [upload_id]
    assert _files(h.area) and all(f.startswith(upload_id) for f in _files(h.area))
    # what the screening worker will read (worker.py: read_volume of the status' input) is that CT series
    import json

    from OsteoAIBaseLib.imageio import read_volume

    d = h.area / upload_id
    vol = read_volume(d / json.loads((d / "status.json").read_text())["input"])
    assert vol.shape == (20, 512, 512)


def test_wrong_type(tmp_path):
    Harness(tmp_path).rejected(b"%PDF-1.7 this is a report, not a scan" * 50, "wrong file type", name="x.nii")


def test_empty_upload(tmp_path):
    Harness(tmp_path).rejected(b"", "the upload is empty")


def test_not_ct_by_values(tmp_path):
    """A NIfTI whose values have no air or fat (an MR-like volume) is turned away by the core's check."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    img = nib.Nifti1Image(rng.uniform(100, 900, (64, 64, 40)).astype(np.float32), np.diag([2.0, 2.0, 2.5, 1]))
    buf = io.BytesIO()
    buf.write(gzip.compress(img.to_bytes()))
    Harness(tmp_path).rejected(buf.getvalue(), "not CT")


def test_not_ct_by_modality(tmp_path, mr_dicom_zip):
    Harness(tmp_path).rejected(mr_dicom_zip, "no CT series in the folder (found modality MR)")


def test_over_the_size_limit(tmp_path):
    Harness(tmp_path, max_mb=1).rejected(os.urandom(2 << 20), "over the size limit of 1 MB", status=413)


def test_zip_bomb_by_ratio(tmp_path):
    Harness(tmp_path).rejected(_zip({"series/a.dcm": bytes(20 << 20)}), "zip bomb")


def test_zip_bomb_by_total(tmp_path):
    """Members that each compress plausibly but add up past the unpacked limit (2 MB here)."""
    rng = np.random.default_rng(1)
    noisy = {f"s/{i}.dcm": rng.integers(0, 8, 1 << 20, dtype=np.uint8).tobytes() for i in range(6)}
    Harness(tmp_path, max_mb=8, unpacked_mb=2).rejected(_zip(noisy), "zip bomb")


@pytest.mark.parametrize(
    "name", ["../../evil.dcm", "/etc/evil.dcm", "series/../../evil.dcm", "C:\\evil.dcm", "..\\..\\evil.dcm"]
)
def test_path_traversal(tmp_path, name):
    Harness(tmp_path).rejected(_zip({name: b"DICM" * 100}), "points outside")
    assert not (tmp_path / "evil.dcm").exists() and not (tmp_path / "area" / "evil.dcm").exists()


def test_symlink_member(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("series/link.dcm")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    Harness(tmp_path).rejected(buf.getvalue(), "symbolic link")


def test_truncated_zip(tmp_path, mr_dicom_zip):
    Harness(tmp_path).rejected(mr_dicom_zip[: len(mr_dicom_zip) // 2], "incomplete or damaged")


def test_truncated_gzip_nifti(tmp_path, ct_nifti):
    Harness(tmp_path).rejected(ct_nifti[: len(ct_nifti) // 2], "incomplete or damaged")


def test_connection_cut_mid_upload(tmp_path):
    """The browser's connection ends half way through the body: nothing stays, the server goes on."""
    h = Harness(tmp_path)

    async def scenario():
        app = web.Application()
        h.site.bind(app)
        server = TestServer(app)
        await server.start_server()
        try:
            body = (
                b'--B\r\nContent-Disposition: form-data; name="scan"; filename="x"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n" + b"PK\x03\x04" + os.urandom(200_000)
            )
            head = (
                f"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\n"
                f"Content-Length: {len(body) + 400_000}\r\n\r\n"
            ).encode()
            loop = asyncio.get_running_loop()

            def cut():
                with socket.create_connection((server.host, server.port)) as s:
                    s.sendall(head + body)
                    s.shutdown(socket.SHUT_WR)
                    s.settimeout(10)
                    try:
                        return s.recv(65536)
                    except OSError:
                        return b""

            await loop.run_in_executor(None, cut)
            for _ in range(50):  # the handler notices the cut and cleans up
                if not list(h.area.iterdir()):
                    break
                await asyncio.sleep(0.1)
            async with TestClient(server) as client:
                assert (await client.get("/upload")).status == 200
        finally:
            await server.close()

    asyncio.run(scenario())
    assert list(h.area.iterdir()) == [] and h.queue.ids == []


def test_no_file_field(tmp_path):
    h = Harness(tmp_path)

    async def post():
        app = web.Application()
        h.site.bind(app)
        async with TestClient(TestServer(app)) as client:
            form = FormData()
            form.add_field("other", b"x", filename="x")
            resp = await client.post("/upload", data=form)
            return resp.status, await resp.text()

    status, text = asyncio.run(post())
    assert status == 400 and "no file in the upload" in text
    assert list(h.area.iterdir()) == []


def test_truncated_nrrd(tmp_path, ct_nifti):
    import SimpleITK as sitk

    (tmp_path / "ct.nii.gz").write_bytes(ct_nifti)
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "ct.nii.gz")), str(tmp_path / "ct.nrrd"), useCompression=True)
    data = (tmp_path / "ct.nrrd").read_bytes()
    (tmp_path / "ct.nii.gz").unlink()
    (tmp_path / "ct.nrrd").unlink()
    h = Harness(tmp_path)
    status, _, location = h.upload(data)
    assert status == 303 and location.startswith("/r/")  # the whole NRRD is a CT
    for p in list(h.area.iterdir()):
        shutil.rmtree(p)
    h.queue.ids.clear()
    h.rejected(data[: len(data) * 2 // 3], "cannot read the NRRD input")
