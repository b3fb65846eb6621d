"""What both modules' self-tests (Reload and Test) share: one background run of the module's logic on the
digital phantom, built locally, so the test needs no download and knows the truth it checks against."""

import slicer


def runOnPhantom(test, logic, onProgress=None, **settings):
    """``logic`` run on a small phantom (T12-L2 and its margin levels, 2 mm) with the classical segmenter and
    the parameter-node ``settings``; waits for the end and asserts it went well through ``test``
    (a ``ScriptedLoadableModuleTest``). Returns ``(phantom, volumeNode, parameterNode)``, or None (said in
    the test's display) when the extension's Python dependencies are not installed."""
    from .dependencies import missingDependencies

    if missingDependencies():
        test.delayDisplay("Skipped: dependencies not installed (press Install in the module)")
        return None
    from OsteoAILib import mrml as coremrml
    from OsteoAILib.phantom import PhantomParams, make_phantom

    ph = make_phantom(PhantomParams(levels="T12-L2", matrix=128, spacing=(2, 2, 2)))
    volumeNode = coremrml.add_volume_node(slicer.mrmlScene, ph.volume, "phantom")
    p = logic.getParameterNode()
    p.inputVolume = volumeNode
    p.segmenter = "classical"
    for name, value in settings.items():
        setattr(p, name, value)
    done = []
    run = logic.start(p, onProgress, lambda ok, m: done.append((ok, m)))
    run.waitForFinished(600000)
    test.assertTrue(done and done[0][0], done)
    return ph, volumeNode, p
