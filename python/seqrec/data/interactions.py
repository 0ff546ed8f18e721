"""The interactions container: per-user chronological item sequences in CSR form, with id maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Interactions:
    """Chronological item sequences of every user, in CSR form.

    Parameters
    ----------
    offsets : np.ndarray
        int64, shape (num_users + 1,): user ``u``'s items are ``items[offsets[u]:offsets[u + 1]]``.
    items : np.ndarray
        int32, dense item ids in ``1..num_items`` (0 is reserved for padding), oldest first.
    raw_user_ids : np.ndarray
        Raw id of each dense user index, shape (num_users,).
    raw_item_ids : np.ndarray
        Raw id of each dense item id, shape (num_items + 1,); entry 0 stands for padding.
    timestamps : np.ndarray or None
        Optional int64 timestamps aligned with ``items``.
    """

    offsets: np.ndarray
    items: np.ndarray
    raw_user_ids: np.ndarray
    raw_item_ids: np.ndarray
    timestamps: np.ndarray | None = None
    source: str = "<memory>"
    _item_index: dict[Any, int] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Integer arrays only, cast only where the cast keeps every value: 2**32 + 3 must not become item 3.
        for name in ("offsets", "items") + (("timestamps",) if self.timestamps is not None else ()):
            a = np.asarray(getattr(self, name))
            if a.dtype.kind not in "iu" or a.ndim != 1:
                raise ValueError(f"{self.source}: {name} must be a 1-D integer array, got {a.dtype} of shape {a.shape}")
        raw = np.asarray(self.items)
        if raw.size and (raw.min() < 1 or raw.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{self.source}: item ids must lie in 1..{self.num_items}")
        offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        items = np.ascontiguousarray(self.items, dtype=np.int32)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "items", items)
        if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0 or offsets[-1] != items.size:
            raise ValueError(f"{self.source}: offsets must run from 0 to len(items)={items.size}")
        if np.any(np.diff(offsets) < 0):
            raise ValueError(f"{self.source}: offsets must not decrease")
        if len(self.raw_user_ids) != offsets.size - 1:
            raise ValueError(f"{self.source}: {len(self.raw_user_ids)} raw user ids for {offsets.size - 1} users")
        if items.size and (items.min() < 1 or items.max() > self.num_items):
            raise ValueError(f"{self.source}: item ids must lie in 1..{self.num_items}")
        if self.timestamps is not None and len(self.timestamps) != items.size:
            raise ValueError(f"{self.source}: {len(self.timestamps)} timestamps for {items.size} interactions")

    @property
    def num_users(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def num_items(self) -> int:
        """Catalogue size (dense ids ``1..num_items``)."""
        return int(len(self.raw_item_ids) - 1)

    @property
    def num_interactions(self) -> int:
        return int(self.items.size)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def item_counts(self) -> np.ndarray:
        """Interactions per dense item id, shape (num_items + 1,), with 0 for padding."""
        return np.bincount(self.items, minlength=self.num_items + 1).astype(np.int64)

    def user_index(self) -> np.ndarray:
        """The dense user of each interaction, aligned with ``items``."""
        return np.repeat(np.arange(self.num_users, dtype=np.int64), self.lengths)

    def encode_items(self, raw_ids: list[Any] | np.ndarray) -> np.ndarray:
        """Dense ids of raw item ids; raises ``KeyError`` naming the first unknown one."""
        if self._item_index is None:
            object.__setattr__(self, "_item_index", {r: i for i, r in enumerate(self.raw_item_ids[1:].tolist(), 1)})
        index = self._item_index
        assert index is not None
        out = np.empty(len(raw_ids), dtype=np.int64)
        for j, r in enumerate(raw_ids):
            key = r.item() if isinstance(r, np.generic) else r
            if key not in index:
                raise KeyError(f"unknown item id {r!r} (not in {self.source})")
            out[j] = index[key]
        return out

    def stats(self) -> dict[str, float]:
        """Users, items, interactions, density and sequence-length summary."""
        lengths = self.lengths
        n = max(self.num_interactions, 1)
        counts = np.sort(self.item_counts()[1:])[::-1]
        top = counts[: max(1, len(counts) // 100)].sum() / n if len(counts) else 0.0
        return {
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "density": self.num_interactions / max(self.num_users * self.num_items, 1),
            "mean_length": float(lengths.mean()) if lengths.size else 0.0,
            "median_length": float(np.median(lengths)) if lengths.size else 0.0,
            "max_length": int(lengths.max()) if lengths.size else 0,
            "top1pct_item_share": float(top),
        }

    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        order: np.ndarray | None = None,
        timestamps: np.ndarray | None = None,
        source: str = "<memory>",
    ) -> "Interactions":
        """Builds the container from one row per interaction, with raw ids of any hashable type.

        Rows are grouped by user; within a user they are ordered by ``order`` (e.g. timestamps) with
        ties kept in input order, or kept in input order when ``order`` is None.
        """
        users = np.asarray(users)
        items = np.asarray(items)
        if users.shape != items.shape or users.ndim != 1:
            raise ValueError(f"{source}: users and items must be 1-D arrays of equal length")
        if users.size == 0:
            raise ValueError(f"{source}: no interactions")
        raw_users, user_idx = np.unique(users, return_inverse=True)
        raw_items, item_idx = np.unique(items, return_inverse=True)
        if order is None:
            perm = np.argsort(user_idx, kind="stable")
        else:
            # lexsort is stable: rows of one user with equal order keys keep their input order (the tie-break).
            perm = np.lexsort((np.asarray(order), user_idx))
        counts = np.bincount(user_idx, minlength=raw_users.size)
        offsets = np.zeros(raw_users.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        raw_item_ids = np.concatenate([_padding_like(raw_items), raw_items])
        ts = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)[perm]
        return cls(
            offsets=offsets,
            items=(item_idx[perm] + 1).astype(np.int32),
            raw_user_ids=raw_users,
            raw_item_ids=raw_item_ids,
            timestamps=ts,
            source=source,
        )


def _padding_like(raw: np.ndarray) -> np.ndarray:
    """A one-element array standing for the padding id, of a dtype compatible with ``raw``."""
    if raw.dtype.kind in "iu":
        return np.array([0], dtype=raw.dtype)
    if raw.dtype.kind in "US":
        return np.array([""], dtype=raw.dtype)
    return np.array([None], dtype=object)
