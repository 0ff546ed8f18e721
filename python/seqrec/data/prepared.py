"""The compact on-disk format (CSR arrays plus id maps) and the cleaning steps applied on the way to it.

A prepared folder holds ``offsets.npy`` (int64, users + 1), ``items.npy`` (int32 dense ids, 1-based),
optionally ``timestamps.npy`` (int64, aligned with items), ``user_ids.parquet`` and ``item_ids.parquet``
(raw id of each dense index; the item table's row 0 stands for padding) and ``meta.json`` (format version,
source, statistics and what each cleaning step dropped). Loading it is a few memory copies, however large
the original file was.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.data.errors import DataFormatError
from seqrec.data.interactions import Interactions

FORMAT_VERSION = 1
META = "meta.json"


def _rebuild(data: Interactions, keep: np.ndarray) -> Interactions:
    """The interactions where ``keep`` holds, order within users unchanged, ids made dense again."""
    users = data.raw_user_ids[data.user_index()[keep]]
    items = data.raw_item_ids[data.items[keep]]
    ts = None if data.timestamps is None else data.timestamps[keep]
    return Interactions.from_arrays(users, items, timestamps=ts, source=data.source)


def drop_consecutive_repeats(data: Interactions) -> tuple[Interactions, int]:
    """Removes an interaction that repeats the user's previous item (double clicks, re-rated items)."""
    same_user = np.zeros(data.num_interactions, dtype=bool)
    same_user[1:] = data.user_index()[1:] == data.user_index()[:-1]
    repeat = np.zeros(data.num_interactions, dtype=bool)
    repeat[1:] = data.items[1:] == data.items[:-1]
    drop = same_user & repeat
    if not drop.any():
        return data, 0
    return _rebuild(data, ~drop), int(drop.sum())


def k_core(data: Interactions, k: int) -> tuple[Interactions, dict[str, int]]:
    """Keeps the largest subset where every user and every item has at least ``k`` interactions.

    Dropping rare items can push users under ``k`` and back, so the filter repeats until nothing changes.
    """
    if k < 1:
        raise ValueError(f"k must be positive, got {k}")
    users = data.user_index()
    items = data.items.astype(np.int64)
    keep = np.ones(data.num_interactions, dtype=bool)
    while True:
        user_counts = np.bincount(users[keep], minlength=data.num_users)
        item_counts = np.bincount(items[keep], minlength=data.num_items + 1)
        new_keep = keep & (user_counts[users] >= k) & (item_counts[items] >= k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    if not keep.any():
        raise ValueError(f"{data.source}: nothing is left after {k}-core filtering")
    dropped = {
        "users": int(data.num_users - np.unique(users[keep]).size),
        "items": int(data.num_items - np.unique(items[keep]).size),
        "interactions": int((~keep).sum()),
    }
    return (data if keep.all() else _rebuild(data, keep)), dropped


def _write_ids(path: Path, ids: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    column = pa.array(ids.tolist()) if ids.dtype.kind in "OUS" else pa.array(ids)
    pq.write_table(pa.table({"raw_id": column}), path)


def _read_ids(path: Path) -> np.ndarray:
    import pyarrow.parquet as pq

    col = pq.read_table(path).column("raw_id")
    arr = col.to_numpy(zero_copy_only=False)
    if arr.dtype == object and all(isinstance(x, str) for x in arr):
        return arr.astype(str)  # string ids come back as the fixed-width strings the loaders make
    return arr


def save_prepared(data: Interactions, folder: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Writes ``data`` in the compact format; files appear under a temporary name first, then move in."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".partial"
    if tmp.exists():  # left by a prepare that was killed: never mix its files with this one's
        shutil.rmtree(tmp)
    tmp.mkdir()
    np.save(tmp / "offsets.npy", data.offsets)
    np.save(tmp / "items.npy", data.items)
    if data.timestamps is not None:
        np.save(tmp / "timestamps.npy", data.timestamps)
    _write_ids(tmp / "user_ids.parquet", np.asarray(data.raw_user_ids))
    _write_ids(tmp / "item_ids.parquet", np.asarray(data.raw_item_ids))
    record = {"format_version": FORMAT_VERSION, "source": data.source, "stats": data.stats(), **(meta or {})}
    (tmp / META).write_text(json.dumps(record, indent=2, default=str))
    # meta.json moves last: a folder with meta.json is complete, whatever was interrupted.
    names = [p.name for p in tmp.iterdir() if p.name != META] + [META]
    stale = folder / "timestamps.npy"
    if data.timestamps is None and stale.exists():
        stale.unlink()
    for name in names:
        os.replace(tmp / name, folder / name)
    tmp.rmdir()
    return folder


def is_prepared(path: str | os.PathLike[str]) -> bool:
    return Path(path).is_dir() and (Path(path) / META).exists()


def load_prepared(folder: str | os.PathLike[str]) -> Interactions:
    """Reads a folder written by ``save_prepared`` (or ``seqrec data prepare``)."""
    folder = Path(folder)
    if not is_prepared(folder):
        raise FileNotFoundError(f"{folder}: not a prepared dataset folder (no {META}; run `seqrec data prepare`)")
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, ValueError) as e:
        raise DataFormatError(f"{folder / META}: not a readable meta.json ({e})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        meta = meta if isinstance(meta, dict) else {}
        raise DataFormatError(f"{folder / META}: format version {meta.get('format_version')}, expected {FORMAT_VERSION}")
    try:
        ts = folder / "timestamps.npy"
        users, items = _read_ids(folder / "user_ids.parquet"), _read_ids(folder / "item_ids.parquet")
        for name, ids in (("user_ids.parquet", users), ("item_ids.parquet", items[1:])):
            if any(x is None for x in ids.tolist()):
                raise ValueError(f"{name} holds a null id")
            if len(set(ids.tolist())) != len(ids):
                raise ValueError(f"{name} holds duplicate ids")
        return Interactions(
            offsets=np.load(folder / "offsets.npy", allow_pickle=False),
            items=np.load(folder / "items.npy", allow_pickle=False),
            raw_user_ids=users,
            raw_item_ids=items,
            timestamps=np.load(ts, allow_pickle=False) if ts.exists() else None,
            source=str(folder),
        )
    except (OSError, ValueError, KeyError) as e:
        raise DataFormatError(f"{folder}: damaged prepared dataset ({e})") from None


def prepare(
    data: Interactions,
    out: str | os.PathLike[str],
    min_count: int = 0,
    dedup: bool = False,
) -> dict[str, Any]:
    """Cleans ``data`` (consecutive repeats, then ``min_count``-core) and saves it; returns the report."""
    before = {"users": data.num_users, "items": data.num_items, "interactions": data.num_interactions}
    steps: list[dict[str, Any]] = []
    if dedup:
        data, n = drop_consecutive_repeats(data)
        steps.append({"step": "drop consecutive repeats", "dropped_interactions": n})
    if min_count > 1:
        data, dropped = k_core(data, min_count)
        steps.append({"step": f"{min_count}-core", **{f"dropped_{k}": v for k, v in dropped.items()}})
    after = {"users": data.num_users, "items": data.num_items, "interactions": data.num_interactions}
    report = {"before": before, "after": after, "steps": steps}
    save_prepared(data, out, report)
    return {"out": str(out), **report}
