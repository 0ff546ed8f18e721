"""Product rules on recommendations: an allow-list (``items_to_recommend``: what is in stock, say) and items to
exclude, given as raw item ids and turned into one mask of dense ids that no top-k ever crosses.

The mask is (num_items + 1,) bool, True for an item that must not come out (padding always). Recommendations
(``Recommender``), ``seqrec predict`` (``SeqRecModule.item_rules``) and similar items all apply the same mask;
the ONNX scorer takes its complement as the ``allowed`` input.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np


def blocked_items(
    raw_item_ids: np.ndarray,
    items_to_recommend: Iterable[Any] | None = None,
    exclude_items: Iterable[Any] | None = None,
    skip_unknown: bool = False,
) -> np.ndarray | None:
    """The mask of items never to recommend, or None when there is no rule.

    Parameters
    ----------
    raw_item_ids : np.ndarray
        Raw id of each dense item (entry 0 stands for padding), as ``Recommender.raw_item_ids``.
    items_to_recommend : iterable of raw ids, optional
        Only these may be recommended.
    exclude_items : iterable of raw ids, optional
        These never are (on top of the allow-list).
    skip_unknown : bool
        Ignore ids the catalogue does not hold instead of raising ``KeyError`` (an id that is unknown can never
        be recommended anyway, but a typo in an allow-list would otherwise pass unnoticed).
    """
    if items_to_recommend is None and exclude_items is None:
        return None
    index = {str(r): i for i, r in enumerate(np.asarray(raw_item_ids)[1:].tolist(), 1)}
    blocked = np.zeros(len(index) + 1, dtype=bool)
    blocked[0] = True
    if items_to_recommend is not None:
        allowed = _dense(items_to_recommend, index, "items_to_recommend", skip_unknown)
        if allowed.size == 0:
            raise ValueError("items_to_recommend holds no item of the catalogue: nothing could be recommended")
        blocked[1:] = True
        blocked[allowed] = False
    if exclude_items is not None:
        blocked[_dense(exclude_items, index, "exclude_items", skip_unknown)] = True
    return blocked


def _dense(raw: Iterable[Any], index: dict[str, int], name: str, skip_unknown: bool) -> np.ndarray:
    out, unknown = [], []
    for r in raw:
        i = index.get(str(r))
        if i is None:
            unknown.append(r)
        else:
            out.append(i)
    if unknown and not skip_unknown:
        raise KeyError(f"{name}: unknown item id(s) {unknown[:5]} ({len(unknown)} in all) not in the model's "
                       f"catalogue of {len(index)} items (skip_unknown=True ignores them)")
    return np.asarray(out, dtype=np.int64)


def read_item_ids(path: str | os.PathLike[str], raw_item_ids: np.ndarray, option: str) -> list[str]:
    """Raw item ids from a text file, one per line (blank lines skipped); an id the catalogue does not hold
    is an error naming ``option``, the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option}: {path}: no such file")
    known = {str(r) for r in np.asarray(raw_item_ids)[1:].tolist()}
    ids = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        raw = line.strip()
        if not raw:
            continue
        if raw not in known:
            raise ValueError(f"{option}: {path}:{lineno}: unknown item {raw!r} (not in the model's catalogue of "
                             f"{len(known)} items)")
        ids.append(raw)
    if not ids:
        raise ValueError(f"{option}: {path}: no item ids (one raw item id per line)")
    return ids


def rules_from_files(
    raw_item_ids: np.ndarray, allow: str | os.PathLike[str] | None, exclude: str | os.PathLike[str] | None,
    options: Sequence[str] = ("--predict_allow", "--predict_exclude"),
) -> np.ndarray | None:
    """``blocked_items`` from an allow-list file and an exclusion file (either may be None); ``options`` name
    them in errors."""
    return blocked_items(
        raw_item_ids,
        None if allow is None else read_item_ids(allow, raw_item_ids, options[0]),
        None if exclude is None else read_item_ids(exclude, raw_item_ids, options[1]),
    )
