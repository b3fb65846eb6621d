"""Data only: the shipped models (cards, weights). Installed as ``OsteoAIBaseLib/models/`` by the wheel and the
Slicer extension, where ``OsteoAIBaseLib.model_registry.shipped_dir`` finds them; nothing to import here."""
