"""Item side features of three kinds (categorical bags, normalised numbers, dense vectors) as one aligned table."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from seqrec.data.errors import DataFormatError
from seqrec.data.features import ItemAttributes, load_item_attributes
from seqrec.data.interactions import Interactions

if TYPE_CHECKING:
    import pyarrow as pa

FeatureKind = Literal["categorical", "numeric", "vector"]
KINDS: tuple[FeatureKind, ...] = ("categorical", "numeric", "vector")
# The old layouts of load_item_attributes: S3-Rec JSON, or long rows of (item, attribute).
LONG_ATTRIBUTE_COL = "attribute"
# Several attributes in one string cell ("Shoes|Sports"); `|` rarely occurs inside a category name.
MULTI_SEPARATOR = "|"
STATE_VERSION = 1
# How many offending ids an error lists: enough to recognise the problem, short enough to read.
SHOW_IDS = 5


@dataclasses.dataclass(frozen=True, eq=False)
class ItemFeatureTable:
    """Side features of every dense item of a training catalogue, one row per item.

    Row 0 stands for padding and is all zero; row ``i`` holds dense item ``i`` (``1..num_items``).

    Parameters
    ----------
    raw_item_ids : list of str
        Raw id of each row as the string it is matched by; entry 0 (padding) is ``""``.
    attributes : np.ndarray
        int64, shape (rows, max_attributes): dense attribute ids ``1..num_attributes`` of the item's
        categorical values, 0-padded (as ``ItemAttributes.table``).
    attribute_vocab : list of str
        Raw attribute of each dense attribute id; entry 0 is padding ``""``. Values of the wide layout are
        namespaced ``column=value``; the old layouts keep their raw attributes.
    numeric : np.ndarray
        float32, shape (rows, num_numeric): ``(x - numeric_mean) / numeric_std``; 0 where missing.
    numeric_present : np.ndarray
        float32, shape (rows, num_numeric): 1 where the item had a value, else 0.
    numeric_mean, numeric_std : np.ndarray
        float64, shape (num_numeric,): training statistics over catalogue items with a value (std 0 -> 1).
    vectors : np.ndarray
        float32, shape (rows, vector_dim): the vector columns side by side in ``vector_names`` order;
        zeros for an item without a vector.
    has_features : np.ndarray
        bool, shape (rows,): True where the item had a row in the file.
    numeric_names, vector_names, categorical_names : list of str
        The columns of each kind, in file order.
    vector_dims : list of int
        Width of each vector column.
    unknown_items : int
        File rows whose item is not in the catalogue (ignored).
    layout : {"wide", "attributes"}
        ``"wide"``: one row per item with typed columns; ``"attributes"``: the old JSON or long layout.
    item_col : str
        The item id column of the file.
    source : str
        The file the table was read from.
    """

    raw_item_ids: list[str]
    attributes: np.ndarray
    attribute_vocab: list[str]
    numeric: np.ndarray
    numeric_present: np.ndarray
    numeric_names: list[str]
    numeric_mean: np.ndarray
    numeric_std: np.ndarray
    vectors: np.ndarray
    vector_names: list[str]
    vector_dims: list[int]
    has_features: np.ndarray
    categorical_names: list[str]
    unknown_items: int = 0
    layout: Literal["wide", "attributes"] = "wide"
    item_col: str = "item_id"
    source: str = "<memory>"

    @property
    def num_items(self) -> int:
        return len(self.raw_item_ids) - 1

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_vocab) - 1

    @property
    def max_attributes(self) -> int:
        return int(self.attributes.shape[1])

    @property
    def num_numeric(self) -> int:
        return len(self.numeric_names)

    @property
    def vector_dim(self) -> int:
        """Total width of all vector columns."""
        return int(sum(self.vector_dims))

    @property
    def coverage(self) -> float:
        """Share of catalogue items with a row in the feature file."""
        return float(self.has_features[1:].mean()) if self.num_items else 0.0

    def summary(self) -> dict[str, int | float]:
        """Counts for a dataset summary: items with and without features, ignored file rows, columns."""
        with_features = int(self.has_features[1:].sum())
        return {
            "items": self.num_items,
            "items_with_features": with_features,
            "items_without_features": self.num_items - with_features,
            "unknown_items": self.unknown_items,
            "attributes": self.num_attributes,
            "max_attributes": self.max_attributes,
            "categorical_columns": len(self.categorical_names),
            "numeric_columns": self.num_numeric,
            "vector_columns": len(self.vector_names),
            "vector_dim": self.vector_dim,
            "coverage": self.coverage,
        }

    def as_item_attributes(self) -> ItemAttributes:
        """The categorical part in the form the attribute-aware models already take."""
        return ItemAttributes(
            table=self.attributes,
            raw_ids=np.array(self.attribute_vocab, dtype=object),
            unknown_items=self.unknown_items,
        )

    def encode_new(self, source: str | os.PathLike[str] | pa.Table, skip_known: bool = False) -> NewItemFeatures:
        """Features of items outside the training catalogue, with the training vocab and statistics.

        Parameters
        ----------
        source : path or pyarrow.Table
            A file of the same layout as the training one (for the wide layout, also an in-memory table).
            It must hold every training feature column; other columns are ignored.
        skip_known : bool
            Leave out items that are in the training catalogue instead of refusing the file: they
            already have rows, and features computed twice could disagree.

        Returns
        -------
        NewItemFeatures
            One row per new item in file order, no padding row. Attributes never seen in training become
            0 (dropped from the bag) and are counted; numbers are normalised with the training mean and
            std; vector widths must equal the training ones.
        """
        index = {raw: i for i, raw in enumerate(self.raw_item_ids) if i > 0}
        if self.layout == "attributes":
            return self._encode_new_attributes(source, index, skip_known)
        wide = _read_wide(
            source,
            self.item_col,
            columns=self.categorical_names + self.numeric_names + self.vector_names,
            kinds={
                **{c: "categorical" for c in self.categorical_names},
                **{c: "numeric" for c in self.numeric_names},
                **{c: "vector" for c in self.vector_names},
            },
            vector_dims=dict(zip(self.vector_names, self.vector_dims)),
        )
        rows = _new_rows(wide.ids, index, skip_known, wide.source)
        vocab = {a: i for i, a in enumerate(self.attribute_vocab) if i > 0}
        bags, unseen = [], 0
        for r in rows:
            bag = []
            for token in _bag(wide, r):
                dense = vocab.get(token)
                if dense is None:
                    unseen += 1
                else:
                    bag.append(dense)
            bags.append(bag)
        numeric, present = _normalise(wide, rows, self.numeric_mean, self.numeric_std)
        return NewItemFeatures(
            raw_ids=[wide.ids[r] for r in rows],
            attributes=_pad(bags, self.max_attributes),
            numeric=numeric,
            numeric_present=present,
            vectors=_stack_vectors(wide, rows, self.vector_dim),
            unseen_attributes=unseen,
            skipped_known=len(wide.ids) - len(rows),
            source=wide.source,
        )

    def _encode_new_attributes(
        self, source: str | os.PathLike[str] | pa.Table, index: dict[str, int], skip_known: bool
    ) -> NewItemFeatures:
        if not isinstance(source, (str, os.PathLike)):
            raise TypeError(f"{self.source} is in the old attribute layout: pass a .json, .csv or .parquet path")
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such item feature file")
        ids = _old_layout_ids(path, self.item_col)
        rows = _new_rows(ids, index, skip_known, str(path))
        new = [ids[r] for r in rows]
        # The old parser reads and checks the file; a catalogue of just the new items gives their bags.
        local = load_item_attributes(path, _catalogue(np.array([""] + new, dtype=object)), self.item_col)
        vocab = {a: i for i, a in enumerate(self.attribute_vocab) if i > 0}
        to_train = np.array([0] + [vocab.get(str(a), 0) for a in local.raw_ids[1:].tolist()], dtype=np.int64)
        mapped = to_train[local.table[1:]]  # (N, A): 0 for padding and for attributes unseen in training
        unseen = int(((local.table[1:] != 0) & (mapped == 0)).sum())
        bags = [row[row != 0].tolist() for row in mapped]
        n = len(new)
        return NewItemFeatures(
            raw_ids=new,
            attributes=_pad(bags, self.max_attributes),
            numeric=np.zeros((n, 0), dtype=np.float32),
            numeric_present=np.zeros((n, 0), dtype=np.float32),
            vectors=np.zeros((n, 0), dtype=np.float32),
            unseen_attributes=unseen,
            skipped_known=len(ids) - n,
            source=str(path),
        )

    def to_state(self) -> dict[str, Any]:
        """Everything in plain values and CPU tensors, safe for ``torch.load(weights_only=True)``."""
        import torch

        return {
            "version": STATE_VERSION,
            "raw_item_ids": list(self.raw_item_ids),
            "attributes": torch.from_numpy(np.ascontiguousarray(self.attributes, dtype=np.int64)),
            "attribute_vocab": list(self.attribute_vocab),
            "numeric": torch.from_numpy(np.ascontiguousarray(self.numeric, dtype=np.float32)),
            "numeric_present": torch.from_numpy(np.ascontiguousarray(self.numeric_present, dtype=np.float32)),
            "numeric_names": list(self.numeric_names),
            "numeric_mean": [float(v) for v in self.numeric_mean],
            "numeric_std": [float(v) for v in self.numeric_std],
            "vectors": torch.from_numpy(np.ascontiguousarray(self.vectors, dtype=np.float32)),
            "vector_names": list(self.vector_names),
            "vector_dims": [int(d) for d in self.vector_dims],
            "has_features": torch.from_numpy(np.ascontiguousarray(self.has_features, dtype=np.bool_)),
            "categorical_names": list(self.categorical_names),
            "unknown_items": int(self.unknown_items),
            "layout": self.layout,
            "item_col": self.item_col,
            "source": self.source,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ItemFeatureTable:
        """The table of :meth:`to_state`; raises ``ValueError`` naming a missing key or another version."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"item feature state version {state.get('version')!r}, expected {STATE_VERSION}")
        fields = [f.name for f in dataclasses.fields(cls)]
        missing = [name for name in fields if name not in state]
        if missing:
            raise ValueError(f"item feature state lacks {missing}")

        def array(name: str, dtype: type) -> np.ndarray:
            value = state[name]
            value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            return np.ascontiguousarray(value, dtype=dtype)

        return cls(
            raw_item_ids=[str(v) for v in state["raw_item_ids"]],
            attributes=array("attributes", np.int64),
            attribute_vocab=[str(v) for v in state["attribute_vocab"]],
            numeric=array("numeric", np.float32),
            numeric_present=array("numeric_present", np.float32),
            numeric_names=list(state["numeric_names"]),
            numeric_mean=np.asarray(state["numeric_mean"], dtype=np.float64),
            numeric_std=np.asarray(state["numeric_std"], dtype=np.float64),
            vectors=array("vectors", np.float32),
            vector_names=list(state["vector_names"]),
            vector_dims=[int(d) for d in state["vector_dims"]],
            has_features=array("has_features", np.bool_),
            categorical_names=list(state["categorical_names"]),
            unknown_items=int(state["unknown_items"]),
            layout=state["layout"],
            item_col=str(state["item_col"]),
            source=str(state["source"]),
        )


@dataclasses.dataclass(frozen=True, eq=False)
class NewItemFeatures:
    """Features of items outside the training catalogue, encoded with the training vocab and statistics.

    Parameters
    ----------
    raw_ids : list of str
        The new items in file order, as strings (ids are matched as strings).
    attributes : np.ndarray
        int64, shape (N, A) with ``A >= `` the training ``max_attributes`` (wider only where a new item has
        more known attributes): training attribute ids, 0-padded.
    numeric, numeric_present : np.ndarray
        float32, shape (N, num_numeric): normalised with the training mean and std; 0 and 0 where missing.
    vectors : np.ndarray
        float32, shape (N, vector_dim); zeros where an item has no vector.
    unseen_attributes : int
        Attribute values of the new items that training never saw (encoded as 0, i.e. left out).
    skipped_known : int
        Items of the file that are in the training catalogue, left out with ``skip_known=True``.
    source : str
        The file or table the features came from.
    """

    raw_ids: list[str]
    attributes: np.ndarray
    numeric: np.ndarray
    numeric_present: np.ndarray
    vectors: np.ndarray
    unseen_attributes: int = 0
    skipped_known: int = 0
    source: str = "<memory>"


def load_item_features(
    path: str | os.PathLike[str],
    raw_item_ids: np.ndarray,
    item_col: str = "item_id",
    kinds: Mapping[str, FeatureKind] | None = None,
    columns: Sequence[str] | None = None,
) -> ItemFeatureTable:
    """Reads item features keyed by raw item id and aligns them with the dense training catalogue.

    Parameters
    ----------
    path : path
        ``.parquet`` or ``.csv`` with ``item_col`` and feature columns typed by pyarrow: list of floats ->
        vector; integer, float or bool -> numeric; string (``|`` separates several values) or list of
        strings or integers -> categorical. A CSV vector cell is ``"[0.1, 0.2]"`` or ``"0.1 0.2"`` and needs
        ``kinds``. A file of exactly ``item_col`` and ``attribute``, or a ``.json`` ``{item: [attributes]}``,
        is the old layout and loads as categorical only through :func:`load_item_attributes`.
    raw_item_ids : np.ndarray
        Raw id of each dense item, entry 0 standing for padding (``Interactions.raw_item_ids``). File ids
        are matched to these as strings, so ``"4"`` names item 4.
    item_col : str
        The item id column.
    kinds : mapping of column to kind, optional
        Overrides the detected kind, e.g. ``{"category_id": "categorical"}`` for integer category codes.
    columns : sequence of str, optional
        The feature columns to read; by default every column but ``item_col``.

    Returns
    -------
    ItemFeatureTable
        ``num_items + 1`` rows; file rows of items outside the catalogue are counted in ``unknown_items``.

    Raises
    ------
    DataFormatError
        Naming the file, and the column, row and item where there is one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such item feature file")
    ids = [str(v) for v in np.asarray(raw_item_ids).tolist()]
    if np.ndim(raw_item_ids) != 1 or not ids:
        raise ValueError("raw_item_ids must be a 1-D array with entry 0 for padding")
    index = {raw: i for i, raw in enumerate(ids) if i > 0}
    if len(index) != len(ids) - 1:
        twice = next(raw for i, raw in enumerate(ids) if i > 0 and index[raw] != i)
        raise ValueError(f"raw_item_ids: {twice!r} occurs twice (ids are matched as strings)")
    if _is_old_layout(path, item_col):
        if kinds or columns:
            raise ValueError(f"{path}: kinds and columns apply to the wide layout, not to (item, attribute) files")
        attrs = load_item_attributes(path, _catalogue(np.asarray(raw_item_ids)), item_col)
        rows = len(ids)
        return ItemFeatureTable(
            raw_item_ids=ids,
            attributes=attrs.table,
            attribute_vocab=[str(a) for a in attrs.raw_ids.tolist()],
            numeric=np.zeros((rows, 0), dtype=np.float32),
            numeric_present=np.zeros((rows, 0), dtype=np.float32),
            numeric_names=[],
            numeric_mean=np.zeros(0),
            numeric_std=np.ones(0),
            vectors=np.zeros((rows, 0), dtype=np.float32),
            vector_names=[],
            vector_dims=[],
            # The old parser keeps no record of which items were listed: an item listed with no
            # attributes looks the same as one never listed.
            has_features=(attrs.table != 0).any(axis=1),
            categorical_names=[LONG_ATTRIBUTE_COL],
            unknown_items=attrs.unknown_items,
            layout="attributes",
            item_col=item_col,
            source=str(path),
        )

    wide = _read_wide(path, item_col, columns=columns, kinds=kinds, vector_dims=None)
    rows_of = np.full(len(ids), -1, dtype=np.int64)  # file row of each dense item, -1 where it has none
    vocab: dict[str, int] = {}
    bags: list[list[int]] = [[] for _ in ids]
    unknown = 0
    # In file order, so attribute ids are numbered by first appearance as load_item_attributes numbers them.
    for r, raw in enumerate(wide.ids):
        dense = index.get(raw)
        if dense is None:
            unknown += 1
            continue
        rows_of[dense] = r
        bags[dense] = [vocab.setdefault(token, len(vocab) + 1) for token in _bag(wide, r)]
    has = rows_of >= 0
    listed = rows_of[has].tolist()  # file rows of catalogue items, in dense id order
    width = max(max((len(b) for b in bags), default=0), 1) if wide.categorical else 0
    attributes = _pad(bags, width)

    means, stds = [], []
    for _, values in wide.numeric:
        known = values[listed]
        known = known[~np.isnan(known)]
        mean = float(known.mean()) if known.size else 0.0
        std = float(known.std()) if known.size else 0.0
        means.append(mean)
        stds.append(std if std > 0 else 1.0)  # a constant column carries no signal; 1 keeps it finite
    mean_arr, std_arr = np.asarray(means, dtype=np.float64), np.asarray(stds, dtype=np.float64)
    numeric = np.zeros((len(ids), len(wide.numeric)), dtype=np.float32)
    present = np.zeros_like(numeric)
    numeric[has], present[has] = _normalise(wide, listed, mean_arr, std_arr)
    vectors = np.zeros((len(ids), sum(d for _, d, _, _ in wide.vectors)), dtype=np.float32)
    vectors[has] = _stack_vectors(wide, listed, vectors.shape[1])

    return ItemFeatureTable(
        raw_item_ids=ids,
        attributes=attributes,
        attribute_vocab=[""] + list(vocab),
        numeric=numeric,
        numeric_present=present,
        numeric_names=[name for name, _ in wide.numeric],
        numeric_mean=mean_arr,
        numeric_std=std_arr,
        vectors=vectors,
        vector_names=[name for name, _, _, _ in wide.vectors],
        vector_dims=[d for _, d, _, _ in wide.vectors],
        has_features=has,
        categorical_names=[name for name, _ in wide.categorical],
        unknown_items=unknown,
        layout="wide",
        item_col=item_col,
        source=wide.source,
    )


# ---------------------------------------------------------------- reading the wide layout


@dataclasses.dataclass
class _WideFile:
    """The parsed columns of a wide file, one entry per data row (row r is data row r + 1)."""

    source: str
    ids: list[str]
    categorical: list[tuple[str, list[list[str]]]]  # namespaced tokens per row
    numeric: list[tuple[str, np.ndarray]]  # float64 per row, NaN where missing
    vectors: list[tuple[str, int, np.ndarray, np.ndarray]]  # name, dim, float32 (n, dim), present bool (n,)


def _read_wide(
    source: str | os.PathLike[str] | pa.Table,
    item_col: str,
    columns: Sequence[str] | None,
    kinds: Mapping[str, str] | None,
    vector_dims: Mapping[str, int] | None,
) -> _WideFile:
    """Reads and checks a wide file or table; ``vector_dims`` fixes the vector widths (new items)."""
    import pyarrow as pa

    kinds = dict(kinds or {})
    for column, given in kinds.items():
        if given not in KINDS:
            raise ValueError(f"kinds[{column!r}] = {given!r}; expected one of {list(KINDS)}")
    if isinstance(source, pa.Table):
        table, name = source, "<table>"
    else:
        table, name = _read_arrow(Path(source), item_col, kinds), str(source)
    names = table.column_names
    if item_col not in names:
        raise DataFormatError(f"{name}: no item column {item_col!r}; the file has {names}")
    if table.num_rows == 0:
        raise DataFormatError(f"{name}: the file has no rows")
    selected = [c for c in names if c != item_col] if columns is None else list(columns)
    absent = [c for c in dict.fromkeys([*selected, *kinds]) if c not in names]
    if absent:
        raise DataFormatError(f"{name}: no column(s) {absent}; the file has {names}")
    if item_col in selected or item_col in kinds:
        raise ValueError(f"{name}: {item_col!r} is the item column, not a feature column")
    stray = [c for c in kinds if c not in selected]
    if stray:
        raise ValueError(f"{name}: kinds names {stray}, which columns={selected} leaves out")
    if not selected:
        raise DataFormatError(f"{name}: no feature columns besides {item_col!r}")

    ids = _item_ids(table.column(item_col), name, item_col)
    wide = _WideFile(source=name, ids=ids, categorical=[], numeric=[], vectors=[])
    for column in selected:
        data = _decode(table.column(column))
        kind: str | None = kinds.get(column) or _detect_kind(data.type)
        if kind is None:
            raise DataFormatError(
                f"{name}: column {column!r} has type {data.type}, which is no feature kind; "
                "name its kind in `kinds` or leave it out with `columns`"
            )
        where = _Where(name, column, ids)
        if kind == "categorical":
            wide.categorical.append((column, _categorical(data, where)))
        elif kind == "numeric":
            wide.numeric.append((column, _numeric(data, where)))
        else:
            dim = None if vector_dims is None else vector_dims[column]
            wide.vectors.append((column, *_vectors(data, where, dim)))
    return wide


def _read_arrow(path: Path, item_col: str, kinds: Mapping[str, str]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.suffix not in (".csv", ".parquet"):
        raise DataFormatError(f"{path}: item feature files are .parquet, .csv or .json, not {path.suffix!r}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such item feature file")
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path)
        # Ids stay text ("007" is not item 7); categories and CSV vector cells are parsed here, not guessed.
        types = {item_col: pa.string(), **{c: pa.string() for c, k in kinds.items() if k != "numeric"}}
        return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFormatError(f"{path}: {e}") from None


def _is_old_layout(path: Path, item_col: str) -> bool:
    """The S3-Rec JSON, or a file of exactly the item column and ``attribute`` (long rows)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.suffix == ".json":
        return True
    if path.suffix not in (".csv", ".parquet"):
        raise DataFormatError(f"{path}: item feature files are .parquet, .csv or .json, not {path.suffix!r}")
    try:
        names = pq.read_schema(path).names if path.suffix == ".parquet" else pacsv.open_csv(path).schema.names
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFormatError(f"{path}: {e}") from None
    return sorted(names) == sorted([item_col, LONG_ATTRIBUTE_COL])


def _old_layout_ids(path: Path, item_col: str) -> list[str]:
    """Item ids of an old-layout file in file order, read as load_item_attributes reads them.

    A malformed file gives ``[]``: load_item_attributes then reads it and raises its own error.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            return [str(k) for k in data] if isinstance(data, dict) else []
        table = pq.read_table(path) if path.suffix == ".parquet" else pacsv.read_csv(path)
        return list(dict.fromkeys(str(v) for v in table.column(item_col).to_pylist() if v is not None))
    except (ValueError, KeyError, pa.ArrowInvalid):
        return []


def _catalogue(raw_item_ids: np.ndarray) -> Interactions:
    """An interaction-free container around a catalogue, the form load_item_attributes takes."""
    return Interactions(
        offsets=np.zeros(1, dtype=np.int64),
        items=np.zeros(0, dtype=np.int32),
        raw_user_ids=np.zeros(0, dtype=np.int64),
        raw_item_ids=raw_item_ids,
    )


def _decode(column: pa.ChunkedArray) -> pa.Array:
    """One contiguous array; dictionary columns (pandas categoricals in parquet) as their values."""
    import pyarrow as pa

    data = column.combine_chunks()
    if pa.types.is_dictionary(data.type):
        data = data.cast(data.type.value_type)
    return data


def _is_list(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))


def _is_text(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _detect_kind(t: pa.DataType) -> FeatureKind | None:
    import pyarrow as pa

    if _is_list(t):
        value = t.value_type
        if pa.types.is_floating(value):
            return "vector"
        if _is_text(value) or pa.types.is_integer(value):
            return "categorical"
        return None
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return "numeric"
    if _is_text(t):
        return "categorical"
    return None


def _item_ids(column: pa.ChunkedArray, name: str, item_col: str) -> list[str]:
    import pyarrow as pa

    data = _decode(column)
    if not (_is_text(data.type) or pa.types.is_integer(data.type)):
        raise DataFormatError(f"{name}: item column {item_col!r} has type {data.type}; ids are integers or strings")
    ids: list[str] = []
    first: dict[str, int] = {}
    for r, value in enumerate(data.to_pylist(), 1):
        if value is None or value == "":
            raise DataFormatError(f"{name}: column {item_col!r}, row {r}: empty item id")
        raw = str(value)
        if raw in first:
            raise DataFormatError(f"{name}: column {item_col!r}: item {raw!r} appears in rows {first[raw]} and {r}")
        first[raw] = r
        ids.append(raw)
    return ids


@dataclasses.dataclass(frozen=True)
class _Where:
    """Where a value sits, for error messages: file, column and the item of each row."""

    source: str
    column: str
    ids: list[str]

    def error(self, row: int, what: str) -> DataFormatError:
        """``row`` counts from 0; the message counts data rows from 1."""
        return DataFormatError(f"{self.source}: column {self.column!r}, row {row + 1} (item {self.ids[row]!r}): {what}")


def _categorical(data: pa.Array, where: _Where) -> list[list[str]]:
    import pyarrow as pa

    t = data.type
    prefix = f"{where.column}="
    values = data.to_pylist()
    out: list[list[str]] = []
    if pa.types.is_null(t):
        return [[] for _ in values]
    if _is_text(t):
        for cell in values:
            parts = [] if cell is None else (p.strip() for p in cell.split(MULTI_SEPARATOR))
            out.append([prefix + p for p in parts if p])
        return out
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return [[] if v is None else [prefix + str(v)] for v in values]
    if pa.types.is_floating(t):
        # Integer codes come back as floats from pandas when a column has gaps: 3.0 is code 3.
        for r, v in enumerate(values):
            if v is None or math.isnan(v):
                out.append([])
            elif not v.is_integer():
                raise where.error(r, f"categorical value {v!r} is not an integer code")
            else:
                out.append([prefix + str(int(v))])
        return out
    if _is_list(t) and (_is_text(t.value_type) or pa.types.is_integer(t.value_type)):
        return [[prefix + str(v) for v in cell if v is not None and v != ""] if cell else [] for cell in values]
    raise DataFormatError(f"{where.source}: column {where.column!r} has type {t}, which cannot be categorical")


def _numeric(data: pa.Array, where: _Where) -> np.ndarray:
    """float64 per row, NaN where missing; pandas writes missing floats as NaN, so NaN counts as missing."""
    import pyarrow as pa

    t = data.type
    if pa.types.is_null(t):
        return np.full(len(data), np.nan)
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        values = data.cast(pa.float64()).to_numpy(zero_copy_only=False)
    elif _is_text(t):
        values = np.full(len(data), np.nan)
        for r, cell in enumerate(data.to_pylist()):
            if cell is None or not cell.strip():
                continue
            try:
                values[r] = float(cell)
            except ValueError:
                raise where.error(r, f"{cell!r} is not a number") from None
    else:
        raise DataFormatError(f"{where.source}: column {where.column!r} has type {t}, which cannot be numeric")
    bad = np.flatnonzero(np.isinf(values))
    if bad.size:
        raise where.error(int(bad[0]), f"value {values[bad[0]]} is not finite")
    return np.asarray(values, dtype=np.float64)


def _vectors(data: pa.Array, where: _Where, dim: int | None) -> tuple[int, np.ndarray, np.ndarray]:
    """(dim, float32 (n, dim), present (n,)); ``dim`` None takes the width of the first vector."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = data.type
    n = len(data)
    if pa.types.is_null(t):
        lengths, flat = np.full(n, -1, dtype=np.int64), np.zeros(0)
    elif _is_list(t) and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type)):
        # Column-wise: embedding files hold millions of floats, too many for a Python loop.
        lengths = pc.list_value_length(data).fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        values = data.flatten()
        if values.null_count:
            pos = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise where.error(_row_of(lengths, pos), "a vector entry is empty (null)")
        flat = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    elif (_is_list(t) and _is_text(t.value_type)) or _is_text(t):
        lengths, flat = _parse_vectors(data.to_pylist(), where, text_cells=_is_text(t))
    else:
        raise DataFormatError(f"{where.source}: column {where.column!r} has type {t}, which cannot be a vector")

    present = lengths >= 0
    if dim is None:
        if not present.any():
            raise DataFormatError(f"{where.source}: column {where.column!r} holds no vectors")
        first = int(np.flatnonzero(present)[0])
        dim = int(lengths[first])
        if dim == 0:
            raise where.error(first, "empty vector")
        expected = f"{dim} (as in row {first + 1})"
    else:
        expected = f"{dim} (the training width)"
    wrong = np.flatnonzero(present & (lengths != dim))
    if wrong.size:
        r = int(wrong[0])
        raise where.error(r, f"vector of length {lengths[r]}, expected {expected}")
    flat32 = flat.astype(np.float32)  # a value beyond float32's range becomes inf and is caught below
    bad = np.flatnonzero(~np.isfinite(flat32))
    if bad.size:
        raise where.error(_row_of(lengths, int(bad[0])), f"vector entry {flat[bad[0]]} is not finite")
    out = np.zeros((n, dim), dtype=np.float32)
    out[present] = flat32.reshape(-1, dim)
    return dim, out, present


def _parse_vectors(cells: list[Any], where: _Where, text_cells: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lengths (-1 where missing) and the flat values of vectors written as text."""
    lengths = np.full(len(cells), -1, dtype=np.int64)
    flat: list[float] = []
    for r, cell in enumerate(cells):
        if cell is None:
            continue
        if text_cells:
            if not cell.strip():
                continue
            cell = cell.strip().removeprefix("[").removesuffix("]").replace(",", " ").split()
        for token in cell:
            try:
                flat.append(float(token))
            except (TypeError, ValueError):
                raise where.error(r, f"vector entry {token!r} is not a number") from None
        lengths[r] = len(cell)
    return lengths, np.asarray(flat, dtype=np.float64)


def _row_of(lengths: np.ndarray, position: int) -> int:
    """The row whose vector holds flat entry ``position``."""
    ends = np.cumsum(np.maximum(lengths, 0))
    return int(np.searchsorted(ends, position, side="right"))


# ---------------------------------------------------------------- assembling rows


def _bag(wide: _WideFile, row: int) -> list[str]:
    """The distinct attribute tokens of a file row over all categorical columns, first seen first."""
    return list(dict.fromkeys(token for _, cells in wide.categorical for token in cells[row]))


def _pad(bags: list[list[int]], width: int) -> np.ndarray:
    out = np.zeros((len(bags), max([width, *map(len, bags)])), dtype=np.int64)
    for i, bag in enumerate(bags):
        out[i, : len(bag)] = bag
    return out


def _normalise(wide: _WideFile, rows: list[int], mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numbers of file ``rows`` as (normalised float32 with 0 where missing, presence float32)."""
    if not wide.numeric:
        empty = np.zeros((len(rows), 0), dtype=np.float32)
        return empty, empty.copy()
    raw = np.stack([values[rows] for _, values in wide.numeric], axis=1)  # (N, F)
    present = ~np.isnan(raw)
    normalised = np.where(present, (raw - mean) / std, 0.0)
    return normalised.astype(np.float32), present.astype(np.float32)


def _stack_vectors(wide: _WideFile, rows: list[int], width: int) -> np.ndarray:
    if not wide.vectors:
        return np.zeros((len(rows), width), dtype=np.float32)
    return np.concatenate([values[rows] for _, _, values, _ in wide.vectors], axis=1)


def _new_rows(ids: list[str], index: dict[str, int], skip_known: bool, source: str) -> list[int]:
    """File rows of items outside the training catalogue; refuses known ones unless ``skip_known``."""
    known = [raw for raw in ids if raw in index]
    if known and not skip_known:
        shown = ", ".join(repr(raw) for raw in known[:SHOW_IDS]) + (", ..." if len(known) > SHOW_IDS else "")
        raise DataFormatError(
            f"{source}: {len(known)} item(s) are in the training catalogue and already have features ({shown}); "
            "pass skip_known=True to leave them out"
        )
    return [r for r, raw in enumerate(ids) if raw not in index]
