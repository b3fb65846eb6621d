"""The digital phantom is listed in Sample Data by the OsteoAI module and built locally when loaded.

3D Slicer's SampleData module is not in ../shared/slicer-python (it is a module, not part of Slicer's Python
layer), so a stand-in with the same ``SampleDataLogic.registerCustomSampleDataSource`` signature and the same
``slicer.modules.sampleDataSources`` registry records the registration; the button's action is then run the
way SampleData's panel runs it (``source.customDownloader(source)``), with the network switched off."""

from __future__ import annotations

import inspect
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from support import slicer_harness

pytest.importorskip("slicer", reason="slicer-core is not installed")


def _sample_data_standin():
    """Just what SampleData.py (Slicer/Slicer Modules/Scripted/SampleData) does on registration."""
    import slicer

    class SampleDataSource:
        def __init__(
            self,
            sampleName=None,
            sampleDescription=None,
            uris=None,
            fileNames=None,
            nodeNames=None,
            checksums=None,
            loadFiles=None,
            customDownloader=None,
            thumbnailFileName=None,
            loadFileType=None,
            loadFileProperties=None,
        ):
            self.__dict__.update({k: v for k, v in locals().items() if k != "self"})
            self.sampleDescription = sampleDescription or sampleName

    class SampleDataLogic:
        @staticmethod
        def registerCustomSampleDataSource(
            category="Custom",
            sampleName=None,
            uris=None,
            fileNames=None,
            nodeNames=None,
            customDownloader=None,
            thumbnailFileName=None,
            loadFileType="VolumeFile",
            loadFiles=None,
            loadFileProperties={},  # noqa: B006 (as in Slicer)
            checksums=None,
        ):
            if not hasattr(slicer.modules, "sampleDataSources"):
                slicer.modules.sampleDataSources = {}
            src = SampleDataSource(
                sampleName=sampleName,
                uris=uris,
                fileNames=fileNames,
                nodeNames=nodeNames,
                thumbnailFileName=thumbnailFileName,
                loadFileType=loadFileType,
                loadFiles=loadFiles,
                loadFileProperties=loadFileProperties,
                checksums=checksums,
                customDownloader=customDownloader,
            )
            sources = slicer.modules.sampleDataSources.setdefault(category, [])
            if not any(s.sampleName == src.sampleName for s in sources):
                sources.append(src)

    mod = types.ModuleType("SampleData")
    mod.SampleDataSource, mod.SampleDataLogic = SampleDataSource, SampleDataLogic
    return mod


@pytest.fixture
def h(tmp_path, monkeypatch):
    if not (slicer_harness.SLICER_PYTHON / "slicer" / "ScriptedLoadableModule.py").is_file():
        pytest.skip(slicer_harness.SKIP_REASON)
    with slicer_harness.harness(tmp_path) as h:
        monkeypatch.setitem(sys.modules, "SampleData", _sample_data_standin())
        h.load_module("OsteoAISegment")
        h.load_module("OsteoAI")
        yield h


def _no_network(monkeypatch):
    import socket
    import urllib.request

    def refuse(*a, **k):
        raise AssertionError("the phantom sample must not touch the network")

    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_phantom_is_registered_at_startup_and_built_locally(h, monkeypatch):
    import slicer

    mod = h.modules["OsteoAI"]
    assert not hasattr(slicer.modules, "sampleDataSources")
    slicer.app.startupCompleted.emit()  # what Slicer does once every module is loaded
    sources = slicer.modules.sampleDataSources[mod.PHANTOM_SAMPLE_CATEGORY]
    (src,) = [s for s in sources if s.sampleName == mod.PHANTOM_SAMPLE_NAME]
    assert Path(src.thumbnailFileName).is_file()
    assert src.nodeNames == mod.PHANTOM_SAMPLE_NAME and src.loadFileType == "VolumeFile"
    assert src.uris.startswith("file://")  # never a download URL
    assert src.customDownloader is mod.loadPhantomSample
    slicer.app.startupCompleted.emit()  # a second registration does not duplicate it
    assert len([s for s in sources if s.sampleName == mod.PHANTOM_SAMPLE_NAME]) == 1

    _no_network(monkeypatch)
    node = src.customDownloader(src)  # SampleData's button: lambda s=source: s.customDownloader(s)
    assert node is not None and node.GetName() == mod.PHANTOM_SAMPLE_NAME
    assert node.GetScene() is slicer.mrmlScene and node.IsA("vtkMRMLScalarVolumeNode")
    from OsteoAILib import mrml
    from OsteoAILib.phantom import PhantomParams, make_phantom

    ph = make_phantom(PhantomParams(**mod.PHANTOM_SAMPLE_PARAMS))
    vol = mrml.volume_from_node(node)
    np.testing.assert_array_equal(vol.array, ph.volume.array)
    np.testing.assert_allclose(vol.spacing, mod.PHANTOM_SAMPLE_PARAMS["spacing"])
    truth = json.loads(node.GetAttribute("OsteoAI.phantomTruth"))
    assert {"T11", "T12", "L1", "L2"} <= set(truth) and all(30 < v < 250 for v in truth.values())


def test_registration_signature_matches_slicer_sample_data():
    """The stand-in keeps SampleData.py's keyword names, so the call in OsteoAI.py is the one Slicer accepts."""
    params = inspect.signature(_sample_data_standin().SampleDataLogic.registerCustomSampleDataSource).parameters
    assert list(params) == [
        "category",
        "sampleName",
        "uris",
        "fileNames",
        "nodeNames",
        "customDownloader",
        "thumbnailFileName",
        "loadFileType",
        "loadFiles",
        "loadFileProperties",
        "checksums",
    ]
    import ast

    tree = ast.parse((slicer_harness.REPO / "OsteoAI" / "OsteoAI.py").read_text())
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "registerCustomSampleDataSource"
    ]
    assert len(calls) == 1 and not calls[0].args
    assert {k.arg for k in calls[0].keywords} <= set(params)


def test_without_the_sample_data_module_registration_only_warns(h, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "SampleData", None)  # import fails, as with the module disabled
    h.modules["OsteoAI"].registerSampleData()
    assert "Sample Data" in caplog.text
