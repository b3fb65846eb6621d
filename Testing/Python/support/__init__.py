"""What several test files share and that is not a fixture: builders of inputs (DICOM series, cohorts,
synthetic outputs), checkers (dciodvfy, segmentation overlap) and the Slicer stand-in harness. Tests import
it as ``from support.x import y``; no test file imports another test file. Phantoms are fixtures
(conftest.py)."""
