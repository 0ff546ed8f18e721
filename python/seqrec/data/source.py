"""Where interactions come from: a file (any supported format, ``$SEQREC_DATA_DIR`` expanded) or synthetic data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqrec.data.features import attach_user_line_times
from seqrec.data.interactions import Interactions
from seqrec.data.loaders import load
from seqrec.data.synthetic import make_synthetic

DATA_DIR_ENV = "SEQREC_DATA_DIR"
DEFAULT_DATA_DIR = "../shared/data"


@dataclass
class SyntheticSpec:
    """Parameters of the built-in synthetic dataset (see ``seqrec.data.synthetic.make_synthetic``).

    Parameters
    ----------
    num_users : int
        Users generated.
    num_items : int
        Catalogue size (items no user ever picks are dropped, so the data may hold a few less).
    num_clusters : int
        Latent taste clusters the users and items belong to.
    mean_length : float
        Mean sequence length.
    follow_prob : float
        Chance that the next item is a learned successor of the previous one (what a sequential model can learn).
    stay_prob : float
        Chance that it is a popular item of the previous item's cluster (what item features of the cluster
        and the popularity can tell); otherwise a popular item of any cluster.
    seed : int
        Fixes the generated dataset.
    """

    num_users: int = 6000
    num_items: int = 2000
    num_clusters: int = 25
    mean_length: float = 20.0
    follow_prob: float = 0.75
    stay_prob: float = 0.15
    seed: int = 0


def resolve_data_path(path: str) -> Path:
    """Expands ``$SEQREC_DATA_DIR`` (default ``../shared/data``) and other environment variables in ``path``;
    the file must exist."""
    env = dict(os.environ)
    env.setdefault(DATA_DIR_ENV, DEFAULT_DATA_DIR)
    for name in (DATA_DIR_ENV, "{" + DATA_DIR_ENV + "}"):
        path = path.replace("$" + name, env[DATA_DIR_ENV])
    resolved = Path(os.path.expanduser(os.path.expandvars(path)))
    if not resolved.exists():
        raise FileNotFoundError(
            f"{resolved}: no such data file (set {DATA_DIR_ENV} to the folder holding the datasets, "
            f"or give an absolute path)"
        )
    return resolved


def absolute_data_path(path: str | None) -> str | None:
    """``path`` expanded (``resolve_data_path``) and made absolute, as a string: what a checkpoint stores, so
    that it finds its data from any working directory. None stays None."""
    return None if path is None else str(resolve_data_path(path).resolve())


def _recorded_path(path: str, option: str) -> Path:
    """A path a source recorded: an absolute one that is gone says so (the file moved since the fit)."""
    if Path(path).is_absolute() and not Path(path).exists():
        raise FileNotFoundError(
            f"{path}: no such file; the {option} recorded at fit time (a checkpoint stores absolute paths) has moved "
            f"or been deleted: give its new place with --data.{option} (Recommender.from_checkpoint: histories=)"
        )
    return resolve_data_path(path)


def load_source(source: dict[str, Any]) -> Interactions:
    """Interactions described by ``SeqRecDataModule.source()``: a file (and times file), or synthetic data."""
    if source.get("path") is None:
        return make_synthetic(**source.get("synthetic", {}))
    path = _recorded_path(source["path"], "path")
    fmt = source.get("format", "auto")
    if fmt in ("csv", "parquet") or (fmt == "auto" and path.suffix in (".csv", ".tsv", ".parquet")):
        user_col, item_col, time_col = source.get("columns", ("user_id", "item_id", "timestamp"))
        data = load(path, fmt, user_col=user_col, item_col=item_col, time_col=time_col,
                    delimiter=source.get("delimiter"))
    else:
        data = load(path, fmt)
    if source.get("timestamps") is not None:
        data = attach_user_line_times(data, _recorded_path(source["timestamps"], "timestamps"))
    return data
