import statistics
import time

import pytest
import pytorch_lightning as pl
import torch
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.source import SyntheticSpec
from seqrec.train.callbacks import ThroughputMonitor
from seqrec.train.module import SeqRecModule
from torch.utils.data import DataLoader


def test_throughput_monitor_counts_tokens_and_waits(tmp_path) -> None:
    dm = SeqRecDataModule(synthetic=SyntheticSpec(num_users=300, num_items=60, num_clusters=3, mean_length=10.0),
                          max_len=12, batch_size=16, length_bucketing=False)
    model = SeqRecModule(num_items=dm.num_items, max_len=12, hidden_size=8)
    monitor = ThroughputMonitor(skip_first=1)
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                         default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    s = monitor.summary
    assert 0.0 <= s["data_wait_fraction"] < 1.0 and 0.0 <= s["loop_overhead_fraction"] < 1.0
    assert dm.train_batches is not None and dm.train_batches.fetch_seconds > 0
    assert s["tokens_per_s"] > 0 and s["steps_per_s"] > 0
    assert s["sequences_per_s"] == pytest.approx(s["steps_per_s"] * 16, rel=0.2)  # full batches of 16
    # With fixed padding to 12, the padding share is exactly what the batches hold.
    batches = list(dm.train_dataloader())[1:]
    real = sum(int((b["inputs"] != 0).sum()) for b in batches)
    total = sum(b["inputs"].numel() for b in batches)
    assert abs(s["padding_fraction"] - (1 - real / total)) < 0.1
    assert "train/data_wait_fraction" in trainer.callback_metrics


# A monitor stuck at 0 (or at 1) would pass the range checks above: these inject a known wait. Loading
# sleeps SLEEP per batch and a step takes STEP, so about SLEEP / (SLEEP + STEP) = 0.75 of the time is
# waiting. The tests time the wait themselves, and the monitor must agree within TOLERANCE (absolute; on
# the loaded 2-core machine they differed by 0.01 or less).
SLEEP, STEP, BATCHES, TOLERANCE = 0.03, 0.01, 30, 0.05


class _SleepyBatches(torch.utils.data.IterableDataset):
    """BATCHES tiny batches, each after a sleep of SLEEP seconds; ``slept`` holds how long each sleep took."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def __iter__(self):
        for _ in range(BATCHES):
            start = time.perf_counter()
            time.sleep(SLEEP)
            self.slept.append(time.perf_counter() - start)
            yield {"inputs": torch.ones(4, 8, dtype=torch.long)}


class _SleepyStep(pl.LightningModule):
    """A trivially cheap model whose step takes STEP seconds; ``steps`` holds when each began and ended."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.steps: list[tuple[float, float]] = []

    def training_step(self, batch, batch_idx):
        start = time.perf_counter()
        time.sleep(STEP)
        loss = (self.weight - batch["inputs"].float().mean()).pow(2)
        self.steps.append((start, time.perf_counter()))
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(model, monitor, tmp_path, **data) -> None:
    trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                         default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(model, **data)


def test_throughput_monitor_measures_an_injected_data_wait(tmp_path) -> None:
    loader_data, model = _SleepyBatches(), _SleepyStep()
    skip = 2
    monitor = ThroughputMonitor(skip_first=skip)
    _fit(model, monitor, tmp_path, train_dataloaders=DataLoader(loader_data, batch_size=None))
    s = monitor.summary
    # Without seqrec's data module the whole gap between steps counts as data wait, nothing as loop
    # overhead: at least the loader's sleeps, at most the time outside training_step (the trainer's own
    # work between steps, which a busy machine stretches, falls in between).
    per_s = s["steps_per_s"]  # counted steps per second of the wall time the monitor saw
    slept = per_s * statistics.mean(loader_data.slept[skip:])
    stepped = per_s * statistics.mean(end - start for start, end in model.steps[skip:])
    assert slept - TOLERANCE <= s["data_wait_fraction"] <= 1 - stepped + TOLERANCE
    assert slept > 0.5 and s["loop_overhead_fraction"] == 0.0


class _SleepyBuilder:
    """The data module's native builder, whose epochs sleep SLEEP before handing out each batch; ``waited``
    holds each whole fetch as the consumer saw it (the wait for the engine's thread included)."""

    def __init__(self, builder) -> None:
        self.builder = builder
        self.waited: list[float] = []

    def __getattr__(self, name):
        return getattr(self.builder, name)

    def epoch(self, *args, **kwargs):
        batches = iter(self.builder.epoch(*args, **kwargs))
        while True:
            start = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                return
            time.sleep(SLEEP)
            self.waited.append(time.perf_counter() - start)
            yield batch


def test_throughput_monitor_measures_an_injected_wait_in_seqrecs_batches(tmp_path, monkeypatch) -> None:
    # With seqrec's data module the wait is timed inside the batch iterator (TrainBatches.fetch_seconds),
    # apart from the trainer's own time between steps.
    dm = SeqRecDataModule(synthetic=SyntheticSpec(num_users=16 * BATCHES, num_items=60, num_clusters=3,
                                                  mean_length=10.0),
                          max_len=12, batch_size=16, length_bucketing=False, prefetch=1)
    sleepy = _SleepyBuilder(dm.batch_builder())
    monkeypatch.setattr(dm, "batch_builder", lambda: sleepy)
    model = SeqRecModule(num_items=dm.num_items, max_len=12, hidden_size=8)
    monitor = ThroughputMonitor(skip_first=2)
    _fit(model, monitor, tmp_path, datamodule=dm)
    s = monitor.summary
    assert len(sleepy.waited) == BATCHES
    # Beside the sleep, a fetch waits for the engine's thread (milliseconds when the machine is busy).
    waited = s["steps_per_s"] * statistics.mean(sleepy.waited)
    assert s["data_wait_fraction"] == pytest.approx(waited, abs=TOLERANCE)
    assert s["data_wait_fraction"] > 0.5  # the sleep is most of each step: a tiny model's step is a few ms
