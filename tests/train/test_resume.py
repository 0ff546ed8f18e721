"""Faults: a stopped run resumes to the same result; checkpoints and outputs are never left half written."""

from pathlib import Path

import pytest
import torch
from conftest import ROOT  # noqa: E402
from seqrec.cli import run


def base(tiny: list[str], root: Path) -> list[str]:
    return ["--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, f"--trainer.default_root_dir={root}",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--test_after_fit=false",
            "--trainer.callbacks.patience=100"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty")  # the resumed run's own
def test_stopped_and_resumed_run_ends_like_an_uninterrupted_one(tiny: list[str], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from seqrec.train.module import SeqRecModule

    # Every run re-seeds and every epoch's batches depend only on data.seed, so a resume that ignored the
    # checkpoint and trained from scratch would end with the same weights: record the steps each run trains.
    steps: list[tuple[int, int]] = []

    def record(self, batch, batch_idx: int) -> None:  # noqa: ANN001 - Lightning's hook
        steps.append((self.trainer.current_epoch, self.trainer.global_step))

    monkeypatch.setattr(SeqRecModule, "on_train_batch_start", record)
    whole = run(["fit", *base(tiny, tmp_path / "whole"), "--trainer.max_epochs=4"])
    whole_steps, steps[:] = list(steps), []
    first = run(["fit", *base(tiny, tmp_path / "parts"), "--trainer.max_epochs=2"])
    last = tmp_path / "parts" / "last.ckpt"
    first.trainer.save_checkpoint(last)  # what a stop (max_time, a signal, a crash after a save) leaves
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert (saved["epoch"], saved["global_step"]) == (2, first.trainer.global_step) and saved["global_step"] > 0
    steps[:] = []
    torch.manual_seed(12345)  # whatever the new process's generator holds, the checkpoint's state wins
    resumed = run(["fit", *base(tiny, tmp_path / "parts"), "--trainer.max_epochs=4", f"--ckpt_path={last}"])
    # The resumed run trains only epochs 2 and 3, starting at the checkpoint's step: exactly the steps the
    # uninterrupted run took after it.
    assert steps[0] == (2, saved["global_step"])
    assert steps == [(e, s) for e, s in whole_steps if e >= 2]
    assert resumed.trainer.current_epoch == 4 and resumed.trainer.global_step == whole.trainer.global_step
    assert resumed.model.results["val"] == pytest.approx(whole.model.results["val"], abs=1e-9)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_a_checkpoint_write_that_fails_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Lightning writes checkpoints through an fsspec transaction: a temporary file, moved in on success.
    import fsspec.implementations.local as local
    from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

    path = tmp_path / "ckpts" / "epoch=1.ckpt"
    TorchCheckpointIO().save_checkpoint({"state": torch.arange(10)}, path)
    good = path.read_bytes()

    def broken_write(self, data):  # noqa: ANN001 - fsspec's signature
        raise OSError("disk full")

    monkeypatch.setattr(local.LocalFileOpener, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        TorchCheckpointIO().save_checkpoint({"state": torch.arange(99)}, path)
    assert path.read_bytes() == good  # the previous checkpoint is intact
    fresh = tmp_path / "ckpts" / "epoch=2.ckpt"
    with pytest.raises(OSError, match="disk full"):
        TorchCheckpointIO().save_checkpoint({"state": torch.arange(99)}, fresh)
    assert not fresh.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["epoch=1.ckpt"]  # no stray temporary files


def test_a_non_finite_loss_stops_training_naming_the_step(tmp_path: Path) -> None:
    import pytorch_lightning as pl
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec
    from seqrec.train.module import SeqRecModule

    class Poison(pl.Callback):  # what a diverging run looks like: the weights go to NaN mid-epoch
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
            if trainer.global_step == 3:
                with torch.no_grad():
                    pl_module.model.encoder.item_emb.weight.fill_(float("nan"))

    dm = SeqRecDataModule(synthetic=SyntheticSpec(num_users=200, num_items=80, num_clusters=4), max_len=8,
                          batch_size=16)
    model = SeqRecModule(num_items=dm.num_items, max_len=8, hidden_size=8)
    trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[Poison()], default_root_dir=tmp_path,
                         num_sanity_val_steps=0)
    with pytest.raises(FloatingPointError, match="loss is nan at global step 3"):
        trainer.fit(model, datamodule=dm)


def test_seqrec_checkpoints_are_renamed_into_place_within_their_folder(tmp_path: Path, monkeypatch) -> None:
    """A write that fails midway (disk full) leaves the previous checkpoint whole and no partial file, and the
    temporary file lives beside the checkpoint (a rename, never a copy across filesystems)."""
    from seqrec.train.checkpoint_io import AtomicCheckpointIO

    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"state": torch.arange(10)}, path)
    good = path.read_bytes()
    seen = []
    real_save = torch.save

    def full_disk(obj, f, *a, **k):  # writes half, then fails
        seen.append(Path(f))
        real_save(obj, f, *a, **k)
        Path(f).write_bytes(Path(f).read_bytes()[:20])
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state": torch.arange(99)}, path)
    assert seen[0].parent == path.parent and seen[0] != path
    assert path.read_bytes() == good
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_the_cli_trains_with_atomic_checkpoints(tiny: list[str], tmp_path: Path) -> None:
    from seqrec.train.checkpoint_io import AtomicCheckpointIO

    cli = run(["fit", *base(tiny, tmp_path), "--trainer.max_epochs=1", "--test_after_fit=false"])
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert (tmp_path / "best.ckpt").exists()


def test_a_truncated_checkpoint_is_named_on_load(tmp_path: Path) -> None:
    import torch
    from seqrec.train.checkpoint_io import AtomicCheckpointIO

    path = tmp_path / "epoch=3.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}}, path)
    assert AtomicCheckpointIO().load_checkpoint(path)["state_dict"]["w"].sum() == 1000
    path.write_bytes(path.read_bytes()[:500])  # what a full disk under Lightning's own writer leaves
    with pytest.raises(ValueError, match=r"epoch=3\.ckpt: not a readable checkpoint \(RuntimeError"):
        AtomicCheckpointIO().load_checkpoint(path)
