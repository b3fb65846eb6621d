"""Training pipeline of the vertebra model (data preparation, training loop, CLI)."""
