"""Items that were not in training, added from their features: Recommender, export and HNSW retrieval."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
from conftest import ROOT
from seqrec.cli import run
from seqrec.cli.tools import tools
from seqrec.data.synthetic import synthetic_item_features
from seqrec.serve.recommend import Recommender
from seqrec.serve.retrieval import HNSWIndex, exact_top_k

COPIED = [3, 17, 101]  # raw ids whose features the new items copy


@pytest.fixture(scope="module")
def trained(tiny: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("new_items")
    cols = synthetic_item_features(120, 6, 0.9, 0)  # the catalogue of conftest's tiny synthetic data
    features = tmp / "items.csv"
    pacsv.write_csv(pa.table(cols), features)
    rows = [c - 1 for c in COPIED]
    new = tmp / "new_items.csv"
    pacsv.write_csv(pa.table({"item_id": [f"new-{c}" for c in COPIED], "cluster": cols["cluster"][rows],
                              "popularity": cols["popularity"][rows]}), new)
    logger = '--trainer.logger=[{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}]'
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.argv", ["seqrec"])
        cli = run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny,
                   f"--trainer.default_root_dir={tmp}", logger % tmp, "--trainer.enable_progress_bar=false",
                   "--trainer.max_epochs=1", "--test_after_fit=false", f"--data.item_features={features}",
                   "--model.feature_sides=both", "--model.id_dropout=0.3"])
    return Path(cli.trainer.checkpoint_callback.best_model_path), new, tmp


def test_a_new_item_is_its_features_alone(trained) -> None:
    ckpt, new, _ = trained
    rec = Recommender.from_checkpoint(ckpt)
    before = rec.item_embeddings()
    added = rec.add_items(new)
    assert added == [f"new-{c}" for c in COPIED]
    table = rec.item_embeddings()
    assert table.shape == (before.shape[0] + 3, before.shape[1])
    np.testing.assert_array_equal(table[: before.shape[0]], before)  # known items unchanged
    enc = rec.module.model.item_encoder
    copied = torch.from_numpy(rec.encode([str(c) for c in COPIED]))
    with torch.no_grad():
        features_only = enc.features(copied).numpy()
    np.testing.assert_allclose(table[-3:], features_only, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="already in the catalogue"):
        rec.add_items(new)
    assert rec.add_items(new, skip_known=True) == []


def test_new_items_are_recommended_and_encoded_in_histories(trained) -> None:
    ckpt, new, _ = trained
    rec = Recommender.from_checkpoint(ckpt)
    history = [str(i) for i in rec.histories.raw_item_ids[rec.histories.sequence(4)][-6:].tolist()]
    with pytest.raises(KeyError, match="new-3"):
        rec.recommend_sequences([history + ["new-3"]])
    rec.add_items(new)
    # Only new items allowed: exactly them, scored by the query times their feature vectors.
    out = rec.recommend_sequences([history], k=3, items_to_recommend=[f"new-{c}" for c in COPIED])
    assert sorted(out["item_id"].tolist()) == sorted(f"new-{c}" for c in COPIED)
    users, _ = rec.user_embeddings([rec.histories.raw_user_ids[0]])
    assert users.size == 1
    # A history ending in a new item is encoded with it (not dropped): the answer differs from without.
    with_new = rec.recommend_sequences([history + ["new-17"]], k=10, exclude_seen=False)
    without = rec.recommend_sequences([history], k=10, exclude_seen=False)
    assert not np.allclose(with_new["score"], without["score"])
    # New items come out of an unrestricted search too: by cosine, each new item is its own nearest item.
    table = rec.item_embeddings()
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    _, rows = exact_top_k(unit[-3:], unit, 1)
    assert rec.raw_item_ids[rows[:, 0] + 1].tolist() == [f"new-{c}" for c in COPIED]
    similar = rec.similar_items([f"new-{COPIED[0]}"], k=3)
    assert similar["item_id"].tolist() == [f"new-{COPIED[0]}"] * 3


def test_predict_scores_the_new_items_beside_the_trained_ones(trained, tmp_path, monkeypatch) -> None:
    ckpt, new, _ = trained
    monkeypatch.chdir(tmp_path)
    quiet = ["--trainer.logger=false", "--trainer.enable_progress_bar=false"]
    allow = tmp_path / "allow.txt"
    allow.write_text("\n".join([f"new-{COPIED[0]}", f"new-{COPIED[1]}", "5", "6"]) + "\n")  # new and trained
    run(["predict", f"--ckpt_path={ckpt}", f"--predict_new_items={new}", f"--predict_allow={allow}",
         "--predict_k=4", "--predict_output=recs.csv", *quiet])
    got = pacsv.read_csv(tmp_path / "recs.csv", convert_options=pacsv.ConvertOptions(
        column_types={"item_id": pa.string(), "user_id": pa.string()})).to_pydict()
    rec = Recommender.from_checkpoint(ckpt)
    rec.add_items(new)
    expected = rec.recommend(k=4, items_to_recommend=[f"new-{COPIED[0]}", f"new-{COPIED[1]}", "5", "6"])
    assert got["user_id"] == [str(u) for u in expected["user_id"].tolist()]
    assert got["item_id"] == [str(i) for i in expected["item_id"].tolist()]
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-4, atol=1e-5)
    assert {f"new-{COPIED[0]}", f"new-{COPIED[1]}"} <= set(got["item_id"])  # the new ones come out
    # With a boost from the command line, predict ranks as the boosted Recommender does.
    run(["predict", f"--ckpt_path={ckpt}", f"--predict_new_items={new}", "--model.new_item_boost=3.0",
         "--predict_k=4", "--predict_output=boosted.csv", *quiet])
    got = pacsv.read_csv(tmp_path / "boosted.csv", convert_options=pacsv.ConvertOptions(
        column_types={"item_id": pa.string(), "user_id": pa.string()})).to_pydict()
    rec = Recommender.from_checkpoint(ckpt, new_item_boost=3.0)
    rec.add_items(new)
    expected = rec.recommend(k=4)
    assert got["item_id"] == [str(i) for i in expected["item_id"].tolist()]
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-4, atol=1e-5)
    plain = Recommender.from_checkpoint(ckpt)
    plain.add_items(new)
    assert got["item_id"] != [str(i) for i in plain.recommend(k=4)["item_id"].tolist()]  # the boost told
    # Without the file, the allow-list names items the model does not know: one clear error, before loading.
    with pytest.raises(Exception, match="new-3"):
        run(["predict", f"--ckpt_path={ckpt}", f"--predict_allow={allow}", "--predict_output=r2.csv", *quiet])
    known = pacsv.read_csv(new).to_pydict()
    known["item_id"] = ["3", "new-x", "17"]
    pacsv.write_csv(pa.table(known), tmp_path / "known.csv")
    with pytest.raises(ValueError, match=r"--predict_new_items: .*known\.csv: 2 item\(s\) are in the training catalogue"):
        run(["predict", f"--ckpt_path={ckpt}", f"--predict_new_items={tmp_path / 'known.csv'}",
             "--predict_output=r3.csv", *quiet])


def test_hnsw_and_export_hold_the_new_items(trained, tmp_path) -> None:
    pytest.importorskip("faiss")
    ckpt, new, _ = trained
    rec = Recommender.from_checkpoint(ckpt)
    rec.add_items(new)
    table = rec.item_embeddings()
    index = HNSWIndex(table)
    _, rows = index.search(table[-3:], 5)
    _, exact_rows = exact_top_k(table[-3:], table, 5)
    assert (rows[:, :1] == exact_rows[:, :1]).all()  # each new vector's best match, as exact search finds it
    _, allowed = index.search(table[:1], table.shape[0])  # the whole catalogue: the new rows are in the index
    assert {table.shape[0] - 3, table.shape[0] - 2, table.shape[0] - 1} <= set(allowed[0].tolist())
    out = tmp_path / "export"
    assert tools(["export", str(ckpt), str(out), "--new-items", str(new)]) == 0
    items = pq.read_table(out / "item_embeddings.parquet")
    assert items.num_rows == table.shape[0] and items.column("item_id").to_pylist()[-3:] == [f"new-{c}" for c in COPIED]
    np.testing.assert_allclose(np.load(out / "item_embeddings.npy"), table, rtol=1e-5, atol=1e-6)
    assert not (out / "scorer.onnx").exists()
    boosted = tmp_path / "boosted"
    assert tools(["export", str(ckpt), str(boosted), "--new-items", str(new), "--new-item-boost", "0.5"]) == 0
    exported = np.load(boosted / "item_embeddings.npy")
    np.testing.assert_allclose(exported[:, :-1], table, rtol=1e-5, atol=1e-6)
    assert exported[:-3, -1].tolist() == [0.0] * (table.shape[0] - 3) and exported[-3:, -1].tolist() == [0.5] * 3
    users = pq.read_table(boosted / "user_embeddings.parquet").column("embedding").to_pylist()
    assert len(users[0]) == exported.shape[1] and users[0][-1] == 1.0
    assert json.loads((boosted / "export.json").read_text())["new_item_boost"] == 0.5


def test_a_model_without_features_refuses_new_items(tmp_path, tiny) -> None:
    logger = '--trainer.logger=[{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}]'
    cli = run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny,
               f"--trainer.default_root_dir={tmp_path}", logger % tmp_path, "--trainer.enable_progress_bar=false",
               "--trainer.max_epochs=1", "--test_after_fit=false"])
    rec = Recommender.from_checkpoint(cli.trainer.checkpoint_callback.best_model_path)
    with pytest.raises(ValueError, match="feature_sides both"):
        rec.add_items(tmp_path / "whatever.csv")


def test_a_new_item_boost_lifts_new_items_in_recommendations_and_embeddings_alike(trained) -> None:
    ckpt, new, _ = trained
    plain = Recommender.from_checkpoint(ckpt)
    boosted = Recommender.from_checkpoint(ckpt, new_item_boost=50.0)
    for rec in (plain, boosted):
        rec.add_items(new)
    history = [str(i) for i in plain.histories.raw_item_ids[plain.histories.sequence(4)][-6:].tolist()]
    top_plain = plain.recommend_sequences([history], k=3)
    top_boosted = boosted.recommend_sequences([history], k=3)
    assert sorted(top_boosted["item_id"].tolist()) == sorted(f"new-{c}" for c in COPIED)  # lifted above all
    assert not set(top_plain["item_id"]) >= set(top_boosted["item_id"])
    # The boost is one more coordinate: known items 0, new ones the boost; the query's is 1. Their products
    # are the recommendation scores, so an exported table and an HNSW index rank as recommend does.
    table, base = boosted.item_embeddings(), plain.item_embeddings()
    assert table.shape == (base.shape[0], base.shape[1] + 1)
    np.testing.assert_allclose(table[:, :-1], base, rtol=1e-5, atol=1e-6)
    assert table[:-3, -1].tolist() == [0.0] * (base.shape[0] - 3) and table[-3:, -1].tolist() == [50.0] * 3
    _, users = boosted.user_embeddings([boosted.histories.raw_user_ids[0]])
    assert users.shape[1] == table.shape[1] and np.allclose(users[:, -1], 1.0)
    scores = np.sort(users @ table.T, axis=1)[:, ::-1][:, :3]
    first = boosted.recommend([boosted.histories.raw_user_ids[0]], k=3, exclude_seen=False)
    np.testing.assert_allclose(first["score"], scores[0], rtol=1e-4)
