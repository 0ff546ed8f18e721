"""Sequence encoders: the ``nn.Module`` backbones, free of training logic."""

from seqrec.models.sasrec import SASRec, SASRecConfig

__all__ = ["SASRec", "SASRecConfig"]
