import numpy as np
import pytest
from seqrec.data.interactions import Interactions


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
