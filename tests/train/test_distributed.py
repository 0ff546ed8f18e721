"""Data-parallel training on Lightning's DDP (two CPU processes, gloo): the metrics equal one process's."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT  # noqa: E402


def seqrec(tiny: list[str], command: str, *args: str) -> str:
    # The config first: later arguments override it.
    cmd = [sys.executable, "-m", "seqrec.cli", command, "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny,
           "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.accelerator=cpu", *args]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.mark.slow
def test_two_process_ddp_fit_and_test_equal_one_process(tiny: list[str], tmp_path: Path) -> None:
    ddp = tmp_path / "ddp"
    out = seqrec(tiny, "fit", f"--trainer.default_root_dir={ddp}", "--trainer.strategy=ddp", "--trainer.devices=2",
                 "--trainer.max_epochs=2")
    assert (ddp / "test_results.json").exists(), out[-3000:]
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
