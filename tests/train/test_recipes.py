"""The headline training recipes learn what popularity cannot: after a short training on the synthetic data,
each beats the popularity baseline's validation NDCG@10 by a stated margin.

In the synthetic data (``seqrec.data.synthetic``) the next item is mostly a successor of the last one, so a
working sequence model ranks it far above popularity (0.103 here), while a recipe whose negatives, logQ or
loss were wrong falls to the baseline or below it. Each margin sits well under the lowest of three measured
seeds (seed 0 runs here), quoted beside the recipe; each run takes seconds on one CPU thread.
"""

from typing import Any

import pytest
import pytorch_lightning as pl
import yaml
from conftest import ROOT
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.source import SyntheticSpec
from seqrec.train.module import SeqRecModule

SPEC = SyntheticSpec(num_users=1200, num_items=300, num_clusters=10, mean_length=15.0, seed=2)
BEAUTY_ITEMS = 54_542  # the Beauty catalogue the Beauty configs were written for


def config(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "configs" / name).read_text())


def validation_ndcg(architecture: str, model_kwargs: dict[str, Any], data_kwargs: dict[str, Any], epochs: int,
                    batch_size: int, lr: float, max_len: int = 20, seed: int = 0) -> tuple[float, float]:
    """(model, popularity) validation NDCG@10 after ``epochs`` of training, validated once at the end."""
    pl.seed_everything(seed, verbose=False)
    dm = SeqRecDataModule(synthetic=SPEC, seed=seed, task=architecture, max_len=max_len, batch_size=batch_size,
                          **{"mask_prob": 0.3, **data_kwargs})
    model = SeqRecModule(architecture=architecture, num_items=dm.num_items, max_len=max_len, hidden_size=32,
                         dropout=0.1, lr=lr, **model_kwargs)
    trainer = pl.Trainer(max_epochs=epochs, check_val_every_n_epoch=epochs, num_sanity_val_steps=0,
                         accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(model, datamodule=dm)
    results = model.results["val"]
    return results["ndcg@10"], results["popularity/ndcg@10"]


def bert4rec_beauty() -> tuple[dict[str, Any], dict[str, Any]]:
    """configs/bert4rec_beauty.yaml's recipe: cloze at its mask rate, sampled softmax over 1,024 uniform
    negatives shared by each sequence's positions (with replacement: the synthetic catalogue is smaller)."""
    c = config("bert4rec_beauty.yaml")
    model = {"loss": c["model"]["loss"]}
    data = {k: c["data"][k] for k in ("negatives", "num_negatives", "shared_negatives", "exclude_seen", "mask_prob")}
    assert c["model"]["architecture"] == "bert4rec" and data["num_negatives"] == 1024 and data["shared_negatives"]
    return model, data


def sasrec_beauty() -> tuple[dict[str, Any], dict[str, Any]]:
    """configs/sasrec_beauty.yaml's recipe: sampled softmax over one batch-wide uniform pool joined by the
    batch's targets, sparse item-table updates; the pool keeps its share of the catalogue (8,192 of 54,542)."""
    c = config("sasrec_beauty.yaml")
    model = {k: c["model"][k] for k in ("loss", "sparse_embeddings")}
    data = {k: c["data"][k] for k in ("negatives", "pool_in_batch", "pool_mask_history", "exclude_seen")}
    data["negative_pool"] = round(c["data"]["negative_pool"] / BEAUTY_ITEMS * SPEC.num_items)  # 45 of 300
    assert model["sparse_embeddings"] and data["pool_in_batch"]
    return model, data


# id: (architecture, model kwargs, data kwargs, training (epochs, batch size, lr, max_len), margin over popularity)
RECIPES: dict[str, tuple[Any, ...]] = {
    # gSASRec's loss with popularity negatives. Measured 3.41-3.56x at seeds 0-2 (it starts below popularity:
    # with 4 of 299 negatives the positive's term weighs 0.26, so it needs the higher learning rate).
    "gbce_popularity": ("sasrec", {"loss": "gbce"}, {"negatives": "popularity", "num_negatives": 4},
                        (8, 32, 0.01, 20), 2.0),
    # BERT4Rec, sampled softmax over in-batch negatives with logQ. Measured 3.12-3.22x (without logQ: 1.94x).
    "bert4rec_in_batch": ("bert4rec", {"loss": "sampled_softmax"}, {"negatives": "in_batch", "num_negatives": 16},
                          (15, 16, 0.003, 10), 2.5),
    # One set of uniform negatives per sequence, and windows every 4 items back in histories longer than 9.
    # Measured 4.39-4.52x.
    "shared_windows": ("sasrec", {"loss": "sampled_softmax"},
                       {"negatives": "uniform", "num_negatives": 32, "shared_negatives": True, "window_stride": 4},
                       (6, 64, 0.003, 8), 2.5),
    # 8 uniform plus 8 in-batch negatives per position, logQ of the mixture. Measured 3.98-4.11x.
    "mixed": ("sasrec", {"loss": "sampled_softmax"}, {"negatives": "mixed", "num_negatives": 8, "num_in_batch": 8},
              (6, 64, 0.003, 20), 2.5),
    # configs/bert4rec_beauty.yaml. Measured 2.72-3.05x.
    "bert4rec_beauty": ("bert4rec", *bert4rec_beauty(), (15, 16, 0.003, 10), 2.0),
    # configs/sasrec_beauty.yaml. Measured 4.06-4.13x.
    "sasrec_beauty": ("sasrec", *sasrec_beauty(), (6, 64, 0.003, 20), 2.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_recipe_beats_popularity_on_synthetic(recipe: str) -> None:
    architecture, model_kwargs, data_kwargs, (epochs, batch_size, lr, max_len), margin = RECIPES[recipe]
    ndcg, popularity = validation_ndcg(architecture, model_kwargs, data_kwargs, epochs, batch_size, lr, max_len)
    assert ndcg > margin * popularity, (recipe, ndcg, popularity)
