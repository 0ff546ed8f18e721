"""``seqrec predict`` and ``seqrec test`` from a checkpoint alone, and recommendations streamed to disk per rank."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ROOT  # noqa: E402
from seqrec.cli import run
from seqrec.serve.predictions import RecommendationWriter, join_parts, part_name
from seqrec.serve.recommend import Recommender

QUIET = ["--trainer.logger=false", "--trainer.enable_progress_bar=false"]
# Data arguments away from their defaults, so that a data module built from the checkpoint shows it used them.
DATA = ["--data.path=data/events.csv", "--data.columns=[user, item, ts]", "--data.max_len=20", "--data.seed=3",
        "--data.sampled_eval=uniform", "--data.num_sampled=20"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A model fitted in its own folder on a CSV named by a relative path (string ids, renamed columns)."""
    home = tmp_path_factory.mktemp("fit")
    (home / "data").mkdir()
    rows = [f"u{u},i{(u * 7 + 3 * t) % 40},{t}" for u in range(60) for t in range(8)]
    (home / "data" / "events.csv").write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: conftest's per-test settings have not run yet
        mp.setattr("sys.argv", ["seqrec"])
        mp.setenv("WANDB_MODE", "disabled")
        mp.chdir(home)
        cli = run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *DATA, "--model.hidden_size=16",
                   "--trainer.max_epochs=2", "--trainer.default_root_dir=run", *QUIET])
    return SimpleNamespace(home=home, ckpt=(home / "run" / "best.ckpt").resolve(), data=home / "data" / "events.csv",
                           results=cli.model.results["test"], num_items=cli.datamodule.num_items)


@pytest.mark.slow
def test_predict_and_test_from_the_checkpoint_alone_in_another_folder(
        trained: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # data/events.csv is not here: only the checkpoint's absolute path finds it
    cli = run(["predict", f"--ckpt_path={trained.ckpt}", "--predict_output=recs.csv", *QUIET])
    assert cli.datamodule.path == str(trained.data) and cli.datamodule.columns == ("user", "item", "ts")
    table = pacsv.read_csv("recs.csv").to_pydict()
    expected = Recommender.from_checkpoint(trained.ckpt).recommend(k=10)  # from this folder too
    assert table["user_id"] == expected["user_id"].tolist() and len(set(table["user_id"])) == 60
    assert table["item_id"] == expected["item_id"].tolist()
    # Streamed: nothing kept by Lightning either.
    assert cli.trainer.predict_loop.return_predictions is False and cli.trainer.predict_loop.predictions == []

    test = run(["test", f"--ckpt_path={trained.ckpt}", f"--trainer.default_root_dir={tmp_path / 't'}", *QUIET])
    assert test.datamodule.max_len == 20 and test.datamodule.num_sampled == 20
    assert test.model.results["test"].keys() == trained.results.keys()  # sampled/ metrics: the stored protocol
    for name, value in trained.results.items():
        assert test.model.results["test"][name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.slow
def test_a_moved_data_file_is_named_and_can_be_given_anew(trained: SimpleNamespace, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    state = torch.load(trained.ckpt, weights_only=True)
    assert state["seqrec_dataset"]["source"]["path"] == str(trained.data)  # absolute, as resolved at fit time
    moved = tmp_path / "gone" / "events.csv"  # where the data was when this checkpoint was written
    state["seqrec_dataset"]["source"]["path"] = state["seqrec_dataset"]["data"]["path"] = str(moved)
    ckpt = tmp_path / "moved.ckpt"
    torch.save(state, ckpt)
    out = tmp_path / "recs.parquet"
    with pytest.raises(FileNotFoundError, match=rf"{moved}: no such file; .*moved.ckpt was trained on it .*--data\.path"):
        run(["predict", f"--ckpt_path={ckpt}", f"--predict_output={out}", *QUIET])
    with pytest.raises(FileNotFoundError, match=rf"{moved}: no such file; .*moved or been deleted"):
        Recommender.from_checkpoint(ckpt)
    run(["predict", f"--ckpt_path={ckpt}", f"--predict_output={out}", f"--data.path={trained.data}", *QUIET])
    assert pq.read_table(out).num_rows == 600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moved.ckpt", "recs.parquet"]  # no config.yaml either


@pytest.mark.slow
def test_another_catalogue_is_one_line_naming_both_sizes(trained: SimpleNamespace, tiny: list[str], tmp_path: Path) -> None:
    synthetic = ["--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, *QUIET,
                 f"--predict_output={tmp_path / 'r.csv'}"]  # 120 items
    with pytest.raises(ValueError) as err:
        run(["predict", *synthetic, f"--ckpt_path={trained.ckpt}"])
    message = str(err.value)
    assert f"catalogue has {trained.num_items} items (trained on {trained.data}), the data 120 (synthetic)" in message
    assert "\n" not in message and "{" not in message
    # A checkpoint without the catalogue description: still a message, not load_state_dict's size mismatch.
    state = torch.load(trained.ckpt, weights_only=True)
    del state["seqrec_dataset"]
    bare = tmp_path / "bare.ckpt"
    torch.save(state, bare)
    with pytest.raises(ValueError, match=rf"the checkpoint's model has {trained.num_items} items and the data 120"):
        run(["predict", *synthetic, f"--ckpt_path={bare}"])
    assert not (tmp_path / "r.csv").exists()


def _data_module(trained: SimpleNamespace, **overrides):
    """The data module of the checkpoint, built from what it stores (as the CLI does)."""
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec

    stored = dict(torch.load(trained.ckpt, weights_only=True)["seqrec_dataset"]["data"])
    stored["synthetic"] = SyntheticSpec(**stored["synthetic"])
    return SeqRecDataModule(**{**stored, **overrides})


@pytest.mark.slow
@pytest.mark.parametrize("output", ["recs.parquet", "recs.csv", "recs"])
def test_each_batch_is_written_as_it_comes(trained: SimpleNamespace, tmp_path: Path, output: str) -> None:
    import pytorch_lightning as pl
    from seqrec.train.module import SeqRecModule

    model = SeqRecModule.load_from_checkpoint(trained.ckpt, weights_only=True)
    dm = _data_module(trained, eval_batch_size=16)  # 60 users: batches of 16, 16, 16, 12
    writer = RecommendationWriter(str(tmp_path / output), rows_per_group=1)  # a row group after every batch
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         callbacks=[writer], default_root_dir=tmp_path)
    assert trainer.predict(model, datamodule=dm, return_predictions=False) is None
    expected = Recommender.from_checkpoint(trained.ckpt).recommend(k=10)
    path = tmp_path / output
    if output.endswith(".csv"):
        got = pacsv.read_csv(path).to_pydict()
    else:  # a file, or a folder of one part per process, which reads as one table
        parquet = path / part_name(0) if output == "recs" else path
        assert pq.ParquetFile(parquet).num_row_groups == 4  # written batch by batch
        got = pads.dataset(path).to_table().to_pydict()
    assert got["user_id"] == expected["user_id"].tolist() and got["item_id"] == expected["item_id"].tolist()
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-5)
    assert not list(tmp_path.glob("*.parts")) and not list(tmp_path.rglob("*.partial"))  # parts joined, removed


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_predicts_a_contiguous_share_of_the_users(world: int) -> None:
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec

    spec = SyntheticSpec(num_users=100, num_items=50, num_clusters=4, mean_length=8.0)
    shares = []
    for rank in range(world):
        dm = SeqRecDataModule(synthetic=spec, max_len=10, eval_batch_size=16)  # one per process
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=world, current_epoch=0)
        loader = dm.predict_dataloader()
        shares.append(np.concatenate([b["users"].numpy() for b in loader]))
        assert len(loader) == -(-shares[-1].size // 16)
    # Joined in rank order, the shares are every user once, in order: what the joined output holds.
    assert np.concatenate(shares).tolist() == list(range(100))
    assert max(s.size for s in shares) - min(s.size for s in shares) <= 1


def test_predict_batches_are_built_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from seqrec.data import datamodule
    from seqrec.data.source import SyntheticSpec

    built = []

    def counting(offsets, items, users, *args, **kwargs):
        built.append(len(users))
        return history_batches(offsets, items, users, *args, **kwargs)

    history_batches = datamodule.history_batches
    dm = datamodule.SeqRecDataModule(synthetic=SyntheticSpec(num_users=100, num_items=50, num_clusters=4,
                                                             mean_length=8.0), max_len=10, eval_batch_size=16)
    monkeypatch.setattr(datamodule, "history_batches", counting)
    batches = iter(dm.predict_dataloader())
    first = next(batches)
    assert built == [16] and first["users"].tolist() == list(range(16))  # one batch's inputs, not 100 users'
    assert sum(b["users"].numel() for b in batches) == 84 and built == [16] * 6 + [4]


def test_parts_join_in_order_a_row_group_at_a_time(tmp_path: Path) -> None:
    import pyarrow as pa

    parts = []
    for rank, users in enumerate(([3, 1], [], [7])):
        parts.append(tmp_path / part_name(rank))
        with pq.ParquetWriter(parts[-1], pa.schema([("user_id", pa.int64()), ("score", pa.float32())])) as w:
            for u in users:  # one row group per row
                w.write_table(pa.table({"user_id": [u], "score": pa.array([u / 10], pa.float32())}))
    join_parts(parts, tmp_path / "all.parquet")
    join_parts(parts, tmp_path / "all.csv")
    assert pq.read_table(tmp_path / "all.parquet").column("user_id").to_pylist() == [3, 1, 7]
    assert pq.ParquetFile(tmp_path / "all.parquet").num_row_groups == 3
    assert pacsv.read_csv(tmp_path / "all.csv").column("user_id").to_pylist() == [3, 1, 7]


def test_an_output_that_is_neither_a_table_nor_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"predict_output .*recs\.txt: .*\.csv or \.parquet, or into a folder"):
        RecommendationWriter(str(tmp_path / "recs.txt"))


@pytest.mark.slow
def test_two_process_ddp_predict_equals_one_process(trained: SimpleNamespace, tmp_path: Path) -> None:
    outputs = {}
    for devices in (1, 2):
        out = tmp_path / f"recs{devices}.csv"
        cmd = [sys.executable, "-m", "seqrec.cli", "predict", f"--ckpt_path={trained.ckpt}", f"--predict_output={out}",
               "--trainer.accelerator=cpu", f"--trainer.devices={devices}", *QUIET, "--data.eval_batch_size=16"]
        if devices > 1:
            cmd.append("--trainer.strategy=ddp")
        env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "recommendations of 60 users" in res.stdout
        outputs[devices] = out.read_text()
    assert outputs[2] == outputs[1]
    assert not list(tmp_path.glob("*.parts"))
