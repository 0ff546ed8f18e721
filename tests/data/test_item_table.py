"""Item feature tables: the wide layout's three kinds, alignment, errors, old layouts, new items, checkpoint state."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from seqrec.data.errors import DataFormatError
from seqrec.data.features import load_item_attributes
from seqrec.data.interactions import Interactions
from seqrec.data.item_table import ItemFeatureTable, load_item_features


def catalogue() -> np.ndarray:
    # dense ids follow sorted raw ids: 4 -> 1, 5 -> 2, 83 -> 3, 165 -> 4
    data = Interactions.from_arrays(np.array([7, 7, 7, 9, 9]), np.array([4, 83, 165, 83, 5]))
    assert data.raw_item_ids.tolist() == [0, 4, 5, 83, 165]
    return data.raw_item_ids


def write_parquet(path: Path, columns: dict) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def tokens(table: ItemFeatureTable, row: int) -> list[str]:
    return [table.attribute_vocab[a] for a in table.attributes[row] if a]


@pytest.fixture
def wide(tmp_path: Path) -> Path:
    """Items 83, 4, 999 (not in the catalogue), 165 in that order; item 5 has no row."""
    return write_parquet(
        tmp_path / "items.parquet",
        {
            "item_id": [83, 4, 999, 165],
            "brand": ["acme", "zeta", "acme", None],
            "tags": [["x", "y"], ["y"], ["q"], []],
            "price": [10.0, 30.0, 1000.0, None],
            "emb": pa.array([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0], None], type=pa.list_(pa.float32())),
        },
    )


def test_wide_parquet_aligns_rows_with_dense_ids_and_counts_unknown_items(wide: Path) -> None:
    t = load_item_features(wide, catalogue())
    assert t.attributes.shape[0] == t.numeric.shape[0] == t.vectors.shape[0] == 5
    assert t.has_features.tolist() == [False, True, False, True, True]
    assert t.unknown_items == 1  # item 999
    assert tokens(t, 1) == ["brand=zeta", "tags=y"]  # raw 4
    assert tokens(t, 3) == ["brand=acme", "tags=x", "tags=y"]  # raw 83
    assert tokens(t, 2) == [] and tokens(t, 4) == [] and tokens(t, 0) == []
    # Ids are numbered in file order; 999's "q" never enters the vocab.
    assert t.attribute_vocab == ["", "brand=acme", "tags=x", "tags=y", "brand=zeta"]
    assert t.categorical_names == ["brand", "tags"]
    assert t.num_attributes == 4 and t.max_attributes == 3
    assert t.vector_names == ["emb"] and t.vector_dims == [2] and t.vector_dim == 2
    assert t.vectors.dtype == np.float32
    np.testing.assert_array_equal(t.vectors, [[0, 0], [3, 4], [0, 0], [1, 2], [0, 0]])
    assert t.numeric_names == ["price"] and t.num_numeric == 1
    assert t.coverage == pytest.approx(0.75)
    assert t.summary() == {
        "items": 4,
        "items_with_features": 3,
        "items_without_features": 1,
        "unknown_items": 1,
        "attributes": 4,
        "max_attributes": 3,
        "categorical_columns": 2,
        "numeric_columns": 1,
        "vector_columns": 1,
        "vector_dim": 2,
        "coverage": 0.75,
    }


def test_numeric_normalised_over_catalogue_items_with_a_value(wide: Path) -> None:
    t = load_item_features(wide, catalogue())
    # 999's 1000 is outside the catalogue and 165's price is missing: the statistics see 30 and 10 only.
    known = np.array([30.0, 10.0])
    mean, std = known.mean(), known.std()
    assert (mean, std) == (20.0, 10.0)
    np.testing.assert_allclose(t.numeric_mean, [mean])
    np.testing.assert_allclose(t.numeric_std, [std])
    assert t.numeric.dtype == np.float32 and t.numeric_present.dtype == np.float32
    np.testing.assert_allclose(t.numeric[:, 0], [0.0, (30 - mean) / std, 0.0, (10 - mean) / std, 0.0])
    assert t.numeric_present[:, 0].tolist() == [0, 1, 0, 1, 0]


def test_missing_values_nan_and_constant_columns(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "n.parquet",
        {
            "item_id": [4, 5, 83, 165],
            "size": [1.0, float("nan"), 4.0, 7.0],  # pandas writes a missing float as NaN
            "stock": pa.array([3, None, 3, 3], type=pa.int64()),
            "flag": [True, False, True, None],
        },
    )
    t = load_item_features(path, catalogue())
    size = np.array([1.0, 4.0, 7.0])
    np.testing.assert_allclose(t.numeric_mean, [size.mean(), 3.0, 2 / 3])
    np.testing.assert_allclose(t.numeric_std, [size.std(), 1.0, np.array([1.0, 0.0, 1.0]).std()])  # std 0 -> 1
    np.testing.assert_allclose(t.numeric[1:, 0], [(1 - 4) / size.std(), 0.0, 0.0, (7 - 4) / size.std()], rtol=1e-6)
    np.testing.assert_array_equal(t.numeric[1:, 1], [0, 0, 0, 0])  # (3 - 3) / 1 and the missing one
    np.testing.assert_array_equal(t.numeric_present[1:], [[1, 1, 1], [0, 0, 1], [1, 1, 1], [1, 1, 0]])
    assert np.isfinite(t.numeric).all()


def test_csv_pipe_separated_categoricals_are_namespaced_and_ids_match_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('item_id,colour,material,price\n007,red|blue,red,1.5\nb, blue |,,2.5\nzz,green,,\n')
    raw = np.array(["", "007", "b", "c"], dtype=object)  # "007" must not become item 7
    t = load_item_features(path, raw)
    assert tokens(t, 1) == ["colour=red", "colour=blue", "material=red"]
    assert tokens(t, 2) == ["colour=blue"]  # spaces trimmed, the empty piece dropped
    assert t.attributes[1, 0] != t.attributes[1, 2]  # the same value in two columns: two attributes
    assert t.attributes[2, 0] == t.attributes[1, 1]
    assert t.has_features.tolist() == [False, True, True, False]
    assert t.unknown_items == 1
    np.testing.assert_allclose(t.numeric_mean, [2.0])


def test_int_file_ids_match_a_string_catalogue(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "i.parquet", {"item_id": [165, 4], "price": [1.0, 3.0]})
    t = load_item_features(path, np.array(["", "4", "165", "5"], dtype=object))
    assert t.has_features.tolist() == [False, True, True, False]
    assert t.numeric_present[:, 0].tolist() == [0, 1, 1, 0]
    assert t.numeric[1, 0] > 0 > t.numeric[2, 0]  # item "4" got price 3, item "165" price 1


def test_vector_columns_concatenate_in_column_order(tmp_path: Path) -> None:
    path = write_parquet(
        tmp_path / "v.parquet",
        {
            "item_id": [5, 4],
            "text": pa.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], type=pa.list_(pa.float64(), 3)),
            "image": pa.array([None, [7.0]], type=pa.list_(pa.float32())),
        },
    )
    t = load_item_features(path, catalogue())
    assert t.vector_names == ["text", "image"] and t.vector_dims == [3, 1] and t.vector_dim == 4
    assert t.categorical_names == [] and t.max_attributes == 0 and t.num_numeric == 0
    np.testing.assert_array_equal(t.vectors[1], [4, 5, 6, 7])
    np.testing.assert_array_equal(t.vectors[2], [1, 2, 3, 0])  # no image vector: zeros
    np.testing.assert_array_equal(t.vectors[[0, 3, 4]], np.zeros((3, 4)))


def test_kinds_override_detection(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    path.write_text('item_id,category_id,price,emb\n4,3,10,"[0.5, 1.5]"\n5,3,20,0.25 2\n83,12,,\n')
    detected = load_item_features(path, catalogue(), columns=["category_id", "price"])
    assert detected.numeric_names == ["category_id", "price"] and detected.num_attributes == 0
    t = load_item_features(path, catalogue(), kinds={"category_id": "categorical", "emb": "vector"})
    assert tokens(t, 1) == ["category_id=3"] and tokens(t, 3) == ["category_id=12"]
    assert t.attributes[1, 0] == t.attributes[2, 0]
    assert t.numeric_names == ["price"]
    np.testing.assert_array_equal(t.vectors[1:4], [[0.5, 1.5], [0.25, 2], [0, 0]])
    # pandas turns integer codes with gaps into floats: 3.0 is code 3, not "3.0".
    floats = write_parquet(tmp_path / "f.parquet", {"item_id": [4, 5], "code": [3.0, float("nan")]})
    f = load_item_features(floats, catalogue(), kinds={"code": "categorical"})
    assert tokens(f, 1) == ["code=3"] and tokens(f, 2) == []


def test_vector_errors_name_file_column_row_and_item(tmp_path: Path) -> None:
    f32 = pa.list_(pa.float32())
    short = write_parquet(tmp_path / "short.parquet", {"item_id": [4, 5, 83], "emb": pa.array([[1.0, 2.0], None, [1.0]], type=f32)})
    with pytest.raises(DataFormatError, match=r"short\.parquet: column 'emb', row 3 \(item '83'\): vector of length 1, expected 2"):
        load_item_features(short, catalogue())
    nan = write_parquet(tmp_path / "nan.parquet", {"item_id": [4, 5], "emb": pa.array([[1.0], [float("nan")]], type=f32)})
    with pytest.raises(DataFormatError, match=r"nan\.parquet: column 'emb', row 2 \(item '5'\): vector entry nan is not finite"):
        load_item_features(nan, catalogue())
    inf = write_parquet(tmp_path / "inf.parquet", {"item_id": [4, 5], "emb": pa.array([[1.0, float("inf")], [0.0, 0.0]], type=f32)})
    with pytest.raises(DataFormatError, match=r"column 'emb', row 1 \(item '4'\).*not finite"):
        load_item_features(inf, catalogue())
    hole = write_parquet(tmp_path / "hole.parquet", {"item_id": [4, 5], "emb": pa.array([[1.0, 2.0], [3.0, None]], type=f32)})
    with pytest.raises(DataFormatError, match=r"column 'emb', row 2 \(item '5'\): a vector entry is empty"):
        load_item_features(hole, catalogue())
    text = tmp_path / "text.csv"
    text.write_text('item_id,emb\n4,"[1, 2]"\n5,"[1, x]"\n')
    with pytest.raises(DataFormatError, match=r"text\.csv: column 'emb', row 2 \(item '5'\): vector entry 'x' is not a number"):
        load_item_features(text, catalogue(), kinds={"emb": "vector"})
    # Rows of items outside the catalogue are checked too: the file is wrong either way.
    outside = write_parquet(tmp_path / "out.parquet", {"item_id": [4, 999], "emb": pa.array([[1.0, 2.0], [1.0]], type=f32)})
    with pytest.raises(DataFormatError, match=r"row 2 \(item '999'\)"):
        load_item_features(outside, catalogue())


def test_file_errors_name_file_and_column(tmp_path: Path) -> None:
    dup = tmp_path / "dup.csv"
    dup.write_text("item_id,price\n4,1\n5,2\n4,3\n")
    with pytest.raises(DataFormatError, match=r"dup\.csv: column 'item_id': item '4' appears in rows 1 and 3"):
        load_item_features(dup, catalogue())
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("item,price\n4,1\n")
    with pytest.raises(DataFormatError, match=r"nocol\.csv: no item column 'item_id'"):
        load_item_features(nocol, catalogue())
    assert load_item_features(nocol, catalogue(), item_col="item").has_features[1]
    header = tmp_path / "header.csv"
    header.write_text("item_id,price\n")
    with pytest.raises(DataFormatError, match=r"header\.csv: the file has no rows"):
        load_item_features(header, catalogue())
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataFormatError, match=r"empty\.csv"):
        load_item_features(empty, catalogue())
    when = write_parquet(tmp_path / "when.parquet", {"item_id": [4], "seen": pa.array([1], type=pa.timestamp("s"))})
    with pytest.raises(DataFormatError, match=r"when\.parquet: column 'seen' has type timestamp.*no feature kind"):
        load_item_features(when, catalogue())
    with pytest.raises(DataFormatError, match=r"when\.parquet: no feature columns"):
        load_item_features(when, catalogue(), columns=[])
    inf = tmp_path / "inf.csv"
    inf.write_text("item_id,price\n4,1\n5,inf\n")
    with pytest.raises(DataFormatError, match=r"inf\.csv: column 'price', row 2 \(item '5'\): value inf is not finite"):
        load_item_features(inf, catalogue())
    word = tmp_path / "word.csv"
    word.write_text("item_id,price\n4,cheap\n")
    with pytest.raises(DataFormatError, match=r"column 'price', row 1 \(item '4'\): 'cheap' is not a number"):
        load_item_features(word, catalogue(), kinds={"price": "numeric"})
    with pytest.raises(DataFormatError, match=r"word\.csv: no column\(s\) \['colour'\]"):
        load_item_features(word, catalogue(), kinds={"colour": "categorical"})
    with pytest.raises(ValueError, match="expected one of"):
        load_item_features(word, catalogue(), kinds={"price": "money"})  # type: ignore[dict-item]
    blank = tmp_path / "blank.csv"
    blank.write_text("item_id,price\n4,1\n,2\n")
    with pytest.raises(DataFormatError, match=r"blank\.csv: column 'item_id', row 2: empty item id"):
        load_item_features(blank, catalogue())
    with pytest.raises(DataFormatError, match="not '.txt'"):
        (tmp_path / "x.txt").write_text("4\n")
        load_item_features(tmp_path / "x.txt", catalogue())
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        load_item_features(tmp_path / "nothing.csv", catalogue())


def test_old_json_and_long_layouts_load_as_categorical_tables(tmp_path: Path) -> None:
    data = Interactions.from_arrays(np.array([7, 7, 7, 9, 9]), np.array([4, 83, 165, 83, 5]))
    js = tmp_path / "attrs.json"
    js.write_text(json.dumps({"4": [1, 2, 2], "83": [2, 3], "999": [5]}))
    long_csv = tmp_path / "attrs.csv"
    long_csv.write_text("item_id,attribute\n165,brand_a\n165,cat_x\n5,cat_x\n")
    long_pq = write_parquet(tmp_path / "attrs.parquet", {"attribute": ["b", "a"], "item_id": [83, 83]})
    for path in (js, long_csv, long_pq):
        t = load_item_features(path, data.raw_item_ids)
        old = load_item_attributes(path, data)
        assert t.layout == "attributes"
        np.testing.assert_array_equal(t.attributes, old.table)
        assert t.attribute_vocab == old.raw_ids.tolist()  # raw attributes, no namespace
        assert t.unknown_items == old.unknown_items
        assert t.numeric.shape == (5, 0) and t.vectors.shape == (5, 0)
        np.testing.assert_array_equal(t.has_features, (old.table != 0).any(axis=1))
    t = load_item_features(js, data.raw_item_ids)
    assert tokens(t, 1) == ["1", "2"] and tokens(t, 3) == ["2", "3"] and t.unknown_items == 1
    np.testing.assert_array_equal(t.as_item_attributes().table, t.attributes)


@pytest.fixture
def trained(tmp_path: Path) -> ItemFeatureTable:
    path = tmp_path / "train.csv"
    path.write_text('item_id,colour,price,emb\n4,red,10,"[1, 2]"\n5,blue|red,30,"[3, 4]"\n83,,,\n')
    return load_item_features(path, catalogue(), kinds={"emb": "vector"})


def test_encode_new_uses_training_vocab_and_statistics(tmp_path: Path, trained: ItemFeatureTable) -> None:
    assert (trained.numeric_mean[0], trained.numeric_std[0]) == (20.0, 10.0)
    new = tmp_path / "new.csv"
    new.write_text('item_id,colour,price,emb,extra\n900,green|red,50,"[5, 6]",x\n901,blue,,,y\n')
    out = trained.encode_new(new)
    assert out.raw_ids == ["900", "901"]
    red, blue = (trained.attribute_vocab.index(f"colour={c}") for c in ("red", "blue"))
    assert out.attributes.shape == (2, trained.max_attributes)
    assert out.attributes.tolist() == [[red, 0], [blue, 0]]  # green was never seen: dropped, counted
    assert out.unseen_attributes == 1
    np.testing.assert_allclose(out.numeric, [[(50 - 20) / 10], [0.0]])  # training mean and std, not the new file's
    assert out.numeric_present.tolist() == [[1.0], [0.0]]
    np.testing.assert_array_equal(out.vectors, [[5, 6], [0, 0]])
    # A new-item file whose price column is all empty (pyarrow types it null) still encodes.
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("item_id,colour,price,emb\n902,red,,\n")
    g = trained.encode_new(gaps)
    assert g.numeric_present.tolist() == [[0.0]] and g.vectors.tolist() == [[0.0, 0.0]]


def test_encode_new_refuses_known_items_unless_skipped(tmp_path: Path, trained: ItemFeatureTable) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text('item_id,colour,price,emb\n900,red,1,"[0, 0]"\n83,red,2,"[0, 0]"\n4,red,3,"[0, 0]"\n')
    with pytest.raises(DataFormatError, match=r"mixed\.csv: 2 item\(s\) are in the training catalogue .*\('83', '4'\)"):
        trained.encode_new(path)
    out = trained.encode_new(path, skip_known=True)
    assert out.raw_ids == ["900"] and out.skipped_known == 2
    np.testing.assert_allclose(out.numeric, [[(1 - 20) / 10]])


def test_encode_new_checks_columns_and_vector_width(tmp_path: Path, trained: ItemFeatureTable) -> None:
    wide = tmp_path / "wide.csv"
    wide.write_text('item_id,colour,price,emb\n900,red,1,"[1, 2, 3]"\n')
    with pytest.raises(DataFormatError, match=r"wide\.csv: column 'emb', row 1 \(item '900'\): vector of length 3, expected 2 \(the training width\)"):
        trained.encode_new(wide)
    lacking = tmp_path / "lacking.csv"
    lacking.write_text("item_id,colour,emb\n900,red,\n")
    with pytest.raises(DataFormatError, match=r"lacking\.csv: no column\(s\) \['price'\]"):
        trained.encode_new(lacking)
    table = pa.table({"item_id": ["900"], "colour": ["blue"], "price": [40.0],
                      "emb": pa.array([[0.5, 0.5]], type=pa.list_(pa.float32()))})
    out = trained.encode_new(table)
    assert out.source == "<table>" and out.numeric.tolist() == [[2.0]]


def test_encode_new_in_the_old_layout(tmp_path: Path) -> None:
    train = tmp_path / "train.json"
    train.write_text(json.dumps({"4": ["a", "b"], "83": ["c"]}))
    t = load_item_features(train, catalogue())
    new = tmp_path / "new.json"
    new.write_text(json.dumps({"900": ["z", "c", "a"], "901": ["z"]}))
    out = t.encode_new(new)
    a, c = t.attribute_vocab.index("a"), t.attribute_vocab.index("c")
    assert out.raw_ids == ["900", "901"]
    assert out.attributes.tolist() == [[c, a], [0, 0]]
    assert out.unseen_attributes == 2
    with pytest.raises(DataFormatError, match=r"train\.json: 2 item\(s\) are in the training catalogue .*\('4', '83'\)"):
        t.encode_new(train)
    with pytest.raises(TypeError, match="path"):
        t.encode_new(pa.table({"item_id": ["900"], "attribute": ["a"]}))


def test_state_round_trip_through_torch_save_weights_only(tmp_path: Path, wide: Path) -> None:
    t = load_item_features(wide, catalogue())
    path = tmp_path / "features.pt"
    torch.save({"item_features": t.to_state()}, path)
    back = ItemFeatureTable.from_state(torch.load(path, weights_only=True)["item_features"])
    for name in ("attributes", "numeric", "numeric_present", "numeric_mean", "numeric_std", "vectors", "has_features"):
        got, want = getattr(back, name), getattr(t, name)
        assert got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    for name in ("raw_item_ids", "attribute_vocab", "numeric_names", "vector_names", "vector_dims",
                 "categorical_names", "unknown_items", "layout", "item_col", "source"):
        assert getattr(back, name) == getattr(t, name), name
    assert back.summary() == t.summary()
    new = write_parquet(tmp_path / "new.parquet", {
        "item_id": [900], "brand": ["zeta"], "tags": [["y", "new"]], "price": [40.0],
        "emb": pa.array([[0.0, 1.0]], type=pa.list_(pa.float32())),
    })
    a, b = t.encode_new(new), back.encode_new(new)
    np.testing.assert_array_equal(a.attributes, b.attributes)
    np.testing.assert_array_equal(a.numeric, b.numeric)
    assert a.numeric.tolist() == [[2.0]] and a.unseen_attributes == b.unseen_attributes == 1
    with pytest.raises(ValueError, match="version"):
        ItemFeatureTable.from_state({"version": 99})
