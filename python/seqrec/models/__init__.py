"""Sequence encoders: the ``nn.Module`` backbones, free of training logic."""

from seqrec.models.bert4rec import BERT4Rec
from seqrec.models.sasrec import SASRec, SASRecConfig
from seqrec.models.transformer import ModelConfig, NextItemModel

__all__ = ["BERT4Rec", "ModelConfig", "NextItemModel", "SASRec", "SASRecConfig"]
