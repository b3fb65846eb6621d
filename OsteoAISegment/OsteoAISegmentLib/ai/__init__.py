"""MONAI vertebra segmentation and labelling model (network, preprocessing, inference, post-processing)."""
