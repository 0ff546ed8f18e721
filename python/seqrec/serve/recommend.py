"""Top-k recommendations in raw ids from a trained checkpoint: for known users or ad-hoc sequences, under
product rules; similar items and the users' query vectors from the same model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from seqrec.data.batches import history_batches
from seqrec.data.errors import DataFormatError
from seqrec.data.features import time_gap_buckets
from seqrec.data.interactions import Interactions
from seqrec.data.source import load_source
from seqrec.files import write_atomically
from seqrec.serve.retrieval import exact_top_k
from seqrec.serve.rules import blocked_items
from seqrec.train.checkpoint_io import unreadable
from seqrec.train.module import SeqRecModule


def write_table(columns: dict[str, Sequence[Any] | np.ndarray], path: str | os.PathLike[str]) -> Path:
    """Writes columns to ``.csv`` or ``.parquet`` (by the suffix) through pyarrow; returns the path."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: recommendations are written as .csv or .parquet, not {path.suffix!r}")
    table = pa.table({name: (v.tolist() if isinstance(v, np.ndarray) and v.dtype == object else v)
                      for name, v in columns.items()})
    write = pq.write_table if path.suffix == ".parquet" else pacsv.write_csv
    return write_atomically(path, lambda tmp: write(table, tmp))  # a reader never sees half a file


def recommendation_rows(
    raw_users: np.ndarray, raw_items: np.ndarray, items: np.ndarray, scores: np.ndarray
) -> dict[str, np.ndarray]:
    """Long format: one row per (user, rank) with the raw item id and its score.

    Slots with score ``-inf`` (excluded: seen items or padding, when a user has fewer than k items left)
    are left out, so a user gets fewer rows rather than items that were meant to be excluded.
    """
    b, k = items.shape
    keep = np.isfinite(scores).reshape(-1)
    return {
        "user_id": np.repeat(raw_users, k)[keep],
        "rank": np.tile(np.arange(1, k + 1), b)[keep],
        "item_id": raw_items[items.reshape(-1)][keep],
        "score": scores.reshape(-1).astype(np.float32)[keep],
    }


class Recommender:
    """A trained model and its catalogue, answering in raw ids.

    Parameters
    ----------
    module : SeqRecModule
        The trained model (``Recommender.from_checkpoint`` loads one).
    raw_item_ids : np.ndarray
        Raw id of each dense item id the model knows (entry 0 stands for padding).
    histories : Interactions or None
        Known users' sequences; needed by ``recommend`` (not by ``recommend_sequences``). Their item ids
        are matched to the model's by raw id, so the file may differ from the training one.
    """

    def __init__(self, module: SeqRecModule, raw_item_ids: np.ndarray, histories: Interactions | None = None):
        self.module = module.eval()
        self.raw_item_ids = np.asarray(raw_item_ids)
        if len(self.raw_item_ids) != module.hparams.num_items + 1:
            raise ValueError(f"{len(self.raw_item_ids) - 1} raw item ids for a model of {module.hparams.num_items} items")
        self._index = {str(r): i for i, r in enumerate(self.raw_item_ids[1:].tolist(), 1)}
        self.histories = histories
        self._user_index: dict[str, int] | None = None
        self._dense: np.ndarray | None = None

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], histories: Interactions | None = None, map_location: str = "cpu",
        new_item_boost: float | None = None,
    ) -> "Recommender":
        """Loads a checkpoint written by ``seqrec fit``; histories default to the data it was trained on.

        ``new_item_boost`` replaces the checkpoint's ``model.new_item_boost``: what is added to the scores of
        items without a trained ID (withheld in training, or ``add_items``), in recommendations, item and
        user embeddings alike (``seqrec.evaluate.boost`` measures the trade-off).
        """
        overrides = {} if new_item_boost is None else {"new_item_boost": float(new_item_boost)}
        # weights_only: a checkpoint is data, never code (a crafted pickle would otherwise run on load).
        try:
            module = SeqRecModule.load_from_checkpoint(path, map_location=map_location, weights_only=True,
                                                       **overrides)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise unreadable(path, e) from None
        meta = getattr(module, "catalogue", None)
        if not meta:
            raise ValueError(f"{path}: no catalogue in this checkpoint (written by an older seqrec?)")
        if histories is None:
            histories = _stored_histories(path, meta["source"])
        raw = meta["raw_item_ids"]
        return cls(module, np.array(raw, dtype=object if any(isinstance(r, str) for r in raw) else None), histories)

    @property
    def max_len(self) -> int:
        return int(self.module.hparams.max_len)

    def encode(self, raw_items: Sequence[Any], skip_unknown: bool = False) -> np.ndarray:
        """Dense ids of raw item ids (matched as strings); unknown ids raise, or are dropped with ``skip_unknown``."""
        out = []
        for r in raw_items:
            i = self._index.get(str(r))
            if i is None:
                if skip_unknown:
                    continue
                raise KeyError(f"unknown item id {r!r}: not in the model's catalogue of {len(self._index)} items")
            out.append(i)
        return np.asarray(out, dtype=np.int64)

    def _model_ids(self) -> np.ndarray:
        """The known users' item ids in the model's id space (0 where the model does not know an item)."""
        if self._dense is None:
            assert self.histories is not None
            lookup = np.array([0] + [self._index.get(str(r), 0) for r in self.histories.raw_item_ids[1:].tolist()])
            self._dense = lookup[self.histories.items].astype(np.int64)
        return self._dense

    def _score(self, batches: list[dict[str, torch.Tensor]], k: int, exclude_seen: bool,
               blocked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        device = self.module.device
        mask = None if blocked is None else torch.from_numpy(blocked).to(device)
        items, scores = [], []
        with torch.no_grad():
            for batch in batches:
                batch = {name: v.to(device) for name, v in batch.items()}
                s, i = self.module.top_k(batch, k, exclude_seen, mask)
                items.append(i.cpu().numpy())
                scores.append(s.cpu().numpy())
        return np.concatenate(items), np.concatenate(scores)

    def _queries(self, batches: list[dict[str, torch.Tensor]]) -> np.ndarray:
        device, model = self.module.device, self.module.model
        out = []
        with torch.no_grad():
            for batch in batches:
                times = batch.get("time_inputs")
                query = model.query(batch["inputs"].to(device), None if times is None else times.to(device))  # (B, D)
                out.append(query.float().cpu().numpy())
        return np.concatenate(out)

    def _known_batches(
        self, users: Sequence[Any] | None, batch_size: int
    ) -> tuple[np.ndarray, list[dict[str, torch.Tensor]]]:
        """Dense indices of known ``users`` (raw ids; None: every user) and batches of their whole histories."""
        if self.histories is None:
            raise ValueError("no histories: pass histories= or use recommend_sequences")
        data = self.histories
        if users is None:
            dense_users = np.arange(data.num_users, dtype=np.int64)
        else:
            if self._user_index is None:
                self._user_index = {str(r): u for u, r in enumerate(data.raw_user_ids.tolist())}
            missing = [u for u in users if str(u) not in self._user_index]
            if missing:
                raise KeyError(f"unknown user id(s) {missing[:5]} (not in {data.source})")
            dense_users = np.array([self._user_index[str(u)] for u in users], dtype=np.int64)
        # Items the model does not know become padding-free gaps: drop them from the histories.
        ids = self._model_ids()
        keep = ids != 0
        offsets = np.zeros(data.num_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(data.user_index()[keep], minlength=data.num_users), out=offsets[1:])
        buckets = None
        if self.module.hparams.num_time_buckets:
            if data.timestamps is None:
                raise ValueError(f"{data.source}: the model uses time features but the data has no timestamps")
            buckets = time_gap_buckets(data)[keep]
        return dense_users, history_batches(offsets, ids[keep], dense_users, self.max_len, batch_size, buckets)

    def recommend(
        self,
        users: Sequence[Any] | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        batch_size: int = 512,
        items_to_recommend: Iterable[Any] | None = None,
        exclude_items: Iterable[Any] | None = None,
        skip_unknown: bool = False,
    ) -> dict[str, np.ndarray]:
        """Top-k for known users (raw ids; None: every user) from their whole history, in long format.

        ``items_to_recommend`` (raw ids, e.g. what is in stock) is the only items that may come out and
        ``exclude_items`` (raw ids) items that must not, for every user of the call; with ``exclude_seen``
        neither do the items a user already interacted with. A user with fewer than k items left gets fewer
        rows. An unknown raw id in either list raises ``KeyError``, or is ignored with ``skip_unknown``.
        """
        dense_users, batches = self._known_batches(users, batch_size)
        blocked = blocked_items(self.raw_item_ids, items_to_recommend, exclude_items, skip_unknown)
        items, scores = self._score(batches, k, exclude_seen, blocked)
        return recommendation_rows(self.histories.raw_user_ids[dense_users], self.raw_item_ids, items, scores)

    def recommend_sequences(
        self,
        sequences: Sequence[Sequence[Any]],
        k: int = 10,
        exclude_seen: bool = True,
        timestamps: Sequence[Sequence[int]] | None = None,
        skip_unknown: bool = False,
        items_to_recommend: Iterable[Any] | None = None,
        exclude_items: Iterable[Any] | None = None,
    ) -> dict[str, np.ndarray]:
        """Top-k after ad-hoc sequences of raw item ids (new users), oldest first; ``user_id`` is the index.

        ``items_to_recommend`` and ``exclude_items`` as in ``recommend``; ``skip_unknown`` drops unknown raw
        ids from the sequences and from both lists instead of raising.
        """
        encoded = [self.encode(s, skip_unknown) for s in sequences]
        if any(e.size == 0 for e in encoded):
            raise ValueError("every sequence needs at least one known item")
        blocked = blocked_items(self.raw_item_ids, items_to_recommend, exclude_items, skip_unknown)
        offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([e.size for e in encoded], out=offsets[1:])
        flat = np.concatenate(encoded)
        buckets = None
        if self.module.hparams.num_time_buckets:
            if timestamps is None or skip_unknown:
                raise ValueError("the model uses time features: pass timestamps= aligned with the sequences")
            times = Interactions(offsets, flat.astype(np.int32), np.arange(len(encoded)), self.raw_item_ids,
                                 timestamps=np.concatenate([np.asarray(t, dtype=np.int64) for t in timestamps]))
            buckets = time_gap_buckets(times)
        users = np.arange(len(encoded), dtype=np.int64)
        batches = history_batches(offsets, flat, users, self.max_len, 512, buckets)
        items, scores = self._score(batches, k, exclude_seen, blocked)
        return recommendation_rows(users, self.raw_item_ids, items, scores)

    def similar_items(
        self,
        items: Sequence[Any],
        k: int = 10,
        items_to_recommend: Iterable[Any] | None = None,
        exclude_items: Iterable[Any] | None = None,
        skip_unknown: bool = False,
    ) -> dict[str, np.ndarray]:
        """The k items nearest each of ``items`` (raw ids) in the item table, the item itself left out.

        Nearest by cosine similarity (``score``, in [-1, 1]), not by dot product: the rows' norms grow with
        popularity, and a dot product would give every item the same few popular neighbours. Long format:
        ``item_id`` (the item asked about), ``rank``, ``similar_item_id``, ``score``. ``items_to_recommend``,
        ``exclude_items`` and ``skip_unknown`` as in ``recommend`` (``skip_unknown`` also drops unknown
        ``items``).
        """
        dense = self.encode(items, skip_unknown)
        if dense.size == 0:
            raise ValueError("similar_items needs at least one known item")
        table = self.item_embeddings()  # (N, D); row i is dense item i + 1
        unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
        blocked = blocked_items(self.raw_item_ids, items_to_recommend, exclude_items, skip_unknown)
        n = unit.shape[0]
        scores, rows = exact_top_k(unit[dense - 1], unit, min(k, n), exclude=[np.array([d - 1]) for d in dense],
                                   blocked=None if blocked is None else blocked[1:])
        out = recommendation_rows(self.raw_item_ids[dense], self.raw_item_ids, rows + 1, scores)
        return {"item_id": out["user_id"], "rank": out["rank"], "similar_item_id": out["item_id"],
                "score": out["score"]}

    def user_embeddings(
        self, users: Sequence[Any] | None = None, batch_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray]:
        """(raw user ids, (U, D) float32 query vectors) of known users (None: every user) after their whole
        history: a user's vector times ``item_embeddings().T`` scores every item as ``recommend`` does."""
        dense_users, batches = self._known_batches(users, batch_size)
        return self.histories.raw_user_ids[dense_users], self._queries(batches)

    def add_items(self, features: str | os.PathLike[str] | Any, skip_known: bool = False) -> list[str]:
        """Adds items that were not in training, from a feature file (or pyarrow table) of the training
        layout: they are scored, recommended, retrieved and encoded in histories from their features alone,
        without retraining. Returns their raw ids in the order added.

        Needs a model trained with ``model.feature_sides both`` and item features; attribute values training
        never saw are left out of an item's bag, numbers are normalised with the training statistics.
        ``skip_known`` leaves out rows of items the model already has instead of refusing the file.
        """
        from seqrec.serve.new_items import add_new_items

        start = len(self.raw_item_ids)
        self.raw_item_ids, added = add_new_items(self.module, features, self.raw_item_ids, skip_known)
        self._index.update({r: start + j for j, r in enumerate(added)})
        if added:
            self._dense = None  # histories holding the new items now encode them
        return added

    def item_embeddings(self) -> np.ndarray:
        """(num_items, D) float32: the table that scores items (row i is dense item i + 1)."""
        return self.module.model.item_embeddings[1:].detach().float().cpu().numpy()


def _stored_histories(checkpoint: str | os.PathLike[str], source: dict[str, Any]) -> Interactions:
    """The training data a checkpoint names. The path comes from the file, not from the caller, so a parse
    error names the path but never echoes its content (a crafted checkpoint could point at any file)."""
    try:
        return load_source(source)
    except DataFormatError:
        raise DataFormatError(
            f"{checkpoint}: the training data it names ({source.get('path')}, format {source.get('format', 'auto')}) "
            "is not readable as interactions; pass the histories explicitly (its content is not shown, since "
            "the path came from the checkpoint)") from None
