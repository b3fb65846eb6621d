"""OsteoAI base: what both Libs stand on (the Volume type, errors, level names, image and DICOM reading,
atomic writes, model file integrity). It imports nothing of OsteoAISegmentLib or OsteoAILib, and no Slicer."""
