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
    """Parameters of the built-in synthetic dataset (see ``seqrec.data.synthetic.make_synthetic``)."""

    num_users: int = 6000
    num_items: int = 2000
    num_clusters: int = 25
    mean_length: float = 20.0
    follow_prob: float = 0.75
    seed: int = 0


def resolve_data_path(path: str) -> Path:
    """Expands ``$SEQREC_DATA_DIR`` (default ``../shared/data``) and other environment variables in ``path``."""
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


def load_source(source: dict[str, Any]) -> Interactions:
    """Interactions described by ``SeqRecDataModule.source()``: a file (and times file), or synthetic data."""
    if source.get("path") is None:
        return make_synthetic(**source.get("synthetic", {}))
    path = resolve_data_path(source["path"])
    fmt = source.get("format", "auto")
    if fmt in ("csv", "parquet") or (fmt == "auto" and path.suffix in (".csv", ".tsv", ".parquet")):
        user_col, item_col, time_col = source.get("columns", ("user_id", "item_id", "timestamp"))
        data = load(path, fmt, user_col=user_col, item_col=item_col, time_col=time_col)
    else:
        data = load(path, fmt)
    if source.get("timestamps") is not None:
        data = attach_user_line_times(data, resolve_data_path(source["timestamps"]))
    return data
