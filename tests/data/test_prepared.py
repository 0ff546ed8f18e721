"""The compact format and the cleaning steps of ``seqrec data prepare``."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES  # noqa: E402
from seqrec.cli.tools import tools
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.errors import DataFormatError
from seqrec.data.interactions import Interactions
from seqrec.data.loaders import load
from seqrec.data.prepared import (
    _write_ids,
    drop_consecutive_repeats,
    k_core,
    load_prepared,
    save_prepared,
)


def sequences(data: Interactions) -> dict:
    """Raw user -> list of raw items: what survives a round trip whatever the dense ids became."""
    return {data.raw_user_ids[u].item() if hasattr(data.raw_user_ids[u], "item") else data.raw_user_ids[u]:
            [data.raw_item_ids[i] for i in data.sequence(u).tolist()] for u in range(data.num_users)}


@pytest.mark.parametrize("name", ["sasrec.txt", "user_lines.txt", "ratings.dat", "interactions.csv"])
def test_round_trip_keeps_every_sequence_and_time(name: str, tmp_path: Path) -> None:
    data = load(FIXTURES / name)
    save_prepared(data, tmp_path / "p")
    back = load(tmp_path / "p")  # auto-detected as a prepared folder
    assert sequences(back) == sequences(data)
    np.testing.assert_array_equal(back.offsets, data.offsets)
    np.testing.assert_array_equal(back.items, data.items)
    if data.timestamps is None:
        assert back.timestamps is None
    else:
        np.testing.assert_array_equal(back.timestamps, data.timestamps)
    assert back.raw_item_ids.dtype.kind == data.raw_item_ids.dtype.kind
    assert back.encode_items([data.raw_item_ids[1]]).tolist() == [1]


def test_consecutive_repeats_by_hand() -> None:
    data = Interactions.from_arrays(np.array([1, 1, 1, 1, 2, 2]), np.array([5, 5, 6, 5, 5, 5]),
                                    timestamps=np.arange(6))
    clean, dropped = drop_consecutive_repeats(data)
    assert dropped == 2
    assert sequences(clean) == {1: [5, 6, 5], 2: [5]}  # a repeat further back stays; another user's does too
    assert clean.timestamps.tolist() == [0, 2, 3, 4]


def test_k_core_repeats_until_stable() -> None:
    # Item 9 is seen once; dropping it leaves user 3 with one interaction, which then drops item 8 to one.
    users = np.array([1, 1, 1, 2, 2, 2, 3, 3, 4, 4])
    items = np.array([7, 8, 6, 7, 6, 8, 8, 9, 7, 6])
    data = Interactions.from_arrays(users, items)
    core, dropped = k_core(data, 2)
    assert sequences(core) == {1: [7, 8, 6], 2: [7, 6, 8], 4: [7, 6]}
    assert dropped == {"users": 1, "items": 1, "interactions": 2}
    counts = core.item_counts()[1:]
    assert core.lengths.min() >= 2 and counts.min() >= 2
    with pytest.raises(ValueError, match="nothing is left"):
        k_core(data, 10)


def test_prepare_command_reports_what_it_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "events.csv"
    src.write_text("uid,sku,ts\n" + "".join(f"u{u},s{(u + t) % 7},{t}\n" for u in range(30) for t in range(5))
                   + "u0,s4,99\nu0,s4,100\n")
    out = tmp_path / "prepared"
    assert tools(["data", "prepare", str(src), str(out), "--user-col", "uid", "--item-col", "sku", "--time-col", "ts",
                  "--dedup", "--k-core", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["before"] == {"users": 30, "items": 7, "interactions": 152}
    assert report["steps"][0] == {"step": "drop consecutive repeats", "dropped_interactions": 2}  # u0: s4 at t=4, 99 and 100
    assert report["after"]["interactions"] == 150
    meta = json.loads((out / "meta.json").read_text())
    assert meta["steps"] == report["steps"] and meta["format_version"] == 1
    data = load_prepared(out)
    assert data.num_interactions == 150 and data.timestamps is not None
    dm = SeqRecDataModule(path=str(out), max_len=5)  # a training config can point at the folder
    assert dm.num_items == 7


def test_damaged_or_missing_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        load_prepared(tmp_path)
    save_prepared(load(FIXTURES / "sasrec.txt"), tmp_path / "p")
    (tmp_path / "p" / "items.npy").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="damaged prepared dataset"):
        load_prepared(tmp_path / "p")


@pytest.mark.parametrize(("content", "message"), [
    ("1 5\n1 x\n", "bad.txt:2: item id 'x' is not an integer"),
    ("1 5\n-3 4\n", "bad.txt:2: user id -3 is negative"),
    ("", "bad.txt: the file is empty"),
    ("1 5 6\n2 7\n1 8\n", "bad.txt:3: user 1 already appeared on line 1"),
])
def test_bad_input_leaves_nothing_behind(tmp_path: Path, content: str, message: str,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from seqrec.cli import main

    bad = tmp_path / "bad.txt"
    bad.write_text(content)
    out = tmp_path / "out"
    fmt = "user_lines" if content.startswith("1 5 6") else "sasrec"
    monkeypatch.setattr("sys.argv", ["seqrec", "data", "prepare", str(bad), str(out), "--format", fmt])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err  # a message naming file and line, not a traceback
    assert not out.exists()


def test_a_filter_that_leaves_nothing_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "few.txt"
    src.write_text("1 1\n1 2\n2 3\n")
    with pytest.raises(ValueError, match="nothing is left after 5-core"):
        tools(["data", "prepare", str(src), str(tmp_path / "out"), "--k-core", "5"])
    assert not (tmp_path / "out").exists()


def _saved(tmp_path: Path) -> Path:
    data = Interactions.from_arrays(np.array([0, 0, 0, 1, 1]), np.array([5, 6, 7, 5, 8]),
                                    timestamps=np.array([1, 2, 3, 4, 5]))
    return save_prepared(data, tmp_path / "prep")


@pytest.mark.parametrize(("damage", "pattern"), [
    (lambda f: np.save(f / "items.npy", np.array([1, 2, 2**32 + 3, 1, 4], dtype=np.int64)), "item ids must lie"),
    (lambda f: np.save(f / "items.npy", np.array([1.0, 2, 3, 1, 4])), "items must be a 1-D integer array"),
    (lambda f: np.save(f / "items.npy", np.ones((5, 1), dtype=np.int32)), "items must be a 1-D integer array"),
    (lambda f: np.save(f / "timestamps.npy", np.arange(7)), "7 timestamps for 5 interactions"),
    (lambda f: _write_ids(f / "user_ids.parquet", np.array([3, 3])), "duplicate ids"),
    (lambda f: (f / "meta.json").write_text("{not json"), "meta.json: not a readable meta.json"),
    (lambda f: (f / "meta.json").write_text("[1, 2]"), "meta.json: format version None"),
])
def test_every_array_of_a_prepared_folder_is_checked_on_load(tmp_path: Path, damage, pattern: str) -> None:
    folder = _saved(tmp_path)
    damage(folder)
    with pytest.raises(DataFormatError, match=pattern):
        load_prepared(folder)


def test_prepare_never_reuses_a_stale_partial_folder(tmp_path: Path) -> None:
    folder = tmp_path / "prep"
    stale = folder / ".partial"
    stale.mkdir(parents=True)
    np.save(stale / "timestamps.npy", np.arange(3_000))  # left by a killed prepare of another dataset
    data = Interactions.from_arrays(np.array([0, 0, 1, 1]), np.array([5, 6, 5, 8]))  # no times
    save_prepared(data, folder)
    assert not (folder / "timestamps.npy").exists() and not stale.exists()
    assert load_prepared(folder).timestamps is None
