"""The data module's description of its dataset: what the model, the checkpoint and ``Recommender`` need of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Version of the description stored in checkpoints; 0 is the older {"raw_item_ids", "source"} dict.
VERSION = 1


@dataclass(frozen=True, eq=False)
class DatasetInfo:
    """One frozen description of a prepared dataset, handed to the model once (``SeqRecModule.attach_dataset``).

    Attributes
    ----------
    name, split : str
        The dataset's name and the split (``leave_one_out`` or ``time``).
    num_items : int
        Catalogue size (dense ids 1..num_items).
    raw_item_ids, raw_user_ids : np.ndarray
        Raw id of each dense item (entry 0 stands for padding) and of each dense user.
    source : dict
        What reloads the interactions (``seqrec.data.source.load_source``); its paths are absolute, so a
        checkpoint finds its data from any working directory.
    train_item_counts : np.ndarray
        Training interactions per dense item, (num_items + 1,): the popularity baseline's scores.
    attributes : np.ndarray or None
        (num_items + 1, A) attribute ids per item, 0-padded, when the data has item attributes.
    sampled_eval, num_sampled : str, int
        The sampled evaluation protocol (``none``, ``uniform``, ``popularity``) and its negatives per user.
    hyperparameters : dict
        The data module's arguments (``SeqRecDataModule.hyperparameters``): with ``--ckpt_path`` and no data
        options, the CLI builds the same data module from them.
    """

    name: str
    split: str
    num_items: int
    raw_item_ids: np.ndarray
    raw_user_ids: np.ndarray
    source: dict[str, Any]
    train_item_counts: np.ndarray
    attributes: np.ndarray | None = None
    sampled_eval: str = "none"
    num_sampled: int = 0
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_checkpoint(self) -> dict[str, Any]:
        """What a checkpoint keeps (the catalogue, where the data came from and the data module's arguments),
        with the format version. ``data`` is absent from checkpoints of older seqrec versions."""
        return {
            "version": VERSION,
            "name": self.name,
            "split": self.split,
            "num_items": self.num_items,
            "raw_item_ids": np.asarray(self.raw_item_ids).tolist(),
            "source": self.source,
            "sampled_eval": self.sampled_eval,
            "num_sampled": self.num_sampled,
            "data": self.hyperparameters,
            # The feature vocab and numeric statistics: what encodes items added after training.
            **({"item_features": self.extra["item_features"]} if "item_features" in self.extra else {}),
        }


def catalogue_from_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The stored description of a checkpoint (``to_checkpoint``'s dict), from any version; None if absent."""
    stored = checkpoint.get("seqrec_dataset")
    if stored is not None:
        if stored.get("version", 0) > VERSION:
            raise ValueError(f"checkpoint dataset description version {stored['version']} is newer than this "
                             f"seqrec understands ({VERSION}); upgrade seqrec")
        return stored
    legacy = checkpoint.get("seqrec")  # version 0
    if legacy is not None:
        return {"version": 0, **legacy}
    return None
