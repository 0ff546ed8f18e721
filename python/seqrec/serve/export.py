"""Exports of a trained model for serving outside seqrec: the item table and the known users' query vectors for
a vector index, and an ONNX scorer, optionally with the top-k (seen and disallowed items excluded) in the graph."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from seqrec.files import write_atomically
from seqrec.serve.recommend import Recommender
from seqrec.serve.rules import blocked_items, read_item_ids
from seqrec.train.module import SeqRecModule

# Everything export writes into its folder; one that this export does not write is removed, so the folder
# never mixes a new table with an older scorer (or mask) of another checkpoint.
ARTIFACTS = ("item_embeddings.parquet", "item_embeddings.npy", "user_embeddings.parquet", "allowed_items.npy",
             "scorer.onnx", "export.json")
ONNX_EXTRA = "pip install 'seqrec[export]'"


class Scorer(nn.Module):
    """Histories (B, L) of dense item ids, oldest first, of any length L (a batch of unequal ones left-padded
    with 0) -> query vectors (B, D) and item scores (B, N + 1); with ``top_k`` also the best ``top_k`` items
    (B, K) and their scores.

    The graph brings the histories to ``max_len`` itself: shorter ones are left-padded, longer ones keep their
    most recent ``max_len`` items, as ``Recommender`` does (a constant cost of ``max_len`` positions: SASRec
    would give the same on L, but BERT4Rec's appended mask displaces the first column). The scores are the query times the item table
    (column 0, padding, is meaningless). The top-k leaves out every item of the inputs (the history, however
    long) and the items that the ``allowed`` input ((N + 1,) bool) does not allow; a row with fewer items left
    than K ends in slots of score ``-inf``, which serving drops.
    """

    def __init__(self, module: SeqRecModule, top_k: int = 0):
        super().__init__()
        self.model = module.model
        self.max_len = int(module.hparams.max_len)
        self.time = bool(module.hparams.num_time_buckets)
        self.top_k = top_k
        if top_k:
            not_padding = torch.ones(int(module.hparams.num_items) + 1, dtype=torch.bool)
            not_padding[0] = False
            self.register_buffer("not_padding", not_padding, persistent=False)

    def forward(self, inputs: torch.Tensor, time_inputs: torch.Tensor | None = None,
                allowed: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        pad = (self.max_len - inputs.shape[1], 0)  # negative: crop to the most recent max_len
        x = F.pad(inputs, pad)  # (B, max_len)
        t = None if time_inputs is None else F.pad(time_inputs, pad)
        query = self.model.query(x, t)  # (B, D)
        scores = self.model.score_all(query)  # (B, N + 1)
        if not self.top_k:
            return query, scores
        if allowed is None:
            raise ValueError("a top-k scorer needs the allowed mask")
        allowed = allowed & self.not_padding  # (N + 1,)
        masked = scores.masked_fill(~allowed, float("-inf")).scatter(1, inputs, float("-inf"))  # seen items out
        top_scores, top_items = masked.topk(self.top_k, dim=1)  # (B, K) each
        return query, scores, top_items, top_scores


def export_embeddings(recommender: Recommender, out: Path) -> list[Path]:
    """``item_embeddings.parquet`` (item_id, embedding), the same table as ``item_embeddings.npy``, and
    ``user_embeddings.parquet`` (user_id, embedding): each known user's query vector after their stored history."""
    emb = recommender.item_embeddings()  # (N, D)

    def save_npy(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, emb)

    users, queries = recommender.user_embeddings()  # (U,), (U, D)
    return [_write_vectors(out / "item_embeddings.parquet", "item_id", recommender.raw_item_ids[1:], emb),
            write_atomically(out / "item_embeddings.npy", save_npy),
            _write_vectors(out / "user_embeddings.parquet", "user_id", users, queries)]


def _write_vectors(path: Path, key: str, ids: np.ndarray, vectors: np.ndarray) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
    values = np.asarray(ids).tolist()
    if len({type(v) for v in values}) > 1:  # integer ids of training beside string ids of items added since
        values = [str(v) for v in values]
    table = pa.table({key: pa.array(values),
                      "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
    return write_atomically(path, lambda p: pq.write_table(table, p))


def export_onnx(module: SeqRecModule, path: Path, top_k: int = 0) -> Path:
    """The scorer as ONNX with dynamic batch and sequence dimensions (see ``Scorer`` for inputs and outputs)."""
    message = onnx_extra_missing()
    if message is not None:
        raise ImportError(message)
    scorer = Scorer(module, top_k).eval()
    max_len = int(module.hparams.max_len)
    example = torch.ones(2, max_len, dtype=torch.long)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", min=1)
    inputs: dict[str, torch.Tensor] = {"inputs": example}
    shapes: dict[str, dict[int, Any] | None] = {"inputs": {0: batch, 1: seq}}
    if scorer.time:
        inputs["time_inputs"] = torch.ones(2, max_len, dtype=torch.long)
        shapes["time_inputs"] = {0: batch, 1: seq}
    outputs = ["query", "scores"]
    if top_k:
        inputs["allowed"] = torch.ones(int(module.hparams.num_items) + 1, dtype=torch.bool)
        shapes["allowed"] = None  # static: one entry per item
        outputs += ["top_items", "top_scores"]

    def write(p: Path) -> None:
        with warnings.catch_warnings():
            # inputs and time_inputs share their axes on purpose; the exporter says so once per axis.
            warnings.filterwarnings("ignore", message=r".*axis name: .* shares the same shape constraints")
            torch.onnx.export(scorer, (), str(p), kwargs=inputs, input_names=list(inputs), output_names=outputs,
                              dynamic_shapes=shapes, dynamo=True, external_data=False, verbose=False)

    return write_atomically(path, write)


def export(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    onnx: bool | None = None,
    top_k: int = 0,
    allow: str | os.PathLike[str] | None = None,
    new_items: str | os.PathLike[str] | None = None,
    new_item_boost: float | None = None,
) -> list[Path]:
    """Writes the embeddings, the ONNX scorer and ``export.json`` describing them into ``out``; returns the paths.

    Parameters
    ----------
    onnx : bool or None
        Write ``scorer.onnx``: True requires the export extra (``ImportError`` before anything is written
        without it), None writes it when the extra is installed and otherwise records in ``export.json`` that
        it was skipped and why, False never writes it.
    top_k : int
        With K > 0 the scorer also outputs the top K items (``Scorer``) and takes the ``allowed`` mask.
    allow : path or None
        An allow-list, one raw item id per line: ``allowed_items.npy`` ((N + 1,) bool, the scorer's ``allowed``
        input) allows only those. Without it, but with ``top_k``, it allows every item.
    new_items : path or None
        A feature file of items that were not in training (``Recommender.add_items``): they are exported
        beside the known ones, their vectors built from features alone.
    new_item_boost : float or None
        Replaces the checkpoint's ``model.new_item_boost``; with a boost the item table gains a last column
        (the boost for items without a trained ID, 0 for the others) and the user vectors a last coordinate 1.

    The files of one export are a set: they are made in a staging folder beside ``out`` and moved in only when
    every one is written, so a failure (a full disk) leaves the earlier export as it was; files of an earlier
    export that this one does not write (a scorer it skipped) are removed, and ``export.json`` comes last.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder; export writes several files into a folder")
    if top_k < 0:
        raise ValueError(f"--onnx-top-k must be positive, got {top_k}")
    if top_k and onnx is False:
        raise ValueError("--onnx-top-k puts the top-k in the ONNX scorer, which --no-onnx leaves out")
    missing = onnx_extra_missing() if onnx is not False else None
    if onnx and missing is not None:
        raise ImportError(missing)
    if new_items is not None and onnx is not False:
        if onnx or top_k:
            raise ValueError("--new-items exports embeddings only: the ONNX scorer holds the trained catalogue "
                             "(add --no-onnx, and score new items with the exported item table)")
        missing = "new items were added: the ONNX scorer holds the trained catalogue only"
    recommender = Recommender.from_checkpoint(checkpoint, new_item_boost=new_item_boost)
    if new_items is not None:
        recommender.add_items(new_items)
    module = recommender.module
    num_items = len(recommender.raw_item_ids) - 1
    if top_k > num_items:
        raise ValueError(f"--onnx-top-k {top_k} is more than the {num_items} items of the catalogue")
    allowed = None
    if allow is not None or top_k:
        ids = None if allow is None else read_item_ids(allow, recommender.raw_item_ids, "--allow")
        blocked = blocked_items(recommender.raw_item_ids, ids, None)
        allowed = np.arange(num_items + 1) != 0 if blocked is None else ~blocked
    staging = out.with_name(f".{out.name}.export.partial")
    shutil.rmtree(staging, ignore_errors=True)  # a killed export's leftovers
    staging.mkdir(parents=True)
    try:
        names = [p.name for p in export_embeddings(recommender, staging)]
        if allowed is not None:
            np.save(staging / "allowed_items.npy", allowed)
            names.append("allowed_items.npy")
        scorer: dict[str, Any] | None = None
        if onnx is not False and missing is None:
            names.append(export_onnx(module, staging / "scorer.onnx", top_k).name)
            scorer = _describe_scorer(module, top_k)
        meta = {
            "checkpoint": str(checkpoint),
            "architecture": module.hparams.architecture,
            "num_items": num_items,
            "max_len": int(module.hparams.max_len),
            "hidden_size": int(module.hparams.hidden_size),
            "new_item_boost": float(module.model.config.new_item_boost),
            "ids": "dense item ids 1..num_items: row i of item_embeddings is dense id i + 1, whose raw id is "
                   "item_embeddings.parquet's item_id",
            "user_embeddings": "each known user's query vector after their whole stored history: times "
                               "item_embeddings it scores every item as seqrec recommends",
            "scorer": scorer,
        }
        if allowed is not None:
            meta["allowed_items"] = (f"(num_items + 1,) bool by dense id, True where an item may be recommended "
                                     f"({'the allow-list ' + str(allow) if allow is not None else 'every item'})")
        if onnx is not False and missing is not None:
            meta["scorer_skipped"] = missing
        (staging / "export.json").write_text(json.dumps(meta, indent=2) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for name in ARTIFACTS[:-1]:  # not export.json, which is replaced last
            if name not in names:
                (out / name).unlink(missing_ok=True)
        for name in names:  # renames within one filesystem: each file whole; export.json, last, describes them
            os.replace(staging / name, out / name)
        os.replace(staging / "export.json", out / "export.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in (*names, "export.json")]


def _describe_scorer(module: SeqRecModule, top_k: int) -> dict[str, Any]:
    inputs = {"inputs": "(B, L) int64 dense item ids, oldest first, left-padded with 0; any L (the graph keeps "
                        "the most recent max_len)"}
    if module.hparams.num_time_buckets:
        inputs["time_inputs"] = "(B, L) int64 time-gap buckets aligned with inputs (0 on padding)"
    outputs = {"query": "(B, D) float32", "scores": "(B, num_items + 1) float32; column 0 is padding"}
    if top_k:
        inputs["allowed"] = "(num_items + 1,) bool: True where an item may be recommended (allowed_items.npy)"
        outputs["top_items"] = (f"(B, {top_k}) int64 dense ids, best first, never an item of the inputs or one "
                                "not allowed")
        outputs["top_scores"] = f"(B, {top_k}) float32; -inf where fewer items were left: drop those slots"
    return {"file": "scorer.onnx", "top_k": top_k, "inputs": inputs, "outputs": outputs}


def onnx_extra_missing() -> str | None:
    """None when the ONNX exporter can run, otherwise what is missing and how to install it."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError as e:
        return (f"the ONNX scorer needs onnx and onnxscript ({e}): {ONNX_EXTRA}, then export again "
                "(the embeddings need neither)")
    return None
