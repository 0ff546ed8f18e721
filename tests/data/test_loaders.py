from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from seqrec.data.errors import DataFormatError
from seqrec.data.loaders import detect_format, load, load_table


def sequences(data):
    return [data.raw_item_ids[data.sequence(u)].tolist() for u in range(data.num_users)]


def test_sasrec_format_groups_users_and_keeps_line_order(fixtures: Path) -> None:
    data = load(fixtures / "sasrec.txt")
    assert data.raw_user_ids.tolist() == [1, 2, 3]
    assert sequences(data) == [[10, 11, 12, 13], [10, 13, 14], [11]]
    assert data.offsets.tolist() == [0, 4, 7, 8]
    assert data.items.dtype == np.int32 and data.offsets.dtype == np.int64
    assert data.items.tolist() == [1, 2, 3, 4, 1, 4, 5, 2]
    assert data.raw_item_ids[0] == 0 and data.num_items == 5


def test_user_lines_format(fixtures: Path) -> None:
    data = load(fixtures / "user_lines.txt")
    assert detect_format(fixtures / "user_lines.txt") == "user_lines"
    assert data.raw_user_ids.tolist() == [7, 8, 9]
    assert sequences(data) == [[3, 1, 2], [2], [1, 2, 3, 4]]


def test_movielens_sorted_by_time_with_stable_ties(fixtures: Path) -> None:
    data = load(fixtures / "ratings.dat")
    # user 2 has 1357 and 1193 at the same second: file order decides.
    assert sequences(data) == [[3408, 1193, 914, 661], [1357, 1193, 3068]]
    assert data.timestamps is not None and data.timestamps[:4].tolist() == sorted(data.timestamps[:4].tolist())


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_table_formats_with_string_ids(fixtures: Path, tmp_path: Path, kind: str) -> None:
    path = fixtures / "interactions.csv"
    if kind == "parquet":
        path = tmp_path / "interactions.parquet"
        pq.write_table(pacsv.read_csv(fixtures / "interactions.csv"), path)
    data = load(path)
    assert data.raw_user_ids.tolist() == ["u1", "u2", "u3"]
    # u1: pear@20, then apple@30 and fig@30 tied, kept in file order.
    assert sequences(data) == [["pear", "apple", "fig"], ["apple", "pear"], ["fig"]]
    assert data.encode_items(["fig", "pear"]).tolist() == [2, 3]
    with pytest.raises(KeyError, match="banana"):
        data.encode_items(["banana"])


def test_table_custom_columns_and_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("who,what,when\n1,5,2\n1,6,1\n")
    data = load_table(path, user_col="who", item_col="what", time_col="when")
    assert data.raw_item_ids[data.sequence(0)].tolist() == [6, 5]
    with pytest.raises(DataFormatError, match=r"t\.csv.*missing column.*'user_id'"):
        load_table(path)


def test_table_empty_value_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("user_id,item_id,timestamp\n1,5,2\n1,,3\n")
    with pytest.raises(DataFormatError, match=r"t\.csv: line 3: empty value in column 'item_id'"):
        load(path)


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("cols.txt", "1 2\n1 2 3\n", r"cols\.txt:2: expected 2 columns"),
        ("nonint.txt", "1 2\n1 x7\n", r"nonint\.txt:2: item id 'x7' is not an integer"),
        ("neg.txt", "1 2\n-1 3\n", r"neg\.txt:2: user id -1 is negative"),
        ("empty.txt", "\n\n", r"empty\.txt: the file is empty"),
        ("bad.dat", "1::2::3::4\n1::2::3\n", r"bad\.dat:2: expected 4 fields"),
        ("badts.dat", "1::2::3::4\n1::2::3::noon\n", r"badts\.dat:2: timestamp 'noon'"),
    ],
)
def test_malformed_input_names_file_and_line(tmp_path: Path, name: str, text: str, pattern: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataFormatError, match=pattern):
        load(path, "sasrec" if name.endswith(".txt") else "auto")


def test_user_lines_rejects_repeated_user(tmp_path: Path) -> None:
    path = tmp_path / "dup.txt"
    path.write_text("1 2 3\n2 3\n1 4\n")
    with pytest.raises(DataFormatError, match=r"dup\.txt:3: user 1 already appeared on line 1"):
        load(path, "user_lines")


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        load(tmp_path / "nope.txt")
    (tmp_path / "a.txt").write_text("1 2\n")
    with pytest.raises(ValueError, match="unknown format"):
        load(tmp_path / "a.txt", "xml")


def test_corrupt_parquet_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataFormatError, match=r"broken\.parquet"):
        load(path)


def test_parquet_datetime_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "dt.parquet"
    ts = pa.array(np.array(["2020-01-02", "2020-01-01"], dtype="datetime64[s]"))
    pq.write_table(pa.table({"user_id": [1, 1], "item_id": [8, 9], "timestamp": ts}), path)
    data = load(path)
    assert data.raw_item_ids[data.sequence(0)].tolist() == [9, 8]


def test_csv_ids_are_read_exactly(tmp_path: Path) -> None:
    """Ids at and above 2**63 stay distinct (pyarrow would read them as floats), "2" and "2.0" are two ids."""
    f = tmp_path / "big.csv"
    f.write_text("user_id,item_id,timestamp\n"
                 f"{2**63},1,1\n{2**63 + 1},1,2\n{2**63},2,3\n7,2.0,4\n7,2,5\n")
    data = load(f)
    assert data.num_users == 3  # 2**63 and 2**63 + 1 are two users
    assert sorted(map(str, data.raw_item_ids[1:].tolist())) == ["1", "2", "2.0"]
    plain = tmp_path / "plain.csv"
    plain.write_text("user_id,item_id,timestamp\n1,10,1\n1,11,2\n")
    assert load(plain).raw_item_ids[1:].tolist() == [10, 11]  # plain integers stay integers


def test_fractional_times_sort_exactly_and_bad_times_are_named(tmp_path: Path) -> None:
    f = tmp_path / "frac.csv"
    f.write_text("user_id,item_id,timestamp\n1,10,5.7\n1,11,5.2\n1,12,5.9\n")
    data = load(f)
    assert data.raw_item_ids[data.items].tolist() == [11, 10, 12]  # 5.2 < 5.7 < 5.9, not file order
    for bad in ("inf", "1e300", "nan"):
        g = tmp_path / f"bad_{bad}.csv"
        g.write_text(f"user_id,item_id,timestamp\n1,10,1\n1,11,{bad}\n")
        # pyarrow reads "nan" as a missing value: that is named as an empty one
        with pytest.raises(DataFormatError, match=r"bad_.*\.csv: line 3: (timestamp .* is not a usable time|empty value)"):
            load(g)


def test_parquet_float_ids_are_refused(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "f.parquet"
    pq.write_table(pa.table({"user_id": [1.0, 2.0], "item_id": [1, 2], "timestamp": [1, 2]}), f)
    with pytest.raises(DataFormatError, match="floating-point ids"):
        load(f)


def test_byte_order_mark_and_non_utf8_text(tmp_path: Path) -> None:
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeff1 5\n1 6\n2 5\n".encode("utf-8"))
    assert load(bom).raw_user_ids.tolist() == [1, 2]  # the mark is not part of the first user id
    binary = tmp_path / "data.bin"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(DataFormatError, match=r"data\.bin: not a UTF-8 text file"):
        load(binary)


def test_a_directory_with_a_file_format_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for fmt in ("sasrec", "user_lines", "movielens", "csv", "parquet"):
        with pytest.raises(DataFormatError, match=f"is a directory, but data.format '{fmt}' reads a file"):
            load(folder, fmt)


def test_a_repeated_csv_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("user_id,item_id,item_id,timestamp\n1,2,3,4\n1,3,4,5\n")
    with pytest.raises(DataFormatError, match=r"dup.csv: column\(s\) \['item_id'\] appear more than once"):
        load(path)


def test_three_column_lines_are_not_taken_for_one_user_per_line(tmp_path: Path) -> None:
    """'user item timestamp' lines repeat users, which one-user-per-line files never do: the error says what
    the file looks like instead of 'user 1 already appeared on line 1'."""
    path = tmp_path / "rows.txt"
    path.write_text("1 5 100\n1 6 101\n2 5 102\n")
    with pytest.raises(DataFormatError, match="lines have 3 columns and the first column repeats"):
        load(path)
    path.write_text("1 5 6\n2 5\n3 7 8 9\n")  # a real one-user-per-line file is still detected
    assert detect_format(path) == "user_lines"


def test_tsv_is_split_on_tabs_and_the_delimiter_can_be_given(tmp_path: Path) -> None:
    tsv = tmp_path / "events.tsv"
    tsv.write_text("user_id\titem_id\ttimestamp\nu1\tpear, ripe\t20\nu1\tapple\t10\nu2\tfig\t5\n")
    data = load(tsv)  # detected as a table, split on tabs: the comma inside an id stays in it
    assert data.raw_user_ids.tolist() == ["u1", "u2"]
    assert sequences(data) == [["apple", "pear, ripe"], ["fig"]]
    semi = tmp_path / "events.csv"
    semi.write_text("user_id;item_id;timestamp\n1;5;2\n1;6;1\n")
    assert sequences(load(semi, delimiter=";")) == [[6, 5]]
    written_out = load_table(tsv.rename(tmp_path / "events.txt"), delimiter="\\t")  # '\t' as a shell passes it
    assert sequences(written_out) == [["apple", "pear, ripe"], ["fig"]]


def test_a_wrong_or_unusable_delimiter_is_named(tmp_path: Path) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text("user_id;item_id;timestamp\n1;5;2\n")
    with pytest.raises(DataFormatError, match=r"semi\.csv: missing column.*read with delimiter ','; the header "
                                              r"holds ';': set data\.delimiter"):
        load(semi)
    for bad in (";;", "", '"'):
        with pytest.raises(ValueError, match=r"semi\.csv: the delimiter \(data\.delimiter, --delimiter\) must be one"):
            load(semi, delimiter=bad)
