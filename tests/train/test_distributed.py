"""Data-parallel training on Lightning's DDP (two CPU processes, gloo): each rank trains its own share of every
epoch, and the metrics equal one process's."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
from conftest import ROOT  # noqa: E402

HERE = Path(__file__).resolve().parent


class RecordTrainingBatches(pl.Callback):
    """Writes the (user, end) segments this rank trained on, per epoch, to
    ``<default_root_dir>/train_batches.rank<r>.json`` (the DDP test adds it with ``--trainer.callbacks+=``)."""

    def __init__(self) -> None:
        self.epochs: dict[int, list[list[int]]] = {}

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:  # noqa: ANN001
        rows = self.epochs.setdefault(trainer.current_epoch, [])
        rows.append([[int(u), int(e)] for u, e in zip(batch["users"].tolist(), batch["ends"].tolist())])

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = {"rank": trainer.global_rank, "world": trainer.world_size, "epochs": self.epochs}
        Path(trainer.default_root_dir, f"train_batches.rank{trainer.global_rank}.json").write_text(json.dumps(out))


def seqrec(tiny: list[str], command: str, *args: str) -> str:
    # The config first: later arguments override it.
    cmd = [sys.executable, "-m", "seqrec.cli", command, "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny,
           "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu", *args]
    # This folder (and conftest's) importable, for RecordTrainingBatches.
    path = os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.mark.slow
def test_two_process_ddp_fit_and_test_equal_one_process(tiny: list[str], tmp_path: Path) -> None:
    ddp = tmp_path / "ddp"
    # 300 users in batches of exactly 50: six batches per epoch, three per rank, none left out.
    out = seqrec(tiny, "fit", f"--trainer.default_root_dir={ddp}", "--trainer.strategy=ddp", "--trainer.devices=2",
                 "--trainer.max_epochs=2", "--data.batch_size=50", "--data.batch_tokens=0",
                 "--trainer.callbacks+=test_distributed.RecordTrainingBatches")
    assert (ddp / "test_results.json").exists(), out[-3000:]
    ranks = [json.loads((ddp / f"train_batches.rank{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["world"]) for r in ranks] == [(0, 2), (1, 2)]
    everyone = expected_segments(300, 120, 6, 12.0)  # the tiny settings
    assert len(everyone) == 300
    for epoch in ("0", "1"):
        batches = [r["epochs"][epoch] for r in ranks]
        assert len(batches[0]) == len(batches[1]) == 3  # DDP steps in lockstep
        shares = [[tuple(s) for b in bs for s in b] for bs in batches]
        assert_disjoint_cover(shares, everyone)
    first, second = ({tuple(s) for b in ranks[0]["epochs"][epoch] for s in b} for epoch in ("0", "1"))
    assert first != second  # each epoch reshuffles which segments a rank gets
    two = json.loads((ddp / "test_results.json").read_text())
    assert two["world_size"] == 2
    assert two["users"] == 300  # every user evaluated exactly once across the two ranks
    one_root = tmp_path / "one"
    seqrec(tiny, "test", f"--trainer.default_root_dir={one_root}", "--trainer.devices=1",
           f"--ckpt_path={(ddp / 'best.ckpt').resolve()}")
    one = json.loads((one_root / "test_results.json").read_text())
    assert one["world_size"] == 1 and one["users"] == 300
    assert one["metrics"].keys() == two["metrics"].keys()
    for name, value in one["metrics"].items():
        assert two["metrics"][name] == pytest.approx(value, abs=1e-6), name


def test_ranks_draw_disjoint_equal_shares_of_each_epoch() -> None:
    import numpy as np
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec

    dm = SeqRecDataModule(synthetic=SyntheticSpec(num_users=500, num_items=150, num_clusters=5), max_len=10,
                          batch_size=16, seed=3)
    builder = dm.batch_builder()
    users, ends = builder.segments(np.arange(500, dtype=np.int64))
    everything = builder.num_batches(users, ends, 16, 3, 0)
    shares = []
    for rank in range(3):
        batches = list(builder.epoch(users, ends, 16, 3, 1, rank=rank, world=3))
        assert len(batches) == everything // 3 == builder.num_batches(users, ends, 16, 3, 1, rank=rank, world=3)
        shares.append({(int(u), int(e)) for b in batches for u, e in zip(b["users"], b["ends"])})
    assert not (shares[0] & shares[1]) and not (shares[0] & shares[2]) and not (shares[1] & shares[2])
    assert sum(map(len, shares)) >= 500 - 2 * 16 * 2  # at most world - 1 batches are left out
    again = list(builder.epoch(users, ends, 16, 3, 1, rank=1, world=3))
    assert {(int(u), int(e)) for b in again for u, e in zip(b["users"], b["ends"])} == shares[1]  # seeded
    with pytest.raises(ValueError, match="rank 3 must lie in 0..world"):
        builder.epoch(users, ends, 16, 3, 1, rank=3, world=3)


def expected_segments(num_users: int, num_items: int, num_clusters: int, mean_length: float) -> list[tuple[int, int]]:
    """Every user's training sequence of that synthetic dataset as a (user, end) segment, from the
    leave-one-out split itself: one per user with at least two training items (a SASRec target needs an
    input before it)."""
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec

    dm = SeqRecDataModule(synthetic=SyntheticSpec(num_users=num_users, num_items=num_items, num_clusters=num_clusters,
                                                  mean_length=mean_length))
    lengths = np.diff(dm.split.train_offsets)
    return [(u, int(n)) for u, n in enumerate(lengths) if n >= 2]


def assert_disjoint_cover(shares: list[list[tuple[int, int]]], everyone: list[tuple[int, int]]) -> None:
    """The ranks' segments of one epoch are pairwise disjoint and together hold every segment exactly once."""
    together = [s for share in shares for s in share]
    assert len(together) == len(set(together)), "a segment was trained twice in one epoch"
    assert sorted(together) == sorted(everyone)


@pytest.mark.parametrize("world", [2, 3])
def test_the_data_module_gives_each_rank_a_disjoint_share_that_covers_the_epoch(world: int) -> None:
    """What Lightning does on each DDP rank: the data module is attached to a trainer of that global rank and
    world size, and its train_dataloader is iterated once per epoch (the trainer's current_epoch)."""
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec

    spec = SyntheticSpec(num_users=480, num_items=150, num_clusters=5, mean_length=10.0)
    everyone = expected_segments(480, 150, 5, 10.0)
    assert len(everyone) == 480
    # batch_tokens=0: batches of exactly 40 sequences, twelve per epoch, which 2 and 3 ranks share evenly.
    per_rank: list[dict[int, list[list[tuple[int, int]]]]] = []
    for rank in range(world):
        dm = SeqRecDataModule(synthetic=spec, max_len=10, batch_size=40, batch_tokens=0, seed=3)  # one per process
        dm.trainer = trainer = SimpleNamespace(global_rank=rank, world_size=world, current_epoch=0)
        loader = dm.train_dataloader()  # once per fit, as Lightning asks for it
        epochs = {}
        for epoch in range(2):
            trainer.current_epoch = epoch
            epochs[epoch] = [list(zip(b["users"].tolist(), b["ends"].tolist())) for b in loader]
        per_rank.append(epochs)
    for epoch in range(2):
        assert [len(r[epoch]) for r in per_rank] == [12 // world] * world  # lockstep: equal batch counts
        assert_disjoint_cover([[s for b in r[epoch] for s in b] for r in per_rank], everyone)
    shares = [{s for b in per_rank[0][epoch] for s in b} for epoch in range(2)]
    assert shares[0] != shares[1]  # each epoch reshuffles which segments a rank gets
