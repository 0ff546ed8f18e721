"""Leave-one-out split: the last item of each user is the test target, the one before it validation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqrec.data.interactions import Interactions

MIN_LENGTH = 3
"""A user needs one training item, one validation and one test item to be evaluated."""


@dataclass(frozen=True)
class LeaveOneOut:
    """The leave-one-out view of an ``Interactions``.

    Users with at least ``MIN_LENGTH`` interactions give their last item to test and the second-to-last to
    validation; shorter users keep all their items for training and are not evaluated (``num_short_users``).
    """

    full: Interactions
    train_offsets: np.ndarray
    train_items: np.ndarray
    eval_users: np.ndarray
    val_targets: np.ndarray
    test_targets: np.ndarray

    @classmethod
    def from_interactions(cls, data: Interactions) -> "LeaveOneOut":
        lengths = data.lengths
        evaluated = lengths >= MIN_LENGTH
        held_out = np.where(evaluated, 2, 0)
        train_lengths = lengths - held_out
        keep = np.ones(data.num_interactions, dtype=bool)
        ends = data.offsets[1:]
        keep[ends[evaluated] - 1] = False
        keep[ends[evaluated] - 2] = False
        train_offsets = np.zeros_like(data.offsets)
        np.cumsum(train_lengths, out=train_offsets[1:])
        eval_users = np.flatnonzero(evaluated).astype(np.int64)
        return cls(
            full=data,
            train_offsets=train_offsets,
            train_items=data.items[keep],
            eval_users=eval_users,
            val_targets=data.items[ends[evaluated] - 2].astype(np.int64),
            test_targets=data.items[ends[evaluated] - 1].astype(np.int64),
        )

    @property
    def num_items(self) -> int:
        return self.full.num_items

    @property
    def num_short_users(self) -> int:
        return int(self.full.num_users - self.eval_users.size)

    def train_item_counts(self) -> np.ndarray:
        """Training interactions per item, shape (num_items + 1,): what the popularity baseline ranks by."""
        return np.bincount(self.train_items, minlength=self.num_items + 1).astype(np.int64)

    def history(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets, items) of what each user had seen before the ``stage`` target ("val" or "test").

        For validation that is the training sequence; for test, training plus the validation item.
        """
        if stage == "val":
            return self.train_offsets, self.train_items
        if stage == "test":
            offsets = self.train_offsets.copy()
            evaluated = np.zeros(self.full.num_users, dtype=np.int64)
            evaluated[self.eval_users] = 1
            offsets[1:] += np.cumsum(evaluated)
            ends = self.full.offsets[1:]
            keep = np.ones(self.full.num_interactions, dtype=bool)
            keep[ends[self.eval_users] - 1] = False
            return offsets, self.full.items[keep]
        raise ValueError(f"stage must be 'val' or 'test', got {stage!r}")

    def targets(self, stage: str) -> np.ndarray:
        if stage == "val":
            return self.val_targets
        if stage == "test":
            return self.test_targets
        raise ValueError(f"stage must be 'val' or 'test', got {stage!r}")

    def stats(self) -> dict[str, float]:
        out = dict(self.full.stats())
        out["evaluated_users"] = int(self.eval_users.size)
        out["short_users"] = self.num_short_users
        out["train_interactions"] = int(self.train_items.size)
        return out
