"""Data only: the shipped models (cards, weights). Installed as ``OsteoAILib/models/`` by the wheel and the
Slicer extension, where ``OsteoAILib.model_registry.shipped_dir`` finds them; nothing to import here."""
