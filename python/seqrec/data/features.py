"""Side information: item attributes (brand, categories) and interaction times, as model-ready integer tables."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from seqrec.data.errors import DataFormatError
from seqrec.data.interactions import Interactions
from seqrec.data.text import parse_int, read_lines

# Time gaps fall into log2 buckets of days: 0 is padding, 1 the user's first interaction, then
# 2 + floor(log2(1 + gap_days)), so same day, 1 day, 2-3 days, 4-7 days, ... up to the last bucket.
NUM_TIME_BUCKETS = 16
SECONDS_PER_DAY = 86400


@dataclasses.dataclass(frozen=True)
class ItemAttributes:
    """Attributes of every dense item as a padded table.

    Parameters
    ----------
    table : np.ndarray
        int64, shape (num_items + 1, max_attributes): dense attribute ids ``1..num_attributes`` of item i
        in row i, padded with 0; row 0 (padding) and items without attributes are all zero.
    raw_ids : np.ndarray
        Raw attribute of each dense attribute id (entry 0 stands for padding).
    unknown_items : int
        Items of the attribute file that are not in the catalogue (ignored).
    """

    table: np.ndarray
    raw_ids: np.ndarray
    unknown_items: int = 0

    @property
    def num_attributes(self) -> int:
        return int(len(self.raw_ids) - 1)

    @property
    def max_attributes(self) -> int:
        return int(self.table.shape[1])

    @property
    def coverage(self) -> float:
        """Share of catalogue items with at least one attribute."""
        return float((self.table[1:] != 0).any(axis=1).mean()) if self.table.shape[0] > 1 else 0.0


def load_item_attributes(
    path: str | os.PathLike[str],
    interactions: Interactions,
    item_col: str = "item_id",
    attribute_col: str = "attribute",
) -> ItemAttributes:
    """Reads item attributes keyed by raw item id and aligns them with the dense catalogue.

    ``.json``: ``{"item": [attribute, ...]}`` (the S3-Rec file); ``.csv`` or ``.parquet``: one row per
    (item, attribute) pair in columns ``item_col`` and ``attribute_col``. Raw item ids in the file are
    matched to the catalogue's as strings, so ``"4"`` in JSON names item 4 of a text file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such attribute file")
    pairs: dict[str, list[str]] = {}
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataFormatError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise DataFormatError(f"{path}: expected an object {{item: [attributes]}}, got {type(data).__name__}")
        for item, attrs in data.items():
            if not isinstance(attrs, list):
                raise DataFormatError(f"{path}: item {item!r}: expected a list of attributes, got {attrs!r}")
            pairs[str(item)] = [str(a) for a in attrs]
    elif path.suffix in (".csv", ".parquet"):
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
        except pa.ArrowInvalid as e:
            raise DataFormatError(f"{path}: {e}") from None
        missing = [c for c in (item_col, attribute_col) if c not in table.column_names]
        if missing:
            raise DataFormatError(f"{path}: missing column(s) {missing}; the file has {table.column_names}")
        for item, attr in zip(table.column(item_col).to_pylist(), table.column(attribute_col).to_pylist()):
            if item is None or attr is None:
                raise DataFormatError(f"{path}: empty item or attribute value")
            pairs.setdefault(str(item), []).append(str(attr))
    else:
        raise DataFormatError(f"{path}: attribute files are .json, .csv or .parquet, not {path.suffix!r}")

    index = {str(raw): i for i, raw in enumerate(interactions.raw_item_ids[1:].tolist(), 1)}
    attr_index: dict[str, int] = {}
    rows: dict[int, list[int]] = {}
    unknown = 0
    for item, attrs in pairs.items():
        dense = index.get(item)
        if dense is None:
            unknown += 1
            continue
        ids = []
        for a in dict.fromkeys(attrs):  # an attribute listed twice counts once
            ids.append(attr_index.setdefault(a, len(attr_index) + 1))
        rows[dense] = ids
    width = max((len(v) for v in rows.values()), default=0)
    table = np.zeros((interactions.num_items + 1, max(width, 1)), dtype=np.int64)
    for dense, ids in rows.items():
        table[dense, : len(ids)] = ids
    raw_ids = np.array([""] + list(attr_index), dtype=object)
    return ItemAttributes(table=table, raw_ids=raw_ids, unknown_items=unknown)


def attach_user_line_times(interactions: Interactions, path: str | os.PathLike[str]) -> Interactions:
    """Adds timestamps from a file of ``user t1 t2 ...`` lines aligned with a one-user-per-line item file.

    Line by line, the times of a user must be as many as their items (the S3-Rec ``Beauty_time.txt``).
    """
    path = Path(path)
    users = {raw: u for u, raw in enumerate(interactions.raw_user_ids.tolist())}
    lengths = interactions.lengths
    out = np.full(interactions.num_interactions, -1, dtype=np.int64)
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        raw = parse_int(parts[0], path, lineno, "user id")
        u = users.get(raw)
        if u is None:
            raise DataFormatError(f"{path}:{lineno}: user {raw} is not in {interactions.source}")
        if len(parts) - 1 != lengths[u]:
            raise DataFormatError(
                f"{path}:{lineno}: user {raw} has {len(parts) - 1} times but {lengths[u]} items in {interactions.source}"
            )
        start = interactions.offsets[u]
        out[start : start + lengths[u]] = [parse_int(t, path, lineno, "timestamp") for t in parts[1:]]
    if (out < 0).any():
        first = int(np.searchsorted(interactions.offsets, int(np.flatnonzero(out < 0)[0]), side="right") - 1)
        raise DataFormatError(f"{path}: no times for user {interactions.raw_user_ids[first].item()!r}")
    return dataclasses.replace(interactions, timestamps=out)


def time_gap_buckets(interactions: Interactions, num_buckets: int = NUM_TIME_BUCKETS) -> np.ndarray:
    """int64 bucket of the gap since the user's previous interaction, aligned with ``items``.

    1 marks a user's first interaction; otherwise ``2 + floor(log2(1 + gap_days))``, capped at
    ``num_buckets - 1``. Times that run backwards (out of order data) count as a zero gap.
    """
    if interactions.timestamps is None:
        raise ValueError(f"{interactions.source}: no timestamps to build time features from")
    if num_buckets < 3:
        raise ValueError(f"num_buckets must be at least 3, got {num_buckets}")
    ts = interactions.timestamps.astype(np.float64)
    gaps = np.zeros_like(ts)
    gaps[1:] = np.maximum(ts[1:] - ts[:-1], 0.0) / SECONDS_PER_DAY
    buckets = 2 + np.floor(np.log2(1.0 + gaps)).astype(np.int64)
    buckets = np.minimum(buckets, num_buckets - 1)
    starts = interactions.offsets[:-1][interactions.lengths > 0]
    buckets[starts] = 1
    return buckets


def gather_prefix(
    values: np.ndarray,
    offsets: np.ndarray,
    users: np.ndarray,
    ends: np.ndarray,
    width: int,
    shift: int,
    inputs: np.ndarray,
) -> np.ndarray:
    """Per-interaction ``values`` laid out like a left-padded batch of item ``inputs``.

    Column c of row r holds the value of interaction ``ends[r] - 1 - shift - (width - 1 - c)`` of user
    ``users[r]`` (``shift`` = 1 for next-item inputs, which stop one before the segment end), and 0 where
    ``inputs`` is padding. Training prefixes of leave-one-out are prefixes of the full sequence, so
    ``offsets`` are the full data's.
    """
    cols = np.arange(width, dtype=np.int64)
    pos = ends[:, None] - 1 - shift - (width - 1 - cols)[None, :]  # (B, W)
    valid = (inputs != 0) & (pos >= 0)
    index = offsets[users][:, None] + np.where(valid, pos, 0)
    return np.where(valid, values[index], 0)
