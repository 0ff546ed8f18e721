"""Readers for the interaction formats users bring: SASRec text, one user per line, MovieLens, CSV, parquet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from seqrec.data.errors import DataFormatError
from seqrec.data.interactions import Interactions
from seqrec.data.prepared import load_prepared
from seqrec.data.text import parse_int, read_lines

FORMATS = ("auto", "sasrec", "user_lines", "movielens", "csv", "parquet", "prepared")


def load_sasrec(path: str | os.PathLike[str]) -> Interactions:
    """``user item`` per line (whitespace separated), each user's lines in time order (the SASRec format)."""
    path = Path(path)
    users: list[int] = []
    items: list[int] = []
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise DataFormatError(f"{path}:{lineno}: expected 2 columns 'user item', got {len(parts)}: {line!r}")
        users.append(parse_int(parts[0], path, lineno, "user id"))
        items.append(parse_int(parts[1], path, lineno, "item id"))
    return Interactions.from_arrays(np.array(users), np.array(items), source=str(path))


def load_user_lines(path: str | os.PathLike[str]) -> Interactions:
    """One user per line: ``user item1 item2 ...`` in time order (the S3-Rec format)."""
    path = Path(path)
    users: list[int] = []
    items: list[int] = []
    seen: dict[int, int] = {}
    for lineno, line in enumerate(read_lines(path), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataFormatError(f"{path}:{lineno}: expected 'user item1 item2 ...', got {line!r}")
        user = parse_int(parts[0], path, lineno, "user id")
        if user in seen:
            raise DataFormatError(f"{path}:{lineno}: user {user} already appeared on line {seen[user]}")
        seen[user] = lineno
        users.extend([user] * (len(parts) - 1))
        items.extend(parse_int(t, path, lineno, "item id") for t in parts[1:])
    return Interactions.from_arrays(np.array(users), np.array(items), source=str(path))


def load_movielens(path: str | os.PathLike[str]) -> Interactions:
    """MovieLens ``ratings.dat``: ``user::item::rating::timestamp``, ordered by timestamp per user."""
    path = Path(path)
    rows: list[tuple[int, int, int]] = []
    for lineno, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.strip().split("::")
        if len(parts) != 4:
            raise DataFormatError(
                f"{path}:{lineno}: expected 4 fields 'user::item::rating::timestamp', got {len(parts)}: {line!r}"
            )
        rows.append(
            (
                parse_int(parts[0], path, lineno, "user id"),
                parse_int(parts[1], path, lineno, "item id"),
                parse_int(parts[3], path, lineno, "timestamp"),
            )
        )
    arr = np.array(rows, dtype=np.int64)
    return Interactions.from_arrays(arr[:, 0], arr[:, 1], order=arr[:, 2], timestamps=arr[:, 2], source=str(path))


def load_table(
    path: str | os.PathLike[str],
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    delimiter: str | None = None,
) -> Interactions:
    """CSV, TSV or parquet with user, item and (optional) timestamp columns, read by pyarrow.

    Rows are ordered by timestamp within each user, ties kept in file order. Ids may be integers or strings.
    ``delimiter`` separates the fields of a text file; None: a tab for ``.tsv``, a comma otherwise
    (``\\t`` written out, as a command line gives it, means a tab).
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            # Ids as text, never inferred: pyarrow would read 2**63 as a float (merging distinct ids) and
            # "2.0" as 2; ids_from_text decides exactly.
            as_text = {c: pa.string() for c in (user_col, item_col)}
            options = pacsv.ConvertOptions(column_types=as_text, strings_can_be_null=True)
            parse = pacsv.ParseOptions(delimiter=text_delimiter(path, delimiter))
            table = pacsv.read_csv(path, parse_options=parse, convert_options=options)
    except pa.ArrowInvalid as e:
        raise DataFormatError(f"{path}: {e}") from None
    names = table.column_names
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise DataFormatError(f"{path}: column(s) {repeated} appear more than once in the header {names}")
    wanted = [c for c in (user_col, item_col, time_col) if c is not None]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        hint = ""
        if path.suffix != ".parquet" and len(names) == 1:  # one column: perhaps split on the wrong character
            used = text_delimiter(path, delimiter)
            other = next((d for d in ("\t", ",", ";", "|") if d != used and d in names[0]), None)
            if other is not None:
                hint = f" (read with delimiter {used!r}; the header holds {other!r}: set data.delimiter / --delimiter)"
        raise DataFormatError(f"{path}: missing column(s) {missing}; the file has {table.column_names}{hint}")
    if table.num_rows == 0:
        raise DataFormatError(f"{path}: the file is empty")
    cols = {}
    for c in wanted:
        col = table.column(c)
        if col.null_count:
            first = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            # Row r of the table is line r + 2 of a CSV (1-based, after the header).
            where = f"line {first + 2}" if path.suffix != ".parquet" else f"row {first}"
            raise DataFormatError(f"{path}: {where}: empty value in column {c!r}")
        cols[c] = col.to_numpy(zero_copy_only=False)
    where = (lambda r: f"line {r + 2}") if path.suffix != ".parquet" else (lambda r: f"row {r}")
    for c in (user_col, item_col):
        cols[c] = exact_ids(cols[c], path, c, where)
    order = timestamps = None
    if time_col is not None:
        order, timestamps = exact_times(cols[time_col], path, time_col, where)
    return Interactions.from_arrays(cols[user_col], cols[item_col], order=order, timestamps=timestamps,
                                    source=str(path))


_INT64 = (-(2**63), 2**63 - 1)


def text_delimiter(path: Path, delimiter: str | None) -> str:
    """The field separator of a CSV/TSV file: ``delimiter`` (one character; ``\\t`` means a tab), or by the
    extension a tab for ``.tsv`` and a comma otherwise."""
    if delimiter is None:
        return "\t" if path.suffix.lower() == ".tsv" else ","
    if delimiter == "\\t":
        return "\t"
    if len(delimiter) != 1 or delimiter in ('"', "\n", "\r"):
        raise ValueError(f"{path}: the delimiter (data.delimiter, --delimiter) must be one character other than "
                         f"a quote or a line break, such as ',' or '\\t', got {delimiter!r}")
    return delimiter


def exact_ids(values: np.ndarray, path: Path, column: str, where: Any) -> np.ndarray:
    """Ids as they are: integers (int64, when every value is a plain integer that fits) or strings.

    Floating-point ids are refused (two ids that round to the same float would merge silently).
    """
    if values.dtype.kind in "iu":
        if values.dtype.kind == "u" and values.size and values.max() > _INT64[1]:
            row = int(np.argmax(values > _INT64[1]))
            raise DataFormatError(f"{path}: {where(row)}: {column} {values[row]} does not fit in int64")
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        raise DataFormatError(f"{path}: column {column!r} holds floating-point ids; ids must be integers or "
                              "strings (a float cannot tell every integer id apart)")
    text = values.astype(str)
    plain = np.char.isdigit(np.char.lstrip(text, "-")) & (np.char.count(text, "-") <= 1) & ~np.char.endswith(text, "-")
    if plain.all():
        as_int = [int(t) for t in text.tolist()]
        if all(_INT64[0] <= v <= _INT64[1] for v in as_int):
            return np.asarray(as_int, dtype=np.int64)
    return text.astype(object)


def exact_times(values: np.ndarray, path: Path, column: str, where: Any) -> tuple[np.ndarray, np.ndarray]:
    """(sort key, int64 seconds) of a time column: exact order for fractional times, a clear error for values
    that are not finite or do not fit in int64 seconds (they would otherwise sort first silently)."""
    if values.dtype.kind == "M":
        seconds = values.astype("datetime64[s]").astype(np.int64)
        return seconds, seconds
    if values.dtype.kind in "iu":
        if values.dtype.kind == "u" and values.size and values.max() > _INT64[1]:
            row = int(np.argmax(values > _INT64[1]))
            raise DataFormatError(f"{path}: {where(row)}: {column} {values[row]} does not fit in int64 seconds")
        seconds = values.astype(np.int64)
        return seconds, seconds
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (np.abs(values) >= 2.0**63)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataFormatError(f"{path}: {where(row)}: {column} {values[row]!r} is not a usable time "
                                  "(not finite, or beyond int64 seconds)")
        return values, np.floor(values).astype(np.int64)  # order by the exact value; whole seconds kept
    raise DataFormatError(f"{path}: timestamp column {column!r} is {values.dtype}, not numeric or datetime")


def detect_format(path: str | os.PathLike[str]) -> str:
    """Guesses the format from the extension, and for text files from the first lines."""
    path = Path(path)
    if path.is_dir():
        return "prepared"
    if path.suffix == ".dat":
        return "movielens"
    if path.suffix in (".csv", ".tsv"):
        return "csv"
    if path.suffix == ".parquet":
        return "parquet"
    try:
        with open(path, encoding="utf-8-sig") as f:
            head = [line.split() for _, line in zip(range(100), f) if line.strip()]
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not a UTF-8 text file ({e}); give data.format for binary formats") from None
    if head and all(len(p) == 2 for p in head):
        return "sasrec"
    firsts = [p[0] for p in head]
    if len(set(firsts)) < len(firsts):
        # One user per line is the only other text format, and it never repeats a user: lines such as
        # 'user item timestamp' would otherwise be misread as a user with two items, then fail confusingly.
        widths = sorted({len(p) for p in head})
        raise DataFormatError(
            f"{path}: lines have {'/'.join(map(str, widths))} columns and the first column repeats, which fits "
            "neither text format: 'user item' lines (sasrec) have 2 columns, and one user per line "
            "('user item1 item2 ...', user_lines) never repeats a user. For 'user item timestamp' rows, write a "
            "CSV with a header (user_id,item_id,timestamp)"
        )
    return "user_lines"


def load(path: str | os.PathLike[str], format: str = "auto", **table_kwargs: str | None) -> Interactions:
    """Loads interactions from ``path`` in ``format`` (one of ``FORMATS``)."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; choose one of {FORMATS}")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if format == "auto":
        format = detect_format(path)
    elif path.is_dir() and format != "prepared":
        raise DataFormatError(f"{path}: is a directory, but data.format {format!r} reads a file; a directory is "
                              "a prepared dataset (data.format prepared or auto)")
    if format == "sasrec":
        return load_sasrec(path)
    if format == "user_lines":
        return load_user_lines(path)
    if format == "movielens":
        return load_movielens(path)
    if format == "prepared":
        return load_prepared(path)
    return load_table(path, **table_kwargs)  # type: ignore[arg-type]
