"""Batches as the model sees them: an epoch of native training batches, and fixed evaluation batches."""

from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset

from seqrec._core import BatchBuilder
from seqrec.data.features import gather_prefix


def derive_seed(*parts: int) -> int:
    """A 64-bit seed from integers (seed, epoch, batch): stable across runs and platforms."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0])


class TrainBatches(IterableDataset):
    """Training batches of one epoch, built by the native engine on its own background thread.

    The batch order of epoch e depends only on (seed, e), and each batch's sampling on (seed, e, batch),
    so a seed fixes every batch whatever the number of threads. Use it with ``DataLoader(batch_size=None,
    num_workers=0)``: the engine already builds ahead in parallel, and worker processes would only copy it.

    Each batch carries ``loss_scale``, one over the targets of an average batch of the epoch: the model's
    loss is the sum over targets times it (see ``SeqRecModule``).
    """

    def __init__(
        self,
        builder: BatchBuilder,
        users: np.ndarray,
        ends: np.ndarray,
        batch_size: int,
        seed: int,
        epoch: Callable[[], int],
        bucket: bool = True,
        prefetch: int = 8,
        max_tokens: int = 0,
        extra: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        self.builder = builder
        self.users = users
        self.ends = ends
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = epoch
        self.bucket = bucket
        self.prefetch = prefetch
        self.max_tokens = max_tokens
        self.extra = extra  # adds per-batch side inputs (time buckets) computed from users, ends and inputs
        self.rank, self.world = rank, world  # data-parallel: this process trains every world-th batch
        self.fetch_seconds = 0.0  # time the consumer waited for batches this epoch (read by ThroughputMonitor)
        self.loss_scale = self._loss_scale(0)

    # No __len__ on purpose: with length bucketing under a token budget the number of batches changes from
    # epoch to epoch, and a length fixed at epoch 0 made Lightning cut epochs short or skip validations. The
    # epoch ends when the engine's epoch ends.
    def num_batches(self, epoch: int) -> int:
        """This rank's batches in ``epoch``."""
        return self.builder.num_batches(self.users, self.ends, self.batch_size, self.seed, epoch, bucket=self.bucket,
                                        max_tokens=self.max_tokens, rank=self.rank, world=self.world)

    def _loss_scale(self, epoch: int) -> torch.Tensor:
        # One over the targets of an average batch of the whole epoch (the same on every rank), from the plan.
        scale = self.builder.loss_scale(self.users, self.ends, self.batch_size, self.seed, epoch, bucket=self.bucket,
                                        max_tokens=self.max_tokens)
        return torch.tensor(scale, dtype=torch.float32)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self.epoch()
        self.loss_scale = self._loss_scale(epoch)
        batches = self.builder.epoch(
            self.users, self.ends, self.batch_size, self.seed, epoch, bucket=self.bucket,
            prefetch=self.prefetch, max_tokens=self.max_tokens, rank=self.rank, world=self.world,
        )
        self.fetch_seconds = 0.0
        it = iter(batches)
        while True:
            start = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                return
            if self.extra is not None:
                batch.update(self.extra(batch))
            out = {name: torch.from_numpy(array) for name, array in batch.items()}
            out["loss_scale"] = self.loss_scale
            self.fetch_seconds += time.perf_counter() - start
            yield out


class FixedBatches:
    """Ready-made batches, handed to Lightning as a plain iterable (no DataLoader): Lightning adds no
    distributed sampler to it (the data module already gave each rank its own users), so no user is dropped
    or evaluated twice.

    Not an ``IterableDataset`` on purpose: Lightning reads ``__len__`` for its progress bars and for fractional
    ``limit_*_batches``, and warns about any ``IterableDataset`` that has one (a length can be wrong with
    worker processes, which these batches never have).
    """

    def __init__(self, batches: list[dict[str, torch.Tensor]]):
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.batches)


class UserBatches:
    """Batches of ``users``, ``batch_size`` at a time, each built by ``build(users)`` only when the iteration
    reaches it: memory holds one batch, however many users (``seqrec predict``). A plain iterable, like
    ``FixedBatches``."""

    def __init__(self, users: np.ndarray, batch_size: int, build: Callable[[np.ndarray], dict[str, torch.Tensor]]):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.users = np.asarray(users, dtype=np.int64)
        self.batch_size = batch_size
        self.build = build

    def __len__(self) -> int:
        return (self.users.size + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, self.users.size, self.batch_size):
            yield self.build(self.users[start : start + self.batch_size])


def left_pad(offsets: np.ndarray, items: np.ndarray, users: np.ndarray, max_len: int) -> np.ndarray:
    """(B, max_len) int64: the last ``max_len`` items of each user's sequence, left-padded with 0."""
    out = np.zeros((users.size, max_len), dtype=np.int64)
    for row, u in enumerate(users):
        seq = items[offsets[u] : offsets[u + 1]][-max_len:]
        if seq.size:
            out[row, max_len - seq.size :] = seq
    return out


def history_batches(
    offsets: np.ndarray,
    items: np.ndarray,
    users: np.ndarray,
    max_len: int,
    batch_size: int,
    time_buckets: np.ndarray | None = None,
    time_offsets: np.ndarray | None = None,
) -> list[dict[str, torch.Tensor]]:
    """Batches of users with their whole history in ``(offsets, items)``, to score what comes next.

    Each holds ``users``, ``inputs`` (the last ``max_len`` items, left-padded), the (row, item) pairs of
    the whole history (``history_rows``, ``history_items``: what full ranking excludes), and with
    ``time_buckets`` (per interaction, laid out by ``time_offsets``, default ``offsets``; histories
    must be prefixes there) the matching ``time_inputs``.
    """
    inputs = left_pad(offsets, items, users, max_len)
    batches = []
    for start in range(0, users.size, batch_size):
        sl = slice(start, start + batch_size)
        bu = users[sl]
        lengths = offsets[bu + 1] - offsets[bu]
        rows = np.repeat(np.arange(bu.size), lengths)
        hist = np.concatenate([items[offsets[u] : offsets[u + 1]] for u in bu]).astype(np.int64)
        batch = {
            "users": torch.from_numpy(bu),
            "inputs": torch.from_numpy(inputs[sl]),
            "history_rows": torch.from_numpy(rows),
            "history_items": torch.from_numpy(hist),
        }
        if time_buckets is not None:
            where = offsets if time_offsets is None else time_offsets
            batch["time_inputs"] = torch.from_numpy(gather_prefix(time_buckets, where, bu, lengths, max_len, 0, inputs[sl]))
        batches.append(batch)
    return batches
