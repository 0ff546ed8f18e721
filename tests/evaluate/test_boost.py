"""The warm/cold trade-off of ``model.new_item_boost`` (``seqrec.evaluate.boost``)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import pytorch_lightning as pl
import torch

from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.source import SyntheticSpec
from seqrec.data.synthetic import synthetic_item_features
from seqrec.evaluate.boost import boost_curve, choose_boost
from seqrec.train.module import SeqRecModule

SPEC = SyntheticSpec(num_users=600, num_items=150, num_clusters=5, follow_prob=0.0, stay_prob=0.85, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[SeqRecDataModule, SeqRecModule]:
    path = tmp_path_factory.mktemp("boost") / "items.csv"
    pacsv.write_csv(pa.table(synthetic_item_features(SPEC.num_items, SPEC.num_clusters, 0.9, SPEC.seed)), path)
    dm = SeqRecDataModule(synthetic=SPEC, max_len=20, batch_size=64, task="sasrec", negatives="uniform",
                          item_features=str(path), cold_items=0.2, seed=5)
    dm.setup("fit")
    torch.manual_seed(0)
    m = SeqRecModule(num_items=dm.num_items, max_len=20, hidden_size=16, num_blocks=1, loss="ce", lr=0.01,
                     num_attributes=dm.num_attributes, max_attributes=dm.max_attributes, num_numeric=dm.num_numeric,
                     feature_sides="both", id_dropout=0.3, unknown_id="learned")
    pl.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
               accelerator="cpu").fit(m, dm)
    return dm, m


def test_the_curve_trades_warm_for_cold_targets_and_starts_at_the_model(trained) -> None:
    dm, m = trained
    curve = boost_curve(m, dm.val_dataloader(), boosts=(0.5, 2.0, 0.0, 8.0))
    assert [p["boost"] for p in curve] == [0.0, 0.5, 2.0, 8.0]
    # Lifting every new item by one constant can only lift a new target and sink a known one: exact, not
    # statistical.
    for a, b in zip(curve, curve[1:]):
        assert b["cold"] >= a["cold"] and b["warm"] <= a["warm"], curve
    assert curve[-1]["cold"] > curve[0]["cold"] and curve[-1]["warm"] < curve[0]["warm"]
    # The unboosted point is what validation reports for the model itself.
    r = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu").validate(m, dm, verbose=False)[0]
    assert curve[0]["warm"] == pytest.approx(r["val/warm/ndcg@10"], rel=1e-5)
    assert curve[0]["cold"] == pytest.approx(r["val/cold/ndcg@10"], rel=1e-5)
    # The module's own boost applies at inference and gives the curve's point.
    m.model.config.new_item_boost = 2.0
    r2 = pl.Trainer(logger=False, enable_progress_bar=False, accelerator="cpu").validate(m, dm, verbose=False)[0]
    m.model.config.new_item_boost = 0.0
    assert r2["val/cold/ndcg@10"] == pytest.approx(curve[2]["cold"], rel=1e-5)
    assert r2["val/warm/ndcg@10"] == pytest.approx(curve[2]["warm"], rel=1e-5)


def test_the_chosen_boost_is_the_largest_within_the_warm_tolerance() -> None:
    curve = [{"boost": 0.0, "warm": 0.10, "cold": 0.01}, {"boost": 0.1, "warm": 0.099, "cold": 0.02},
             {"boost": 0.2, "warm": 0.0975, "cold": 0.03}, {"boost": 0.3, "warm": 0.0990, "cold": 0.04}]
    assert choose_boost(curve, 0.02) == 0.1  # 0.2 costs 2.5%; 0.3 lies past it and is not taken
    assert choose_boost(curve, 0.03) == 0.3
    assert choose_boost(curve, 0.0) == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        choose_boost(curve, 1.0)
    with pytest.raises(ValueError, match="unboosted"):
        choose_boost(curve[1:])


def test_a_model_without_the_item_encoder_or_a_split_without_cold_targets_is_refused(trained) -> None:
    dm, m = trained
    with pytest.raises(ValueError, match="feature_sides both"):
        boost_curve(SeqRecModule(num_items=10), [])
    batch = next(iter(dm.val_dataloader()))
    with pytest.raises(ValueError, match="cold_targets"):
        boost_curve(m, [{k: v for k, v in batch.items() if k != "cold_targets"}])
    with pytest.raises(ValueError, match="new_item_boost"):
        SeqRecModule(num_items=10, new_item_boost=0.5)
