"""Training callbacks: throughput and the share of time spent waiting for data; quality against training time."""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
import torch


class ThroughputMonitor(pl.Callback):
    """Measures, per training epoch, what the model processed and how long it waited for batches.

    Between two steps the trainer fetches the next batch and runs its own hooks. With seqrec's data module
    the fetch is timed inside the batch iterator itself, so ``train/data_wait_fraction`` is the share of
    wall time spent waiting for data and ``train/loop_overhead_fraction`` the rest of the time between
    steps; with any other data module the whole gap counts as data wait (an upper bound). Also logged:
    ``train/tokens_per_s`` (non-padding input positions per second of wall time), ``train/steps_per_s``,
    ``train/sequences_per_s`` and ``train/padding_fraction``; the last epoch's figures stay in ``summary``.

    Parameters
    ----------
    skip_first : int
        Steps at the start of each epoch left out of the figures (warm-up, first batch of the epoch).
    """

    def __init__(self, skip_first: int = 2):
        self.skip_first = skip_first
        self.summary: dict[str, float] = {}
        self._reset()

    def _reset(self) -> None:
        self._wait = self._busy = 0.0
        self._tokens = self._positions = self._sequences = self._steps = 0
        self._last_end: float | None = None
        self._start = 0.0
        self._index = 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()
        self._last_end = time.perf_counter()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._index >= self.skip_first and self._last_end is not None:
            self._wait += now - self._last_end
        self._start = now

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if isinstance(batch, dict) and "inputs" in batch and batch["inputs"].device.type == "cuda":
            torch.cuda.synchronize()  # time the step itself, not its queueing
        now = time.perf_counter()
        if self._index >= self.skip_first:
            self._busy += now - self._start
            inputs = batch["inputs"]
            self._tokens += int((inputs != 0).sum())
            self._positions += inputs.numel()
            self._sequences += inputs.shape[0]
            self._steps += 1
        self._last_end = now
        self._index += 1

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        total = self._wait + self._busy
        if self._steps == 0 or total <= 0:
            return
        batches = getattr(getattr(trainer, "datamodule", None), "train_batches", None)
        fetch = getattr(batches, "fetch_seconds", None)
        if fetch is None:
            fetch = self._wait
        else:
            # The iterator timed every fetch, the skipped warm-up steps too: scale to the steps counted.
            fetch *= self._steps / max(self._index, 1)
        self.summary = {
            "data_wait_fraction": min(fetch, self._wait) / total,
            "loop_overhead_fraction": max(self._wait - fetch, 0.0) / total,
            "tokens_per_s": self._tokens / total,
            "sequences_per_s": self._sequences / total,
            "steps_per_s": self._steps / total,
            "padding_fraction": 1.0 - self._tokens / max(self._positions, 1),
        }
        for name, value in self.summary.items():
            pl_module.log(f"train/{name}", value)


class TrainingClock(pl.Callback):
    """Validation quality against training time: ``curve`` holds (epoch, training seconds, monitored value).

    Training seconds are the wall time of the training epochs alone (each from its start to the start of
    its validation, or to its end), so evaluation never counts; they are logged as ``train/seconds``.

    Parameters
    ----------
    monitor : str
        The logged validation metric to record at each validation.
    """

    def __init__(self, monitor: str = "val/ndcg@10"):
        self.monitor = monitor
        self.seconds = 0.0
        self.curve: list[tuple[int, float, float]] = []
        self.steps: list[int] = []  # training batches of each epoch
        self._start: float | None = None
        self._batches = 0

    def _stop(self) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._batches = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._batches += 1

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._stop()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.curve.append((int(trainer.current_epoch) + 1, self.seconds, float(value)))
        for logger in trainer.loggers:  # self.log is not allowed in this hook
            logger.log_metrics({"train/seconds": self.seconds}, step=trainer.global_step)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()
        self.steps.append(self._batches)
