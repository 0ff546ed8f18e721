"""Type stub of the native module built from rust/seqrec-py."""

import numpy as np
import numpy.typing as npt

__version__: str

class SequenceStore:
    """Per-user item sequences (CSR: int64 offsets, int32 items in 1..num_items), validated and copied once."""

    def __init__(self, offsets: npt.NDArray[np.int64], items: npt.NDArray[np.int32], num_items: int) -> None: ...
    @property
    def num_users(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def num_interactions(self) -> int: ...
    def sasrec_batch(
        self, users: npt.NDArray[np.int64], max_len: int, num_negatives: int = 1, seed: int = 0
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(inputs (B, L), positives (B, L), negatives (B, L, K)), left-padded with 0."""
    def uniform_negatives(self, users: npt.NDArray[np.int64], n: int, seed: int = 0) -> npt.NDArray[np.int64]:
        """(B, n) items drawn uniformly with replacement from each user's unseen items."""
