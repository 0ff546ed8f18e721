from pathlib import Path

import numpy as np
import pytest
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.source import SyntheticSpec, resolve_data_path

TINY = SyntheticSpec(num_users=200, num_items=80, num_clusters=4, mean_length=10.0, seed=1)


def epoch_batches(dm: SeqRecDataModule, epoch: int) -> list[dict]:
    dm._epoch = lambda: epoch  # type: ignore[method-assign]
    return list(dm.train_dataloader())


def test_train_batches_fixed_by_seed_and_epoch() -> None:
    a = SeqRecDataModule(synthetic=TINY, batch_size=32, max_len=8, num_negatives=2, seed=5, batch_tokens=0)
    b = SeqRecDataModule(synthetic=TINY, batch_size=32, max_len=8, num_negatives=2, seed=5, batch_tokens=0)
    ea, eb = epoch_batches(a, 0), epoch_batches(b, 0)
    assert len(ea) == a.train_batches.num_batches(0) == 7
    for x, y in zip(ea, eb):
        for key in x:
            assert np.array_equal(x[key].numpy(), y[key].numpy())
    e1 = epoch_batches(a, 1)
    assert not np.array_equal(ea[0]["users"].numpy(), e1[0]["users"].numpy())
    # every trainable user exactly once per epoch
    users = np.concatenate([x["users"].numpy() for x in ea])
    assert sorted(users.tolist()) == list(range(200))
    for batch in ea:
        width = batch["inputs"].shape[1]
        assert batch["negatives"].shape == (batch["inputs"].shape[0], width, 2)
        assert width <= 8 and (batch["targets"][:, 0] != 0).any()  # padded only to the longest row


def test_train_batches_hold_only_training_items() -> None:
    dm = SeqRecDataModule(synthetic=TINY, batch_size=64, max_len=50)
    split = dm.split
    for batch in epoch_batches(dm, 0):
        for row, u in enumerate(batch["users"].tolist()):
            train = split.train_items[split.train_offsets[u] : split.train_offsets[u + 1]]
            pos = batch["targets"][row].numpy()
            assert pos[pos != 0].tolist() == train[1:].tolist()


@pytest.mark.parametrize("stage", ["val", "test"])
@pytest.mark.parametrize("sampled", ["uniform", "popularity"])
def test_eval_batches(stage: str, sampled: str) -> None:
    dm = SeqRecDataModule(synthetic=TINY, max_len=5, eval_batch_size=64, sampled_eval=sampled, num_sampled=20)
    split = dm.split
    offsets, items = split.history(stage)
    batches = dm.eval_batches(stage)
    assert dm.eval_batches(stage) is batches  # built once
    users = np.concatenate([b["users"].numpy() for b in batches])
    assert users.tolist() == split.eval_users.tolist()
    targets = split.targets(stage)
    i = 0
    for b in batches:
        for row, u in enumerate(b["users"].tolist()):
            hist = items[offsets[u] : offsets[u + 1]]
            got = b["history_items"][b["history_rows"] == row].tolist()
            assert got == hist.tolist()
            inp = b["inputs"][row].numpy()
            assert inp[inp != 0].tolist() == hist[-5:].tolist()
            assert int(b["targets"][row]) == targets[i]
            full = set(dm.interactions.sequence(u).tolist())
            assert full.isdisjoint(b["candidates"][row].tolist())
            i += 1


def test_data_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "games").mkdir()
    (tmp_path / "games" / "Video.txt").write_text("1 1\n1 2\n1 3\n2 2\n2 3\n2 1\n")
    monkeypatch.setenv("SEQREC_DATA_DIR", str(tmp_path))
    assert resolve_data_path("$SEQREC_DATA_DIR/games/Video.txt") == tmp_path / "games" / "Video.txt"
    dm = SeqRecDataModule(path="${SEQREC_DATA_DIR}/games/Video.txt", format="sasrec")
    assert dm.num_items == 3 and dm.split.eval_users.size == 2
    with pytest.raises(FileNotFoundError, match="SEQREC_DATA_DIR"):
        resolve_data_path("$SEQREC_DATA_DIR/missing.txt")


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
        SeqRecDataModule(synthetic=TINY, batch_size=0)
    with pytest.raises(ValueError, match="max_len must be positive"):
        SeqRecDataModule(synthetic=TINY, max_len=-1)


def test_loss_scale_is_one_over_the_targets_of_an_average_batch() -> None:
    for tokens in (None, 0):
        dm = SeqRecDataModule(synthetic=TINY, batch_size=16, max_len=6, batch_tokens=tokens)
        batches = epoch_batches(dm, 0)
        targets = sum(int((b["targets"] != 0).sum()) for b in batches)
        expected = len(batches) / targets
        assert all(abs(float(b["loss_scale"]) - expected) < 1e-6 for b in batches)


def test_token_budget_batches() -> None:
    dm = SeqRecDataModule(synthetic=TINY, batch_size=16, max_len=10)  # budget: 16 x mean targets
    split = dm.split
    n = np.minimum(np.diff(split.train_offsets) - 1, 10)
    budget = int(round(16 * n[n > 0].mean()))
    batches = epoch_batches(dm, 0)
    assert len(batches) == dm.train_batches.num_batches(0)
    sizes = {b["inputs"].shape[0] for b in batches}
    assert len(sizes) > 2  # short sequences come in larger batches
    for b in batches:
        assert b["inputs"].shape[0] == 1 or b["inputs"].numel() <= budget
    users = np.concatenate([b["users"].numpy() for b in batches])
    assert sorted(users.tolist()) == list(range(200))
    with pytest.raises(ValueError, match="batch_tokens"):
        SeqRecDataModule(synthetic=TINY, batch_tokens=-1)


def test_bert4rec_batches_are_masked() -> None:
    dm = SeqRecDataModule(synthetic=TINY, batch_size=32, max_len=8, task="bert4rec", mask_prob=0.4, negatives="none")
    for batch in epoch_batches(dm, 0):
        masked = batch["targets"] != 0
        assert (batch["inputs"][masked] == dm.num_items + 1).all()
        assert masked.any(dim=1).all()
        assert "negatives" not in batch


def test_csv_with_own_column_names(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    rows = [f"u{u},i{(u * 3 + t) % 7},{t}" for u in range(4) for t in range(5)]
    path.write_text("who,what,when\n" + "\n".join(rows) + "\n")
    dm = SeqRecDataModule(path=str(path), columns=("who", "what", "when"))
    assert dm.interactions.num_users == 4 and dm.split.eval_users.size == 4
    with pytest.raises(ValueError, match="missing column"):
        SeqRecDataModule(path=str(path))


def test_the_delimiter_reaches_the_loader_and_the_checkpointed_source(tmp_path: Path) -> None:
    from seqrec.data.source import load_source

    path = tmp_path / "events.txt"
    rows = [f"u{u};i{(u * 3 + t) % 7};{t}" for u in range(4) for t in range(5)]
    path.write_text("user_id;item_id;timestamp\n" + "\n".join(rows) + "\n")
    dm = SeqRecDataModule(path=str(path), format="csv", delimiter=";")
    assert dm.interactions.num_users == 4 and dm.interactions.num_items == 7
    # what a checkpoint keeps reloads the same file the same way (predict/test from the checkpoint alone)
    again = load_source(dm.source())
    assert np.array_equal(again.items, dm.interactions.items) and list(again.raw_item_ids) == list(dm.interactions.raw_item_ids)
    with pytest.raises(ValueError, match="missing column.*set data.delimiter"):
        SeqRecDataModule(path=str(path), format="csv")


@pytest.mark.parametrize(("options", "named"), [
    ({"batch_size": 2**58}, "batch_size"),
    ({"prefetch": 10**9}, "prefetch"),
    ({"num_negatives": 2**40}, "num_negatives"),
    ({"negatives": "popularity", "num_negatives": 2**33}, "num_negatives"),
    ({"negatives": "in_batch", "num_in_batch": 2**40}, "num_in_batch"),
    ({"max_len": 10**9}, "max_len"),
    ({"negative_pool": 2**40}, "negative_pool"),
    ({"batch_tokens": 2**62}, "batch_tokens"),
    ({"sampled_eval": "uniform", "num_sampled": 2**40}, "num_sampled"),
])
def test_huge_options_end_to_end_are_errors_naming_them(options: dict, named: str) -> None:
    """Issue 14's sizes through the data module as a config gives them: a ValueError naming the option by
    the data module's own name, at construction or the first batch, never a panic or an allocation abort."""
    with pytest.raises(ValueError, match=named):
        dm = SeqRecDataModule(synthetic=TINY, **options)
        dm.setup("fit")
        next(iter(dm.train_dataloader()))
        next(iter(dm.val_dataloader()))


def test_a_window_stride_longer_than_a_history_trains_one_window_per_user() -> None:
    dm = SeqRecDataModule(synthetic=TINY, max_len=5, window_stride=61)
    dm.setup("fit")
    users = np.concatenate([b["users"].numpy() for b in dm.train_dataloader()])
    assert np.bincount(users).max() == 1  # each trainable user once: a 61-step stride leaves one window
