import pytest
import pytorch_lightning as pl
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.source import SyntheticSpec
from seqrec.train.callbacks import ThroughputMonitor
from seqrec.train.module import SeqRecModule


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
