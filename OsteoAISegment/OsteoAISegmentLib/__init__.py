"""OsteoAISegment core: vertebra segmentation and labelling (no Slicer imports)."""
