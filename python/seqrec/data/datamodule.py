"""The LightningDataModule: loads and splits the data, builds training batches natively, prepares evaluation."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, IterableDataset

from seqrec._core import SequenceStore
from seqrec.data.interactions import Interactions
from seqrec.data.loaders import load
from seqrec.data.split import LeaveOneOut
from seqrec.data.synthetic import make_synthetic
from seqrec.sampling import popularity_negatives

DATA_DIR_ENV = "SEQREC_DATA_DIR"
DEFAULT_DATA_DIR = "../shared/data"


@dataclass
class SyntheticSpec:
    """Parameters of the built-in synthetic dataset (see ``seqrec.data.synthetic.make_synthetic``)."""

    num_users: int = 6000
    num_items: int = 2000
    num_clusters: int = 25
    mean_length: float = 20.0
    follow_prob: float = 0.75
    seed: int = 0


def resolve_data_path(path: str) -> Path:
    """Expands ``$SEQREC_DATA_DIR`` (default ``../shared/data``) and other environment variables in ``path``."""
    env = dict(os.environ)
    env.setdefault(DATA_DIR_ENV, DEFAULT_DATA_DIR)
    for name in (DATA_DIR_ENV, "{" + DATA_DIR_ENV + "}"):
        path = path.replace("$" + name, env[DATA_DIR_ENV])
    resolved = Path(os.path.expanduser(os.path.expandvars(path)))
    if not resolved.exists():
        raise FileNotFoundError(
            f"{resolved}: no such data file (set {DATA_DIR_ENV} to the folder holding the datasets, "
            f"or give an absolute path)"
        )
    return resolved


def derive_seed(*parts: int) -> int:
    """A 64-bit seed from integers (seed, epoch, batch): stable across runs and platforms."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0])


class TrainBatches(IterableDataset):
    """SASRec training batches of one epoch, built by the native engine in the main process.

    The user order of epoch e is a permutation seeded by (seed, e); batch i draws its negatives from
    seed (seed, e, i). So a seed fixes every batch, whatever the number of threads.
    """

    def __init__(
        self,
        store: SequenceStore,
        users: np.ndarray,
        batch_size: int,
        max_len: int,
        num_negatives: int,
        seed: int,
        epoch: Callable[[], int],
    ):
        self.store = store
        self.users = users
        self.batch_size = batch_size
        self.max_len = max_len
        self.num_negatives = num_negatives
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.users.size // self.batch_size)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self.epoch()
        order = np.random.default_rng([self.seed, epoch]).permutation(self.users)
        for i, start in enumerate(range(0, order.size, self.batch_size)):
            users = order[start : start + self.batch_size]
            inputs, positives, negatives = self.store.sasrec_batch(
                users, self.max_len, self.num_negatives, derive_seed(self.seed, epoch, i)
            )
            yield {
                "users": torch.from_numpy(users),
                "inputs": torch.from_numpy(inputs),
                "positives": torch.from_numpy(positives),
                "negatives": torch.from_numpy(negatives),
            }


def left_pad(offsets: np.ndarray, items: np.ndarray, users: np.ndarray, max_len: int) -> np.ndarray:
    """(B, max_len) int64: the last ``max_len`` items of each user's sequence, left-padded with 0."""
    out = np.zeros((users.size, max_len), dtype=np.int64)
    for row, u in enumerate(users):
        seq = items[offsets[u] : offsets[u + 1]][-max_len:]
        if seq.size:
            out[row, max_len - seq.size :] = seq
    return out


class SeqRecDataModule(pl.LightningDataModule):
    """Leave-one-out data for next-item models.

    Parameters
    ----------
    path : str or None
        Interactions file; ``$SEQREC_DATA_DIR`` in it expands to that variable (default ``../shared/data``).
        None means the built-in synthetic dataset.
    format : str
        ``auto``, ``sasrec``, ``user_lines``, ``movielens``, ``csv`` or ``parquet``.
    synthetic : SyntheticSpec
        Synthetic dataset parameters, used when ``path`` is None.
    max_len : int
        Most recent items a model sees per sequence.
    batch_size, eval_batch_size : int
        Sequences per training and per evaluation batch.
    num_negatives : int
        Uniform negatives per position for sampled losses (excluding the user's training history).
    sampled_eval : str
        Also compute the sampled protocol: ``none``, ``uniform`` or ``popularity`` candidates.
    num_sampled : int
        Negatives per user in the sampled protocol (papers use 100).
    seed : int
        Fixes data order and sampling.
    """

    def __init__(
        self,
        path: str | None = None,
        format: str = "auto",
        synthetic: SyntheticSpec = SyntheticSpec(),
        max_len: int = 50,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_negatives: int = 1,
        sampled_eval: Literal["none", "uniform", "popularity"] = "none",
        num_sampled: int = 100,
        seed: int = 42,
    ):
        super().__init__()
        for name, value in (("max_len", max_len), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                            ("num_negatives", num_negatives), ("num_sampled", num_sampled)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        self.path = path
        self.format = format
        self.synthetic = synthetic
        self.max_len = max_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_negatives = num_negatives
        self.sampled_eval = sampled_eval
        self.num_sampled = num_sampled
        self.seed = seed
        self.interactions = self._load()
        self.split = LeaveOneOut.from_interactions(self.interactions)
        self._eval_batches: dict[str, list[dict[str, torch.Tensor]]] = {}
        self._train_store: SequenceStore | None = None

    def _load(self) -> Interactions:
        if self.path is None:
            spec = asdict(self.synthetic)
            return make_synthetic(**spec)
        return load(resolve_data_path(self.path), self.format)

    @property
    def num_items(self) -> int:
        return self.interactions.num_items

    @property
    def dataset_name(self) -> str:
        return "synthetic" if self.path is None else Path(self.path).name

    def item_popularity(self) -> torch.Tensor:
        """Training interactions per item, (num_items + 1,): the popularity baseline's scores."""
        return torch.from_numpy(self.split.train_item_counts())

    def stats(self) -> dict[str, Any]:
        return self.split.stats()

    # training -------------------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        if self._train_store is None:
            self._train_store = SequenceStore(self.split.train_offsets, self.split.train_items, self.num_items)
        train_lengths = np.diff(self.split.train_offsets)
        users = np.flatnonzero(train_lengths >= 2).astype(np.int64)
        dataset = TrainBatches(
            self._train_store, users, self.batch_size, self.max_len, self.num_negatives, self.seed, self._epoch
        )
        return DataLoader(dataset, batch_size=None, num_workers=0)

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    # evaluation -----------------------------------------------------------------------------------------

    def eval_batches(self, stage: str) -> list[dict[str, torch.Tensor]]:
        """Fixed evaluation batches of ``stage`` ("val" or "test"), built once and cached.

        Each holds the users, their left-padded history (inputs), the target, the (row, item) pairs of
        everything they saw before the target (excluded from full ranking), and for the sampled protocol
        the candidate negatives, drawn once from items the user never interacted with (seeded).
        """
        if stage in self._eval_batches:
            return self._eval_batches[stage]
        split = self.split
        offsets, items = split.history(stage)
        users = split.eval_users
        targets = split.targets(stage)
        inputs = left_pad(offsets, items, users, self.max_len)
        candidates = self._sampled_candidates(stage, users)
        batches = []
        for start in range(0, users.size, self.eval_batch_size):
            sl = slice(start, start + self.eval_batch_size)
            bu = users[sl]
            lengths = offsets[bu + 1] - offsets[bu]
            rows = np.repeat(np.arange(bu.size), lengths)
            hist = np.concatenate([items[offsets[u] : offsets[u + 1]] for u in bu]).astype(np.int64)
            batch = {
                "users": torch.from_numpy(bu),
                "inputs": torch.from_numpy(inputs[sl]),
                "targets": torch.from_numpy(targets[sl]),
                "history_rows": torch.from_numpy(rows),
                "history_items": torch.from_numpy(hist),
            }
            if candidates is not None:
                batch["candidates"] = torch.from_numpy(candidates[sl])
            batches.append(batch)
        self._eval_batches[stage] = batches
        return batches

    def _sampled_candidates(self, stage: str, users: np.ndarray) -> np.ndarray | None:
        if self.sampled_eval == "none":
            return None
        full = self.interactions
        seed = derive_seed(self.seed, 1 if stage == "val" else 2)
        if self.sampled_eval == "uniform":
            store = SequenceStore(full.offsets, full.items, full.num_items)
            return store.uniform_negatives(users, self.num_sampled, seed)
        return popularity_negatives(
            full.offsets, full.items, full.item_counts(), users, self.num_sampled, np.random.default_rng(seed)
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_batches("val"), batch_size=None, num_workers=0)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.eval_batches("test"), batch_size=None, num_workers=0)
