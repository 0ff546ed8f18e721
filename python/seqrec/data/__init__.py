"""Data side: the interactions container, loaders, splits, the synthetic dataset and the data module."""
