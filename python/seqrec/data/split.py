"""Evaluation splits: leave-one-out (each user's last item is the test target, the one before it validation)
and a global time split (train before a cut-off time, targets are users' first interactions after it)."""

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

    def users(self, stage: str) -> np.ndarray:
        """Dense indices of the users evaluated at ``stage`` (the same for both stages here)."""
        if stage not in ("val", "test"):
            raise ValueError(f"stage must be 'val' or 'test', got {stage!r}")
        return self.eval_users

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


def _prefix_csr(data: Interactions, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the first ``lengths[u]`` items of every user."""
    offsets = np.zeros_like(data.offsets)
    np.cumsum(lengths, out=offsets[1:])
    within = np.arange(data.num_interactions) - np.repeat(data.offsets[:-1], data.lengths)
    return offsets, data.items[within < np.repeat(lengths, data.lengths)]


@dataclass(frozen=True)
class TimeSplit:
    """A global time split: what happened before ``val_time`` trains; users active both before and after a
    cut-off are evaluated on their first interaction after it, from everything they did before it.

    Validation: history before ``val_time``, target the first interaction in ``[val_time, test_time)``.
    Test: history before ``test_time`` (validation-period interactions included), target the first
    interaction at or after ``test_time``. Training never sees anything at or after ``val_time``, so no
    validation or test target is ever a training input. Needs timestamps, non-decreasing within each user.
    """

    full: Interactions
    val_time: int
    test_time: int
    train_offsets: np.ndarray
    train_items: np.ndarray
    _before: dict[str, np.ndarray]
    _users: dict[str, np.ndarray]
    _targets: dict[str, np.ndarray]

    @classmethod
    def from_interactions(cls, data: Interactions, val_time: float, test_time: float) -> "TimeSplit":
        """Cut-offs are unix times, or quantiles of all interaction times when both lie in [0, 1]."""
        if data.timestamps is None:
            raise ValueError(f"{data.source}: a time split needs timestamps")
        ts = data.timestamps
        user = data.user_index()
        backwards = np.flatnonzero((np.diff(ts) < 0) & (user[1:] == user[:-1]))
        if backwards.size:
            u = user[backwards[0] + 1]
            raise ValueError(f"{data.source}: times of user {data.raw_user_ids[u]!r} go backwards; sort them first")
        if 0 <= val_time <= 1 and 0 <= test_time <= 1:
            val_time, test_time = (float(q) for q in np.quantile(ts, [val_time, test_time]))
        if not val_time < test_time:
            raise ValueError(f"the validation cut-off must come before the test cut-off, got {val_time} and {test_time}")
        before = {stage: np.bincount(user[ts < cut], minlength=data.num_users)
                  for stage, cut in (("val", val_time), ("test", test_time))}
        users, targets = {}, {}
        for stage, stop in (("val", test_time), ("test", np.inf)):
            n = before[stage]
            has_next = (n >= 1) & (n < data.lengths)
            nxt = data.offsets[:-1] + np.minimum(n, np.maximum(data.lengths - 1, 0))
            has_next &= ts[np.minimum(nxt, data.num_interactions - 1)] < stop
            users[stage] = np.flatnonzero(has_next).astype(np.int64)
            targets[stage] = data.items[nxt[users[stage]]].astype(np.int64)
        train_offsets, train_items = _prefix_csr(data, before["val"])
        return cls(data, int(val_time), int(test_time), train_offsets, train_items, before, users, targets)

    @property
    def num_items(self) -> int:
        return self.full.num_items

    def train_item_counts(self) -> np.ndarray:
        return np.bincount(self.train_items, minlength=self.num_items + 1).astype(np.int64)

    def history(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        if stage not in self._before:
            raise ValueError(f"stage must be 'val' or 'test', got {stage!r}")
        if stage == "val":
            return self.train_offsets, self.train_items
        return _prefix_csr(self.full, self._before[stage])

    def users(self, stage: str) -> np.ndarray:
        if stage not in self._users:
            raise ValueError(f"stage must be 'val' or 'test', got {stage!r}")
        return self._users[stage]

    def targets(self, stage: str) -> np.ndarray:
        if stage not in self._targets:
            raise ValueError(f"stage must be 'val' or 'test', got {stage!r}")
        return self._targets[stage]

    def stats(self) -> dict[str, float]:
        out = dict(self.full.stats())
        out["split"] = "time"
        out["val_time"] = self.val_time
        out["test_time"] = self.test_time
        out["val_users"] = int(self._users["val"].size)
        out["test_users"] = int(self._users["test"].size)
        out["train_interactions"] = int(self.train_items.size)
        return out
