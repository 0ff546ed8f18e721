"""seqrec: sequential recommenders (SASRec, BERT4Rec) with a Rust data engine."""

from seqrec._core import BatchBuilder, SequenceStore
from seqrec.data.errors import DataFormatError
from seqrec.data.interactions import Interactions
from seqrec.data.loaders import load
from seqrec.data.split import LeaveOneOut
from seqrec.data.synthetic import make_synthetic

__version__ = "0.1.0"

__all__ = ["BatchBuilder", "DataFormatError", "Interactions", "LeaveOneOut", "SequenceStore", "load", "make_synthetic"]
