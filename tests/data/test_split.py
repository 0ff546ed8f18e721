"""Splits: leave-one-out (by hand, and no target in training) and the global time split (no leakage)."""

import numpy as np
import pytest
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.interactions import Interactions
from seqrec.data.source import SyntheticSpec
from seqrec.data.split import LeaveOneOut

DAY = 86400


def test_leave_one_out_by_hand() -> None:
    # user a: 1 2 3 4 ; user b: 5 6 ; user c: 7 8 9
    users = np.array(["a"] * 4 + ["b"] * 2 + ["c"] * 3)
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])
    split = LeaveOneOut.from_interactions(Interactions.from_arrays(users, items))
    assert split.eval_users.tolist() == [0, 2]
    assert split.num_short_users == 1
    assert split.val_targets.tolist() == [3, 8]
    assert split.test_targets.tolist() == [4, 9]
    # b is too short: both its items stay in training.
    assert split.train_offsets.tolist() == [0, 2, 4, 5]
    assert split.train_items.tolist() == [1, 2, 5, 6, 7]
    off, it = split.history("test")
    assert [it[off[u] : off[u + 1]].tolist() for u in range(3)] == [[1, 2, 3], [5, 6], [7, 8]]
    off, it = split.history("val")
    assert [it[off[u] : off[u + 1]].tolist() for u in range(3)] == [[1, 2], [5, 6], [7]]
    assert split.train_item_counts().tolist() == [0, 1, 1, 0, 0, 1, 1, 1, 0, 0]
    stats = split.stats()
    assert stats["short_users"] == 1 and stats["evaluated_users"] == 2
    with pytest.raises(ValueError, match="stage"):
        split.history("train")


def test_no_target_leaks_into_training(small_synthetic) -> None:
    split = LeaveOneOut.from_interactions(small_synthetic)
    for j, u in enumerate(split.eval_users):
        full = small_synthetic.sequence(u)
        train = split.train_items[split.train_offsets[u] : split.train_offsets[u + 1]]
        assert train.tolist() == full[:-2].tolist()
        assert full[-1] == split.test_targets[j] and full[-2] == split.val_targets[j]


def test_time_split_never_leaks_and_picks_first_interactions_after_the_cutoffs() -> None:
    from seqrec.data.split import TimeSplit

    # user 0: t = 1, 2, 5, 8, 9; user 1: 3, 4; user 2: 6, 7 (nothing before the validation cut-off 5)
    users = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2])
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9])
    times = np.array([1, 2, 5, 8, 9, 3, 4, 6, 7])
    data = Interactions.from_arrays(users, items, timestamps=times)
    split = TimeSplit.from_interactions(data, 5, 8)
    assert split.users("val").tolist() == [0] and split.targets("val").tolist() == [3]  # first in [5, 8)
    assert split.users("test").tolist() == [0] and split.targets("test").tolist() == [4]  # first at or after 8
    offsets, train = split.history("val")
    assert train.tolist() == [1, 2, 6, 7] and offsets.tolist() == [0, 2, 4, 4]
    offsets, hist = split.history("test")
    assert hist.tolist() == [1, 2, 3, 6, 7, 8, 9]  # everything before 8, validation period included
    by_quantile = TimeSplit.from_interactions(data, 0.5, 0.8)
    assert by_quantile.val_time == int(np.quantile(times, 0.5))
    with pytest.raises(ValueError, match="before the test cut-off"):
        TimeSplit.from_interactions(data, 8, 5)
    backwards = Interactions.from_arrays(np.array([0, 0]), np.array([1, 2]), timestamps=np.array([5, 3]))
    with pytest.raises(ValueError, match="go backwards"):
        TimeSplit.from_interactions(backwards, 0.2, 0.8)


def test_time_split_on_synthetic_data_has_no_leakage() -> None:
    dm = SeqRecDataModule(synthetic=SyntheticSpec(num_users=400, num_items=100, num_clusters=4), max_len=20,
                          split="time", split_times=(0.7, 0.85))
    data, split = dm.interactions, dm.split
    ts, user = data.timestamps, data.user_index()
    within = np.arange(data.num_interactions) - data.offsets[user]
    # Position of every training item in its user's full sequence: all strictly before the validation cut-off.
    train_len = np.diff(split.train_offsets)
    in_train = within < train_len[user]
    assert (ts[in_train] < split.val_time).all() and in_train.sum() == split.train_items.size
    for stage, lo, hi in (("val", split.val_time, split.test_time), ("test", split.test_time, np.inf)):
        offsets, _ = split.history(stage)
        users = split.users(stage)
        n = (offsets[users + 1] - offsets[users])
        target_index = data.offsets[users] + n
        assert ((ts[target_index] >= lo) & (ts[target_index] < hi)).all()
        assert (ts[target_index - 1] < lo).all()  # the history ends before the cut-off
        assert not in_train[target_index].any()  # no target is ever a training input
        np.testing.assert_array_equal(data.items[target_index], split.targets(stage))
    batches = dm.eval_batches("test")
    assert sum(b["users"].numel() for b in batches) == split.users("test").size > 0
    assert sum(1 for _ in dm.train_dataloader()) > 0
