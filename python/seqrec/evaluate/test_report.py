"""What a test pass reports beyond its logged metrics: tables, per-user rows, intervals, sample recommendations.

Kept out of the LightningModule, which only computes metrics: this callback collects the per-user rows that
``SeqRecModule.test_step`` returns, then prints the results table and the summary, writes
``test_results.json`` and ``test_per_user.parquet`` (with ``train_item_counts.npy``) into the run folder, and
logs a table of sample recommendations to the loggers that take tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from seqrec.evaluate.per_user import COLD_ITEMS, format_summary, summarize, write_per_user
from seqrec.evaluate.tables import format_results
from seqrec.files import write_atomically


class TestReport(pl.Callback):
    """Reports each test pass of a ``SeqRecModule`` (the CLI adds it to ``fit`` and ``test``).

    Parameters
    ----------
    sample_users : int
        Test users whose top-10 (seen items excluded) go into the ``test/recommendations`` table.
    """

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, sample_users: int = 8):
        self.sample_users = sample_users
        self._rows: list[dict[str, torch.Tensor]] = []
        self._sample: tuple[torch.Tensor, ...] | None = None
        self.summary: dict[str, Any] | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._rows, self._sample, self.summary = [], None, None

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if isinstance(outputs, dict):
            self._rows.append(outputs)
        if batch_idx == 0:
            self._sample = self._sample_recommendations(pl_module, batch)

    def _sample_recommendations(self, pl_module: Any, batch: dict[str, torch.Tensor], k: int = 10) -> tuple:
        n = self.sample_users
        part = {name: v[:n] for name, v in batch.items() if name not in ("history_rows", "history_items")}
        keep = batch["history_rows"] < n
        part["history_rows"], part["history_items"] = batch["history_rows"][keep], batch["history_items"][keep]
        with torch.no_grad():
            top = pl_module.top_k(part, k)[1]
        return part["users"].cpu(), part["inputs"].cpu(), part["targets"].cpu(), top.cpu()

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        results = pl_module.results.get("test")
        if not results:
            return
        ks = pl_module.ks
        pl_module.print(format_results(results, ks, pl_module.describe_eval()))
        if not trainer.is_global_zero:
            return
        root = Path(trainer.default_root_dir)
        protocol = pl_module.describe_eval()
        # What makes two runs comparable user by user (seqrec compare checks it).
        dataset = {key: protocol[key] for key in ("dataset", "split", "items", "users")}
        record: dict[str, Any] = {"users": pl_module.evaluated["test"], "world_size": trainer.world_size,
                                  "dataset": dataset, "metrics": results}
        self.summary = self._analyse(trainer, pl_module, root)
        if self.summary is not None:
            record.update(self.summary)
            pl_module.print(format_summary(self.summary, max(ks)))
        write_atomically(root / "test_results.json",
                         lambda p: p.write_text(json.dumps(record, indent=2, default=float) + "\n"))
        self._log_recommendations(trainer, pl_module)

    def _analyse(self, trainer: pl.Trainer, pl_module: Any, root: Path) -> dict[str, Any] | None:
        """Per-user rows to ``test_per_user.parquet``; intervals, beyond-accuracy metrics and slices from them.

        One process only (under DDP each rank holds its own users) and only when scores were whole (not
        chunked); otherwise None.
        """
        if not self._rows or trainer.world_size > 1:
            return None
        rows = {name: torch.cat([part[name] for part in self._rows]).numpy() for name in self._rows[0]}
        info = pl_module.dataset
        rows["user"] = info.raw_user_ids[rows["user_index"]] if info is not None else rows["user_index"]
        write_per_user(rows, root)
        counts = pl_module.popularity.cpu().numpy()
        np.save(root / "train_item_counts.npy", counts.astype(np.int64))  # what the report's plots need
        withheld = info.extra.get("cold_items") if info is not None else None
        cold_items = np.asarray(withheld if withheld else [], dtype=np.int64)
        if cold_items.size:
            np.save(root / COLD_ITEMS, cold_items)  # the report's exposure of withheld items needs them
        summary = summarize(rows, counts, pl_module.ks, cold_items=cold_items if cold_items.size else None)
        k = max(pl_module.ks)
        metrics = {f"test/{name}@{k}": float(v) for name, v in summary["beyond_accuracy"]["model"].items()}
        for logger in trainer.loggers:  # self.log is not allowed after the test epoch
            logger.log_metrics(metrics, step=trainer.global_step)
        return summary

    def _log_recommendations(self, trainer: pl.Trainer, pl_module: Any) -> None:
        info = pl_module.dataset
        if self._sample is None or info is None:
            return
        raw_users, raw_items = info.raw_user_ids, info.raw_item_ids
        users, inputs, targets, top = self._sample
        rows = []
        for u, seq, target, rec in zip(users.tolist(), inputs.tolist(), targets.tolist(), top.tolist()):
            recent = [str(raw_items[i]) for i in seq if i != 0][-5:]
            rows.append([str(raw_users[u]), " ".join(recent), str(raw_items[target]),
                         " ".join(str(raw_items[i]) for i in rec)])
        for logger in trainer.loggers:
            if hasattr(logger, "log_table"):
                logger.log_table("test/recommendations", columns=["user", "recent items", "next item", "top-10"],
                                 data=rows)
