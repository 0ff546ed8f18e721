"""Exports of a trained model: the item embedding table for vector search, and an ONNX scorer for serving."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqrec.files import write_atomically
from seqrec.serve.recommend import Recommender
from seqrec.train.module import SeqRecModule


class Scorer(nn.Module):
    """Left-padded histories (B, max_len) of dense item ids -> query vectors (B, D) and item scores (B, N + 1).

    The scores are the query times the item table (column 0, padding, is meaningless); serving can use
    either output: ``scores`` directly, or ``query`` against the exported embeddings in a vector index.
    """

    def __init__(self, module: SeqRecModule):
        super().__init__()
        self.model = module.model

    def forward(self, inputs: torch.Tensor, time_inputs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        query = self.model.query(inputs, time_inputs)  # (B, D)
        return query, self.model.score_all(query)


def export_embeddings(recommender: Recommender, out: Path) -> list[Path]:
    """``item_embeddings.parquet`` (item_id, embedding) and the same table as ``item_embeddings.npy``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    emb = recommender.item_embeddings()  # (N, D)
    raw = recommender.raw_item_ids[1:]
    flat = pa.array(emb.reshape(-1), type=pa.float32())
    table = pa.table({
        "item_id": pa.array(raw.tolist()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, emb.shape[1]),
    })
    def save_npy(p: Path) -> None:
        with open(p, "wb") as f:
            np.save(f, emb)

    return [write_atomically(out / "item_embeddings.parquet", lambda p: pq.write_table(table, p)),
            write_atomically(out / "item_embeddings.npy", save_npy)]


def export_onnx(module: SeqRecModule, path: Path) -> Path:
    """The scorer as ONNX with a dynamic batch dimension; inputs are padded to ``max_len``."""
    _check_onnx_extra()
    scorer = Scorer(module).eval()
    max_len = int(module.hparams.max_len)
    example = torch.ones(2, max_len, dtype=torch.long)
    batch = torch.export.Dim("batch")
    args: tuple[torch.Tensor, ...] = (example,)
    names = ["inputs"]
    shapes: dict[str, dict[int, torch.export.Dim]] = {"inputs": {0: batch}}
    if module.hparams.num_time_buckets:
        args = (example, torch.ones(2, max_len, dtype=torch.long))
        names.append("time_inputs")
        shapes["time_inputs"] = {0: batch}
    return write_atomically(path, lambda p: torch.onnx.export(
        scorer, args, str(p), input_names=names, output_names=["query", "scores"], dynamic_shapes=shapes,
        dynamo=True, external_data=False, verbose=False))


def export(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str], onnx: bool = True) -> list[Path]:
    """Writes the embeddings, the ONNX scorer (optional) and ``export.json`` describing them into ``out``.

    All or nothing: the files are made in a staging folder beside ``out`` and moved in only when every one
    is written, so a failure (a missing extra, a full disk) never leaves a mixed set of old and new files.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder; export writes several files into a folder")
    if onnx:
        _check_onnx_extra()
    recommender = Recommender.from_checkpoint(checkpoint)
    module = recommender.module
    staging = out.with_name(f".{out.name}.export.partial")
    shutil.rmtree(staging, ignore_errors=True)  # a killed export's leftovers
    staging.mkdir(parents=True)
    try:
        names = [p.name for p in export_embeddings(recommender, staging)]
        if onnx:
            names.append(export_onnx(module, staging / "scorer.onnx").name)
        meta = {
            "checkpoint": str(checkpoint),
            "architecture": module.hparams.architecture,
            "num_items": int(module.hparams.num_items),
            "max_len": int(module.hparams.max_len),
            "hidden_size": int(module.hparams.hidden_size),
            "inputs": "dense item ids 1..num_items, left-padded with 0 to max_len; row i of item_embeddings is "
                      "dense id i + 1, whose raw id is item_embeddings.parquet's item_id",
        }
        (staging / "export.json").write_text(json.dumps(meta, indent=2))
        names.append("export.json")
        out.mkdir(parents=True, exist_ok=True)
        for name in names:  # renames within one filesystem: each file whole
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in names]


def _check_onnx_extra() -> None:
    try:
        import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)
    except ImportError:
        raise ImportError("ONNX export needs onnx and onnxscript: pip install 'seqrec[export]' "
                          "(or export the embeddings alone with onnx=False / --no-onnx)") from None
