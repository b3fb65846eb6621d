"""AI vBMD estimator: per-level features -> vBMD with a 95% interval (see models/vbmd-mlp/README.md).

Importing this package is cheap (no torch); torch is needed only by ``train``.
"""
