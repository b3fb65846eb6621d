"""OsteoAI core: phantomless vBMD from CT. No Slicer imports here (see mrml.py)."""

__version__ = "0.1.0"
