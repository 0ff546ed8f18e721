"""The model behind ``seqrec serve``: a checkpoint loaded once, answering batches of requests in raw ids.

HTTP-free on purpose: the server (``seqrec.serve.server``) parses and validates requests, groups them
(``seqrec.serve.batcher``) and calls ``OnlineModel.recommend`` with a list of ``Query``; tests and the
benchmark can call the same method directly. Every request of a batch gets exactly what it would get alone:
its own history, k, exclusions and allow-list; the batch only shares the encoder pass and the product with the
item table.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from seqrec.data.batches import history_batches
from seqrec.data.features import time_gap_buckets
from seqrec.data.interactions import Interactions
from seqrec.serve.recommend import Recommender
from seqrec.serve.retrieval import HNSWIndex, exact_top_k


class RequestError(ValueError):
    """A request the model cannot answer, with the HTTP status and the field at fault."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field


@dataclass
class Query:
    """One recommendation request, resolved to dense ids (``OnlineModel.resolve`` builds it)."""

    history: np.ndarray  # (L,) dense ids, oldest first, unknown items already dropped
    k: int
    exclude: np.ndarray  # dense ids never to recommend (on top of the history with exclude_seen)
    allow: np.ndarray | None  # dense ids that alone may be recommended, or None
    exclude_seen: bool = True
    time_buckets: np.ndarray | None = None  # (L,) with a time-feature model
    unknown: list[Any] = field(default_factory=list)  # raw ids of the request that the catalogue lacks


@dataclass
class Answer:
    items: list[Any]  # raw ids, best first
    scores: list[float]
    history_used: int  # items of the history the encoder saw (the most recent max_len)


def file_version(path: Path) -> str:
    """``<file name>@<first 12 hex of its sha256>``: names the model an answer came from, and changes
    whenever the file does, even when a new checkpoint is written over the old path."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{path.name}@{digest.hexdigest()[:12]}"


class OnlineModel:
    """A checkpoint ready to answer: its item table, its users' histories in dense ids, an index.

    Parameters
    ----------
    checkpoint : path
        A ``.ckpt`` written by ``seqrec fit``; the catalogue, raw ids and the users' histories come from it.
    index : str
        ``exact`` (chunked matrix products over the whole table) or ``hnsw`` (faiss, approximate; requests
        with an allow-list are still scored exactly over the allowed items).
    """

    def __init__(self, checkpoint: str | os.PathLike[str], index: Literal["exact", "hnsw"] = "exact"):
        start = time.perf_counter()
        self.checkpoint = Path(checkpoint)
        if index not in ("exact", "hnsw"):
            raise ValueError(f"index must be 'exact' or 'hnsw', got {index!r}")
        self.recommender = Recommender.from_checkpoint(self.checkpoint)
        self.version = file_version(self.checkpoint)
        rec = self.recommender
        self.max_len = rec.max_len
        self.num_items = int(rec.module.hparams.num_items)
        self.uses_time = bool(rec.module.hparams.num_time_buckets)
        self.table = np.ascontiguousarray(rec.item_embeddings())  # (N, D): row i is dense item i + 1
        norms = np.maximum(np.linalg.norm(self.table, axis=1, keepdims=True), 1e-12)
        self.unit_table = self.table / norms  # cosine neighbours for similar items
        self.item_index = rec._index  # raw id as text -> dense id
        self._histories()
        self.index_kind = index
        self.hnsw = HNSWIndex(self.table) if index == "hnsw" else None
        self.load_seconds = time.perf_counter() - start
        self.loaded_at = time.time()

    def _histories(self) -> None:
        # Every known user's history in the model's dense ids, once: a request slices its user's row.
        rec = self.recommender
        data = rec.histories
        assert data is not None
        ids = rec._model_ids()
        keep = ids != 0
        self.offsets = np.zeros(data.num_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(data.user_index()[keep], minlength=data.num_users), out=self.offsets[1:])
        self.items = ids[keep]
        self.buckets = None
        if self.uses_time:
            if data.timestamps is None:
                raise ValueError(f"{data.source}: the model uses time features but the data has no timestamps")
            self.buckets = time_gap_buckets(data)[keep]
        self.user_index = {str(r): u for u, r in enumerate(data.raw_user_ids.tolist())}

    # -- requests in raw ids -> dense ids ---------------------------------------------------------------------

    def _dense(self, raw: Sequence[Any] | None, name: str, strict: bool, unknown: list[Any]) -> np.ndarray:
        out, missing = [], []
        for r in raw or ():
            i = self.item_index.get(str(r))
            if i is None:
                missing.append(r)
            else:
                out.append(i)
        if missing and strict:
            raise RequestError(422, name, f"unknown item id(s) {missing[:5]} ({len(missing)} in all) not in the "
                                          f"model's catalogue of {self.num_items} items")
        unknown.extend(missing)
        return np.asarray(out, dtype=np.int64)

    def resolve(
        self,
        user_id: Any = None,
        history: Sequence[Any] | None = None,
        k: int = 10,
        exclude: Sequence[Any] | None = None,
        allow: Sequence[Any] | None = None,
        exclude_seen: bool = True,
        strict: bool = False,
        timestamps: Sequence[int] | None = None,
    ) -> Query:
        """A request in raw ids as a ``Query``; ``RequestError`` names the field at fault.

        Exactly one of ``user_id`` (a known user: their stored history) and ``history`` (raw item ids, oldest
        first). Unknown items in ``history``, ``exclude`` and ``allow`` are skipped and listed in
        ``Query.unknown``, or refused with ``strict``.
        """
        if (user_id is None) == (history is None):
            raise RequestError(422, "user_id", "give exactly one of user_id (a known user) and history (item ids)")
        if not 1 <= k <= self.num_items:
            raise RequestError(422, "k", f"must lie in 1..{self.num_items} (the catalogue), got {k}")
        unknown: list[Any] = []
        buckets = None
        if user_id is not None:
            u = self.user_index.get(str(user_id))
            if u is None:
                raise RequestError(404, "user_id", f"unknown user {user_id!r} (not in the model's stored histories)")
            seq = self.items[self.offsets[u]: self.offsets[u + 1]]
            if self.buckets is not None:
                buckets = self.buckets[self.offsets[u]: self.offsets[u + 1]]
            if seq.size == 0:
                raise RequestError(422, "user_id", f"user {user_id!r} has no item the model knows")
        else:
            assert history is not None
            if len(history) == 0:
                raise RequestError(422, "history", "is empty: give at least one item id")
            if self.uses_time:
                if timestamps is None or len(timestamps) != len(history):
                    raise RequestError(422, "timestamps", "the model uses time features: give one unix time per "
                                                          "history item")
            known = [str(r) in self.item_index for r in history]
            seq = self._dense(history, "history", strict, unknown)
            if seq.size == 0:
                raise RequestError(422, "history", f"no item of the history is in the model's catalogue "
                                                   f"(unknown: {unknown[:5]})")
            if self.uses_time:
                assert timestamps is not None
                kept = np.asarray([t for t, ok in zip(timestamps, known) if ok], dtype=np.int64)
                one = Interactions(np.array([0, seq.size]), seq.astype(np.int32), np.array([0]),
                                   np.arange(self.num_items + 1), timestamps=kept)
                buckets = time_gap_buckets(one)
        excluded = self._dense(exclude, "exclude", strict, unknown)
        allowed = None if allow is None else self._dense(allow, "allow", strict, unknown)
        if allowed is not None and allowed.size == 0:
            raise RequestError(422, "allow", "holds no item of the catalogue: nothing could be recommended")
        return Query(seq, k, excluded, allowed, exclude_seen, buckets, unknown)

    # -- batches -------------------------------------------------------------------------------------------

    def queries(self, batch: Sequence[Query]) -> np.ndarray:
        """(B, D) query vectors of the requests' histories, one encoder pass (histories padded to max_len,
        so a request's row does not depend on the others')."""
        offsets = np.zeros(len(batch) + 1, dtype=np.int64)
        np.cumsum([q.history.size for q in batch], out=offsets[1:])
        flat = np.concatenate([q.history for q in batch])
        buckets = np.concatenate([q.time_buckets for q in batch]) if self.uses_time else None  # type: ignore[misc]
        users = np.arange(len(batch), dtype=np.int64)
        batches = history_batches(offsets, flat, users, self.max_len, len(batch), buckets)
        return self.recommender._queries(batches)

    def recommend(self, batch: Sequence[Query]) -> list[Answer]:
        """The top-k of every request of ``batch``, each as if it came alone."""
        if not batch:
            return []
        q = self.queries(batch)
        out: list[Answer | None] = [None] * len(batch)
        free = [r for r, b in enumerate(batch) if b.allow is None]
        if free:
            k = max(batch[r].k for r in free)
            # Rows of the table are dense ids - 1.
            exclude = [np.concatenate([batch[r].history if batch[r].exclude_seen else batch[r].history[:0],
                                       batch[r].exclude]) - 1 for r in free]
            if self.hnsw is not None:
                scores, rows = self.hnsw.search(q[free], min(k, self.num_items), exclude)
            else:
                scores, rows = exact_top_k(q[free], self.table, min(k, self.num_items), exclude)
            for j, r in enumerate(free):
                out[r] = self._answer(batch[r], scores[j], rows[j])
        for r, b in enumerate(batch):
            if b.allow is not None:
                # An allow-list is usually short: score only its items, exactly, whatever the index.
                cand = np.unique(b.allow)
                blocked = np.concatenate([b.history if b.exclude_seen else b.history[:0], b.exclude])
                cand = cand[~np.isin(cand, blocked)]
                s = torch.from_numpy(q[r: r + 1]) @ torch.from_numpy(self.table[cand - 1]).T  # (1, C)
                top = s[0].topk(min(b.k, cand.size)) if cand.size else None
                scores = top.values.numpy() if top is not None else np.zeros(0, np.float32)
                rows = cand[top.indices.numpy()] - 1 if top is not None else np.zeros(0, np.int64)
                out[r] = self._answer(b, scores, rows)
        return [a for a in out if a is not None]

    def _answer(self, q: Query, scores: np.ndarray, rows: np.ndarray) -> Answer:
        keep = np.isfinite(scores[: q.k]) & (rows[: q.k] >= 0)
        raw = self.recommender.raw_item_ids[rows[: q.k][keep] + 1]
        return Answer([_plain(r) for r in raw.tolist()], [float(s) for s in scores[: q.k][keep]],
                      int(min(q.history.size, self.max_len)))

    def similar(self, item_id: Any, k: int = 10, exclude: Sequence[Any] | None = None,
                allow: Sequence[Any] | None = None, strict: bool = False) -> tuple[Answer, list[Any]]:
        """The k nearest items of one item by cosine similarity (``Recommender.similar_items``' rule)."""
        i = self.item_index.get(str(item_id))
        if i is None:
            raise RequestError(404, "item_id", f"unknown item {item_id!r} (not in the model's catalogue)")
        if not 1 <= k <= self.num_items - 1:
            raise RequestError(422, "k", f"must lie in 1..{self.num_items - 1} (the other items), got {k}")
        unknown: list[Any] = []
        excluded = np.concatenate([[i], self._dense(exclude, "exclude", strict, unknown)])
        allowed = None if allow is None else self._dense(allow, "allow", strict, unknown)
        if allowed is not None and allowed.size == 0:
            raise RequestError(422, "allow", "holds no item of the catalogue")
        query = self.unit_table[i - 1: i]
        if allowed is None:
            scores, rows = exact_top_k(query, self.unit_table, k, [excluded - 1])
            return self._answer(Query(np.array([i]), k, excluded, None), scores[0], rows[0]), unknown
        cand = np.unique(allowed)
        cand = cand[~np.isin(cand, excluded)]
        scores, rows = exact_top_k(query, self.unit_table[cand - 1], min(k, max(cand.size, 1))) if cand.size else \
            (np.zeros((1, 0), np.float32), np.zeros((1, 0), np.int64))
        return self._answer(Query(np.array([i]), k, excluded, None), scores[0], cand[rows[0]] - 1), unknown


def _plain(raw: Any) -> Any:
    """A raw id as JSON has it: numpy integers become ints."""
    return raw.item() if isinstance(raw, np.generic) else raw
