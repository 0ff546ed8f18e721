"""write_atomically: what every output of seqrec (predictions, checkpoints, exports, results) is written by."""

from pathlib import Path

import pytest
from seqrec.files import write_atomically


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path: Path) -> None:
    path = tmp_path / "recommendations.csv"
    path.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recommendations.csv"]


def test_a_killed_run_s_partial_is_replaced_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "recommendations.parquet"
    (tmp_path / "recommendations.parquet.partial").write_text("left by kill -9")
    write_atomically(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recommendations.parquet"]
