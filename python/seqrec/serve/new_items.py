"""Items that were not in training, added to a trained model from their features alone (no retraining).

One rule for every place that takes them: ``Recommender.add_items``, ``seqrec predict --predict_new_items``
and ``seqrec export --new-items``. The new items get rows after the trained ones in the item encoder's
tables, with no ID weight, so their vectors are their features' projections; their dense ids follow the
catalogue's in file order.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from seqrec.serve.rules import rules_from_files
from seqrec.train.module import SeqRecModule


def add_new_items(module: SeqRecModule, features: str | os.PathLike[str] | Any, raw_item_ids: np.ndarray,
                  skip_known: bool = False) -> tuple[np.ndarray, list[str]]:
    """Appends the items of a feature file (or pyarrow table, the training layout) to ``module``'s model.

    ``raw_item_ids`` is the raw id of every scoring row so far (entry 0: padding). Returns the extended raw
    ids and the raw ids added, in file order. Items already there are refused, or with ``skip_known`` left
    out; attribute values training never saw are dropped from a bag, numbers normalised with the training
    statistics.
    """
    from seqrec.data.item_table import ItemFeatureTable

    model = module.model
    stored = (getattr(module, "catalogue", None) or {}).get("item_features")
    if stored is None and module.dataset is not None:
        stored = module.dataset.extra.get("item_features")
    if model.item_encoder is None or stored is None:
        raise ValueError("new items need a model trained with item features and model.feature_sides both "
                         "(this one scores only the items it was trained on)")
    if model.extra_tokens:
        raise ValueError("new items are supported for SASRec models (BERT4Rec's mask token sits where "
                         "they would go)")
    new = ItemFeatureTable.from_state(stored).encode_new(features, skip_known=skip_known)
    known = {str(r) for r in raw_item_ids[1:].tolist()}  # also items an earlier call added
    fresh = [j for j, r in enumerate(new.raw_ids) if r not in known]
    if len(fresh) < len(new.raw_ids) and not skip_known:
        clash = [r for r in new.raw_ids if r in known]
        raise ValueError(f"{new.source}: items {clash[:5]} are already in the catalogue (skip_known=True "
                         f"leaves them out)")
    if not fresh:
        return raw_item_ids, []
    new = dataclasses.replace(new, raw_ids=[new.raw_ids[j] for j in fresh], attributes=new.attributes[fresh],
                              numeric=new.numeric[fresh], numeric_present=new.numeric_present[fresh],
                              vectors=new.vectors[fresh])
    model.item_encoder.add_rows(torch.from_numpy(new.attributes), torch.from_numpy(new.numeric),
                                torch.from_numpy(new.numeric_present), torch.from_numpy(new.vectors),
                                len(new.raw_ids))
    ids: list[Any] = list(new.raw_ids)  # strings as the file gave them; integers in an integer catalogue
    if raw_item_ids.dtype.kind in "iu" and all(r.lstrip("-").isdigit() for r in ids):
        return np.concatenate([raw_item_ids, np.array([int(r) for r in ids], dtype=raw_item_ids.dtype)]), ids
    # One kind of id per catalogue (a written column has one type): integers and new names become strings.
    known_ids = raw_item_ids.tolist()
    if any(not isinstance(r, str) for r in known_ids[1:]):
        known_ids = [known_ids[0]] + [str(r) for r in known_ids[1:]]
    return np.array(known_ids + ids, dtype=object), list(new.raw_ids)


class PredictionCatalogue(pl.Callback):
    """``seqrec predict``'s catalogue: new items from a feature file, then the product rules over all items.

    Runs when prediction starts, after Lightning has restored the checkpoint (whose tables hold only the
    trained items): the new rows are appended then, and the rules (``--predict_allow`` /
    ``--predict_exclude``) may name new items too. The writer takes the extended raw ids from the module.
    """

    def __init__(self, new_items: str | None = None, allow: str | None = None, exclude: str | None = None):
        self.new_items, self.allow, self.exclude = new_items, allow, exclude
        self.added: list[str] = []

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, SeqRecModule)
        info = pl_module.dataset
        if info is None:
            raise ValueError("predict needs the data module's dataset description (use SeqRecDataModule)")
        raw = info.raw_item_ids
        if self.new_items is not None:
            try:
                raw, self.added = add_new_items(pl_module, self.new_items, raw)
            except ValueError as e:
                raise ValueError(f"--predict_new_items: {e}") from None  # e names the file
            pl_module.dataset = dataclasses.replace(info, raw_item_ids=raw)
        pl_module.set_item_rules(rules_from_files(raw, self.allow, self.exclude))
