import numpy as np
import pytest

from seqrec.data.interactions import Interactions
from seqrec.data.split import LeaveOneOut


def test_stats_and_counts() -> None:
    data = Interactions.from_arrays(np.array([5, 5, 5, 9, 9]), np.array([1, 2, 1, 2, 3]))
    s = data.stats()
    assert (s["users"], s["items"], s["interactions"]) == (2, 3, 5)
    assert s["mean_length"] == 2.5 and s["max_length"] == 3
    assert data.item_counts().tolist() == [0, 2, 2, 1]
    assert data.user_index().tolist() == [0, 0, 0, 1, 1]


def test_container_rejects_inconsistent_arrays() -> None:
    with pytest.raises(ValueError, match="offsets"):
        Interactions(np.array([0, 3]), np.array([1, 2]), np.array([1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="item ids must lie in 1..2"):
        Interactions(np.array([0, 2]), np.array([1, 3]), np.array([1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="no interactions"):
        Interactions.from_arrays(np.array([], dtype=int), np.array([], dtype=int))


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
