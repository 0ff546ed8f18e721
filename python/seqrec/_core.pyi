"""Type stub of the native module built from rust/seqrec-py (the engine itself is rust/seqrec-core)."""

from typing import Iterator, Literal, final

import numpy as np
import numpy.typing as npt
from typing_extensions import Self

__all__ = ["SequenceStore", "BatchBuilder", "EpochIterator", "LIMITS", "__version__"]
__version__: str
LIMITS: dict[str, int]
"""The engine's upper bounds on user-given sizes: num_items, max_len, num_negatives (also sampled-protocol
candidates per user), negative_pool, batch_size, prefetch, batch_cells (elements of one batch buffer; also
the token budget's bound)."""

_I64 = npt.NDArray[np.int64]

@final
class SequenceStore:
    """Per-user item sequences (CSR: int64 offsets, int32 items in 1..num_items), validated and copied once."""

    def __new__(cls, offsets: _I64, items: npt.NDArray[np.int32], num_items: int) -> Self: ...
    @property
    def num_users(self) -> int: ...
    @property
    def num_items(self) -> int: ...
    @property
    def num_interactions(self) -> int: ...
    def item_counts(self) -> _I64:
        """Interactions per item, shape (num_items + 1,)."""
    def uniform_negatives(self, users: _I64, n: int, seed: int = 0) -> _I64:
        """(B, n) items drawn uniformly with replacement from each user's unseen items."""
    def popularity_negatives(self, users: _I64, n: int, seed: int = 0, alpha: float = 1.0) -> _I64:
        """(B, n) items drawn by item_counts ** alpha, with replacement, from each user's unseen items."""

@final
class BatchBuilder:
    """Builds SASRec or BERT4Rec training batches with a negative sampler.

    ``negatives``: uniform, popularity (alias table over training counts ** alpha), in_batch (the other
    rows' targets), mixed (num_negatives uniform + num_in_batch in-batch) or none. ``exclude_seen`` keeps
    uniform and popularity draws out of the user's whole history. ``shared_negatives`` draws one set per
    sequence (shape (B, 1, K)) instead of one per position. ``pad_to_max`` pads every batch to max_len
    instead of to its longest row. ``num_threads``: 1 builds on the calling thread, anything else uses the
    engine's pool (RAYON_NUM_THREADS threads; single-threaded in a forked child).

    ``pool_size > 0`` or ``pool_in_batch`` replaces per-position negatives by one candidate pool per batch:
    ``pool_size`` items drawn by ``negatives`` (uniform: distinct, without replacement, at most the catalogue; popularity: alias
    draws, duplicates merged), joined with ``pool_in_batch`` by the batch's targets; ``pool_mask_history``
    also reports which pool items each row's user has in their history.
    """

    def __new__(
        cls,
        store: SequenceStore,
        max_len: int,
        *,
        task: Literal["sasrec", "bert4rec"] = "sasrec",
        negatives: Literal["uniform", "popularity", "in_batch", "mixed", "none"] = "uniform",
        num_negatives: int = 1,
        num_in_batch: int = 0,
        shared_negatives: bool = False,
        exclude_seen: bool = True,
        alpha: float = 1.0,
        mask_prob: float = 0.2,
        mask_token: int | None = None,
        pad_to_max: bool = False,
        num_threads: int = 0,
        pool_size: int = 0,
        pool_in_batch: bool = False,
        pool_mask_history: bool = False,
    ) -> Self: ...
    @property
    def num_negatives(self) -> int: ...
    @property
    def pool_size(self) -> int: ...
    @property
    def mask_token(self) -> int | None:
        """The token BERT4Rec batches mask with (num_items + 1 unless given); None for SASRec batches."""
    def segments(self, users: _I64, stride: int = 0) -> tuple[_I64, _I64]:
        """(users, ends) of the training sequences; with stride > 0, windows every stride items back."""
    def build(self, users: _I64, ends: _I64 | None = None, seed: int = 0) -> dict[str, np.ndarray]:
        """One batch: users and ends (B,) (row r covers the first ends[r] items of users[r]), inputs and
        targets (B, W) int64; with a sampler also negatives (B, S, K) int64, negatives_logq (B, S, K) and
        targets_logq (B, W) float32, S = W or 1 when shared. With a pool: pool (P,) sorted distinct int64
        items, pool_logq (P,) float32 log P(item in pool), targets_logq (B, W) the same for each target,
        targets_pool (B, W) int64 index of the target in the pool (-1: absent or no target), and
        pool_hit_rows / pool_hit_cols (H,) int64 (row, pool index) of history items (empty unless masking)."""
    def epoch(
        self,
        users: _I64,
        ends: _I64,
        batch_size: int,
        seed: int,
        epoch: int,
        bucket: bool = True,
        bucket_batches: int = 64,
        prefetch: int = 2,
        max_tokens: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> EpochIterator:
        """The batches of one epoch, built ahead on a background thread. With ``bucket``, sequences of similar
        length share a batch (groups of ``bucket_batches`` batches sorted by length, batch order shuffled);
        with ``max_tokens > 0`` a batch holds as many sequences as fit in that many padded positions. With
        ``world > 1``, only rank ``rank``'s share: every ``world``-th batch, equally many on every rank."""
    def num_batches(
        self,
        users: _I64,
        ends: _I64,
        batch_size: int,
        seed: int,
        epoch: int,
        bucket: bool = True,
        bucket_batches: int = 64,
        max_tokens: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> int:
        """How many batches ``epoch`` yields with the same arguments."""
    def loss_scale(
        self,
        users: _I64,
        ends: _I64,
        batch_size: int,
        seed: int,
        epoch: int,
        bucket: bool = True,
        bucket_batches: int = 64,
        max_tokens: int = 0,
    ) -> float:
        """One over the expected training targets of an average batch of the epoch (all ranks together)."""

@final
class EpochIterator(Iterator[dict[str, np.ndarray]]):
    """One epoch's batches, built ahead on a background thread."""

    def __len__(self) -> int: ...
    def __next__(self) -> dict[str, np.ndarray]: ...
