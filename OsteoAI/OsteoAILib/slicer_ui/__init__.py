"""The Slicer side of both modules: panels (widgets), logic, parameter nodes, background runs.

The module files (``OsteoAI/OsteoAI.py``, ``OsteoAISegment/OsteoAISegment.py``) only declare the modules
and their self-tests and import their widget and logic classes from here. At import time these files load
only what Slicer ships (slicer, qt, vtk, numpy), the standard library, the option registry and the MRML
bridge, so a module loads even before its extra Python dependencies (torch, monai...) are installed. Scene
work goes through :mod:`OsteoAILib.mrml`; the computing runs in a background ``PythonSlicer`` process
(:mod:`.background`).
"""
