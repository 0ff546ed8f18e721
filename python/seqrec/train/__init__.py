"""Training: the LightningModule, its losses and optimiser, callbacks and experiment tracking."""
