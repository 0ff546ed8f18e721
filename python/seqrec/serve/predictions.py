"""Writing ``seqrec predict``'s recommendations: a callback that collects each batch's top-k and writes a table."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch


class RecommendationWriter(pl.Callback):
    """Writes the top-k of ``seqrec predict`` to CSV or parquet: user_id, rank, item_id, score (raw ids).

    Parameters
    ----------
    output : str
        A ``.csv`` or ``.parquet`` path. How many per user is the model's ``predict_k``.
    """

    def __init__(self, output: str):
        self.output = output
        self._parts: list[dict[str, torch.Tensor]] = []

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._parts = []

    def on_predict_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._parts.append({name: v.cpu() for name, v in outputs.items()})

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from seqrec.serve.recommend import recommendation_rows, write_table

        if not trainer.is_global_zero:  # every rank predicted every user; one writes
            return

        info = pl_module.dataset  # the data module's description, attached to the model at setup
        if info is None:
            raise ValueError("predict needs the data module's dataset description (use SeqRecDataModule)")
        users = torch.cat([p["users"] for p in self._parts]).numpy()
        items = torch.cat([p["items"] for p in self._parts]).numpy()
        scores = torch.cat([p["scores"] for p in self._parts]).numpy()
        path = write_table(recommendation_rows(info.raw_user_ids[users], info.raw_item_ids, items, scores), self.output)
        print(f"wrote top-{items.shape[1]} recommendations of {users.size} users to {path}")
