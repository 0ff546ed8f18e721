"""Side features: attribute tables, time files, time-gap buckets, their alignment with batches, the model."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FIXTURES, ROOT  # noqa: E402
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.errors import DataFormatError
from seqrec.data.features import (
    attach_user_line_times,
    gather_prefix,
    load_item_attributes,
    time_gap_buckets,
)
from seqrec.data.interactions import Interactions
from seqrec.data.loaders import load
from seqrec.data.source import SyntheticSpec
from seqrec.models import ModelConfig, SASRec

DAY = 86400


def small() -> Interactions:
    # users 7 and 9; raw items 4, 83, 165, 5
    return Interactions.from_arrays(np.array([7, 7, 7, 9, 9]), np.array([4, 83, 165, 83, 5]))


def test_json_attributes_align_with_dense_items(tmp_path: Path) -> None:
    path = tmp_path / "attrs.json"
    path.write_text(json.dumps({"4": [1, 2, 2], "83": [2, 3], "999": [5]}))
    data = small()
    attrs = load_item_attributes(path, data)
    # dense ids follow sorted raw ids: 4 -> 1, 5 -> 2, 83 -> 3, 165 -> 4
    assert data.raw_item_ids.tolist() == [0, 4, 5, 83, 165]
    assert attrs.table.shape == (5, 2)
    assert attrs.num_attributes == 3
    raw = attrs.raw_ids
    assert [raw[a] for a in attrs.table[1] if a] == ["1", "2"]  # the repeated 2 counts once
    assert [raw[a] for a in attrs.table[3] if a] == ["2", "3"]
    assert attrs.table[2].tolist() == [0, 0] and attrs.table[4].tolist() == [0, 0]  # no attributes
    assert attrs.table[0].tolist() == [0, 0]
    assert attrs.unknown_items == 1
    assert attrs.coverage == pytest.approx(0.5)


def test_csv_attributes(tmp_path: Path) -> None:
    path = tmp_path / "attrs.csv"
    path.write_text("item_id,attribute\n165,brand_a\n165,cat_x\n5,cat_x\n")
    attrs = load_item_attributes(path, small())
    raw = attrs.raw_ids
    assert [raw[a] for a in attrs.table[4] if a] == ["brand_a", "cat_x"]
    assert attrs.table[2, 0] == attrs.table[4, 1]  # the same attribute gets the same id


def test_bad_attribute_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataFormatError, match="bad.json"):
        load_item_attributes(bad, small())
    bad.write_text(json.dumps({"4": 7}))
    with pytest.raises(DataFormatError, match="item '4'"):
        load_item_attributes(bad, small())
    other = tmp_path / "attrs.csv"
    other.write_text("item,attr\n4,1\n")
    with pytest.raises(DataFormatError, match="missing column"):
        load_item_attributes(other, small())
    with pytest.raises(DataFormatError, match="txt"):
        load_item_attributes(FIXTURES / "sasrec.txt", small())


def test_user_line_times_attach_and_mismatch_is_named(tmp_path: Path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("9 83 5\n7 4 83 165\n")
    data = load(items, "user_lines")
    times = tmp_path / "times.txt"
    times.write_text("9 100 200\n7 10 20 30\n")
    with_times = attach_user_line_times(data, times)
    assert with_times.timestamps is not None
    u7 = data.raw_user_ids.tolist().index(7)
    lo, hi = data.offsets[u7], data.offsets[u7 + 1]
    assert with_times.timestamps[lo:hi].tolist() == [10, 20, 30]
    times.write_text("9 100 200\n7 10 20\n")
    with pytest.raises(DataFormatError, match=r"times.txt:2: user 7 has 2 times but 3 items"):
        attach_user_line_times(data, times)
    times.write_text("9 100 200\n")
    with pytest.raises(DataFormatError, match="no times for user 7"):
        attach_user_line_times(data, times)


def test_time_gap_buckets_by_hand() -> None:
    t = np.array([0, 0, DAY, 4 * DAY, 100 * DAY, 5, 3])  # user 0: five items, user 1: two (backwards)
    data = Interactions.from_arrays(np.array([0] * 5 + [1] * 2), np.arange(1, 8), timestamps=t)
    buckets = time_gap_buckets(data, num_buckets=8)
    # gaps in days: -, 0, 1, 3, 96 | -, backwards -> 0
    # 2 + floor(log2(1 + gap)): 2, 3, 4, 2 + 6 = 8 -> capped at 7
    assert buckets.tolist() == [1, 2, 3, 4, 7, 1, 2]
    with pytest.raises(ValueError, match="no timestamps"):
        time_gap_buckets(small())


def test_gather_prefix_by_hand() -> None:
    values = np.array([10, 11, 12, 13, 20, 21])
    offsets = np.array([0, 4, 6])
    inputs = np.array([[0, 1, 1], [1, 1, 1]])  # any non-zero marks a real position
    out = gather_prefix(values, offsets, np.array([1, 0]), np.array([2, 4]), 3, 0, inputs)
    assert out.tolist() == [[0, 20, 21], [11, 12, 13]]
    out = gather_prefix(values, offsets, np.array([0]), np.array([4]), 3, 1, np.array([[1, 1, 1]]))
    assert out.tolist() == [[10, 11, 12]]


def hand_buckets(data: Interactions) -> np.ndarray:
    """Each interaction's time-gap bucket, one at a time by the documented rule (not time_gap_buckets): 1 for
    a user's first interaction, else 2 + floor(log2(1 + gap in days)), a backwards gap counting as 0, capped
    at bucket 15 (16 buckets with 0 for padding)."""
    out = np.zeros(data.items.size, dtype=np.int64)
    t = data.timestamps
    for u in range(data.num_users):
        lo, hi = int(data.offsets[u]), int(data.offsets[u + 1])
        for i in range(lo, hi):
            days = max(int(t[i]) - int(t[i - 1]), 0) / DAY if i > lo else None
            out[i] = 1 if days is None else min(2 + math.floor(math.log2(1 + days)), 15)
    return out


def spec() -> SyntheticSpec:
    return SyntheticSpec(num_users=200, num_items=80, num_clusters=4, mean_length=10)


@pytest.fixture(scope="module")
def timed() -> SeqRecDataModule:
    return SeqRecDataModule(synthetic=spec(), max_len=8, batch_size=32, time_features=True, seed=3)


@pytest.fixture(scope="module")
def by_hand(timed: SeqRecDataModule) -> np.ndarray:
    buckets = hand_buckets(timed.interactions)
    assert len(set(buckets.tolist())) >= 5  # varied enough that a misalignment shows
    return buckets


def assert_row_lines_up(batch: dict[str, np.ndarray], row: int, end: int, data: Interactions, buckets: np.ndarray) -> None:
    """Row ``row`` holds, left-padded, the interactions of its user just before index ``end`` of their full
    sequence, and its time inputs are exactly those interactions' buckets."""
    inputs, times = batch["inputs"][row], batch["time_inputs"][row]
    n = int((inputs != 0).sum())
    assert n > 0 and (inputs[: inputs.size - n] == 0).all()
    where = int(data.offsets[int(batch["users"][row])]) + np.arange(end - n, end)
    np.testing.assert_array_equal(inputs[-n:], data.items[where])
    np.testing.assert_array_equal(times[-n:], buckets[where])
    assert (times[: times.size - n] == 0).all()


@pytest.mark.parametrize("window_stride", [0, 3])
def test_training_time_inputs_are_the_buckets_of_the_input_items(timed: SeqRecDataModule, by_hand: np.ndarray,
                                                                 window_stride: int) -> None:
    # The batches Lightning trains on (train_dataloader); with a window stride, windows end mid-history.
    dm = timed if window_stride == 0 else SeqRecDataModule(synthetic=spec(), max_len=8, batch_size=32,
                                                           time_features=True, seed=3, window_stride=window_stride)
    data, rows, short = dm.interactions, 0, 0
    for batch in dm.train_dataloader():
        b = {k: v.numpy() for k, v in batch.items() if k != "loss_scale"}
        for row in range(b["users"].size):
            # A segment covers the first `end` items; next-item inputs stop one before its last (a target).
            end = int(b["ends"][row]) - 1
            assert_row_lines_up(b, row, end, data, by_hand)
            rows += 1
            short += int(b["ends"][row]) < data.lengths[int(b["users"][row])] - 2
    assert rows >= 200 and (short > 0) == (window_stride > 0)


def test_eval_and_predict_time_inputs_are_the_buckets_of_the_history(timed: SeqRecDataModule, by_hand: np.ndarray) -> None:
    data = timed.interactions
    for stage in ("val", "test"):
        offsets, _ = timed.split.history(stage)
        for batch in timed.eval_batches(stage):
            b = {k: v.numpy() for k, v in batch.items()}
            for row, u in enumerate(b["users"]):
                assert_row_lines_up(b, row, int(offsets[u + 1] - offsets[u]), data, by_hand)  # the history's end
    for batch in timed.predict_dataloader():
        b = {k: v.numpy() for k, v in batch.items()}
        for row, u in enumerate(b["users"]):
            assert_row_lines_up(b, row, int(data.lengths[u]), data, by_hand)  # the whole history


def test_time_features_need_sasrec() -> None:
    with pytest.raises(ValueError, match="SASRec"):
        SeqRecDataModule(synthetic=SyntheticSpec(num_users=50, num_items=30, num_clusters=2), task="bert4rec",
                         time_features=True)


def test_model_side_features_change_the_output_and_validate() -> None:
    torch.manual_seed(0)
    config = ModelConfig(num_items=6, max_len=4, hidden_size=8, num_attributes=3, max_attributes=2,
                         num_time_buckets=5)
    model = SASRec(config).eval()
    seq = torch.tensor([[0, 1, 2, 3]])
    times = torch.tensor([[0, 1, 2, 3]])
    before = model(seq, times)
    table = torch.zeros(7, 2, dtype=torch.long)
    table[3] = torch.tensor([1, 2])
    model.set_item_attributes(table)
    after = model(seq, times)
    assert not torch.allclose(before[0, 3], after[0, 3])  # item 3 now carries attributes
    other = model(seq, torch.tensor([[0, 1, 1, 1]]))
    assert not torch.allclose(after[0, 3], other[0, 3])  # and the time buckets matter
    with pytest.raises(ValueError, match="time_buckets"):
        model(seq)
    with pytest.raises(ValueError, match="attribute table"):
        model.set_item_attributes(torch.zeros(3, 2, dtype=torch.long))
    table[1, 0] = 9
    with pytest.raises(ValueError, match="0..3"):
        model.set_item_attributes(table)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_fit_with_attributes_and_time_then_test_from_checkpoint(tiny: list[str], tmp_path: Path) -> None:
    from conftest import common
    from seqrec.cli import run

    attrs = tmp_path / "attrs.json"
    attrs.write_text(json.dumps({str(i): [f"a{i % 5}", f"b{i % 3}"] for i in range(1, 121)}))
    base = ["--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, *common(tmp_path, 1),
            f"--data.item_features={attrs}", "--data.time_features=true"]
    fit = run(["fit", *base, "--test_after_fit=false"])
    model = fit.model.model
    assert fit.model.hparams.num_attributes == 8 and fit.model.hparams.num_time_buckets > 0
    assert torch.equal(model.item_attributes, torch.from_numpy(fit.datamodule.attributes.table))
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    test = run(["test", *base, f"--ckpt_path={ckpt}"])
    assert torch.equal(test.model.model.item_attributes, model.item_attributes)  # restored from the checkpoint
    assert test.model.results["test"]["ndcg@10"] > 0
