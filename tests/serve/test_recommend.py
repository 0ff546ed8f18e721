"""Recommendations out: the Python API, ``seqrec predict``, retrieval over embeddings, and the exports."""

from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pytest
import torch
from conftest import ROOT, require  # noqa: E402
from seqrec.cli import run
from seqrec.cli.tools import tools
from seqrec.serve.recommend import Recommender, recommendation_rows
from seqrec.serve.retrieval import HNSWIndex, exact_top_k, recall_at_k


def base(tiny: list[str], tmp: Path) -> list[str]:
    logger = '--trainer.logger=[{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}]'
    return ["--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, f"--trainer.default_root_dir={tmp}",
            logger % tmp, "--trainer.enable_progress_bar=false"]


@pytest.fixture(scope="module")
def trained(tiny: list[str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: conftest's per-test argv reset has not run yet
        mp.setattr("sys.argv", ["seqrec"])
        cli = run(["fit", *base(tiny, tmp), "--trainer.max_epochs=2", "--test_after_fit=false"])
    return Path(cli.trainer.checkpoint_callback.best_model_path), tmp


def test_recommend_known_users_excludes_history(trained: tuple[Path, Path]) -> None:
    ckpt, _ = trained
    rec = Recommender.from_checkpoint(ckpt)
    data = rec.histories
    users = [data.raw_user_ids[3], data.raw_user_ids[10]]
    out = rec.recommend(users, k=7)
    assert out["user_id"].tolist() == [users[0]] * 7 + [users[1]] * 7
    assert out["rank"].tolist() == list(range(1, 8)) * 2
    for row, u in enumerate((3, 10)):
        got = out["item_id"][row * 7 : (row + 1) * 7]
        seen = set(data.raw_item_ids[data.sequence(u)].tolist())
        assert not seen & set(got.tolist())
        assert np.all(np.diff(out["score"][row * 7 : (row + 1) * 7]) <= 0)  # best first
    with_seen = rec.recommend(users, k=7, exclude_seen=False)
    assert with_seen["score"][0] >= out["score"][0]
    with pytest.raises(KeyError, match="unknown user"):
        rec.recommend(["nobody"])


def test_ad_hoc_sequence_matches_the_same_known_history(trained: tuple[Path, Path]) -> None:
    rec = Recommender.from_checkpoint(trained[0])
    data = rec.histories
    raw_history = data.raw_item_ids[data.sequence(5)].tolist()
    known = rec.recommend([data.raw_user_ids[5]], k=10)
    new = rec.recommend_sequences([raw_history, [str(x) for x in raw_history[-3:]]], k=10)
    assert new["item_id"][:10].tolist() == known["item_id"].tolist()
    np.testing.assert_allclose(new["score"][:10], known["score"], rtol=1e-5)
    assert new["user_id"].tolist() == [0] * 10 + [1] * 10
    with pytest.raises(KeyError, match="unknown item id 'no-such-item'"):
        rec.recommend_sequences([raw_history + ["no-such-item"]])
    skipped = rec.recommend_sequences([raw_history + ["no-such-item"]], skip_unknown=True)
    assert skipped["item_id"].tolist() == known["item_id"].tolist()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # predict restores a checkpoint from another run
def test_predict_command_writes_csv_for_listed_users(tiny: list[str], trained: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, _ = trained
    rec = Recommender.from_checkpoint(ckpt)
    raw = rec.histories.raw_user_ids
    users_file = tmp_path / "users.txt"
    users_file.write_text(f"{raw[4]}\n{raw[7]}\n")
    out = tmp_path / "recs.csv"
    run(["predict", *base(tiny, tmp_path), f"--ckpt_path={ckpt}", f"--predict_output={out}", "--predict_k=5",
         f"--data.predict_users={users_file}"])
    table = pacsv.read_csv(out).to_pydict()
    assert table["user_id"] == [raw[4]] * 5 + [raw[7]] * 5
    assert table["item_id"] == rec.recommend([raw[4], raw[7]], k=5)["item_id"].tolist()
    users_file.write_text(f"{raw[4]}\nghost\n")
    with pytest.raises(ValueError, match=r"users.txt:2: unknown user 'ghost'"):
        run(["predict", *base(tiny, tmp_path), f"--ckpt_path={ckpt}", f"--predict_output={out}",
             f"--data.predict_users={users_file}"])


def test_exact_top_k_in_chunks_matches_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    items = rng.normal(size=(1000, 8)).astype(np.float32)
    queries = rng.normal(size=(5, 8)).astype(np.float32)
    exclude = [rng.choice(1000, 20, replace=False) for _ in range(5)]
    scores, idx = exact_top_k(queries, items, 10, exclude=exclude, chunk=64)
    full = queries @ items.T
    for q in range(5):
        full[q, exclude[q]] = -np.inf
        expected = np.argsort(-full[q], kind="stable")[:10]
        assert idx[q].tolist() == expected.tolist()
        np.testing.assert_allclose(scores[q], full[q, expected], rtol=1e-5)
    with pytest.raises(ValueError, match="k must lie"):
        exact_top_k(queries, items, 1001)


def test_hnsw_recall_against_exact() -> None:
    require("faiss")
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(20, 16))
    items = (centers[rng.integers(20, size=5000)] + 0.3 * rng.normal(size=(5000, 16))).astype(np.float32)
    queries = items[rng.choice(5000, 200, replace=False)] + 0.1 * rng.normal(size=(200, 16)).astype(np.float32)
    exact = exact_top_k(queries, items, 10)[1]
    index = HNSWIndex(items)
    approx = index.search(queries, 10)[1]
    assert recall_at_k(approx, exact) >= 0.95  # typical HNSW (M=32, ef=128) recall on clustered data
    assert recall_at_k(exact, exact) == 1.0
    excl = [exact[q, :3] for q in range(200)]
    filtered = index.search(queries, 10, exclude=excl)[1]
    assert not any(set(f.tolist()) & set(e.tolist()) for f, e in zip(filtered, excl))


@pytest.mark.slow
def test_export_embeddings_and_onnx_give_the_checkpoint_top_k(trained: tuple[Path, Path], tmp_path: Path) -> None:
    ort = require("onnxruntime")
    require("onnxscript")
    import pyarrow.parquet as pq

    ckpt, _ = trained
    assert tools(["export", str(ckpt), str(tmp_path / "out")]) == 0
    rec = Recommender.from_checkpoint(ckpt)
    table = pq.read_table(tmp_path / "out" / "item_embeddings.parquet")
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert table.column("item_id").to_pylist() == rec.raw_item_ids[1:].tolist()
    np.testing.assert_array_equal(emb, rec.item_embeddings())
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "item_embeddings.npy"), emb)

    data = rec.histories
    users = np.arange(20)
    from seqrec.data.batches import left_pad

    inputs = left_pad(data.offsets, data.items.astype(np.int64), users, rec.max_len)
    session = ort.InferenceSession(str(tmp_path / "out" / "scorer.onnx"))
    query, scores = session.run(None, {"inputs": inputs})
    with torch.no_grad():
        hidden = rec.module.model(torch.from_numpy(inputs))[:, -1]
        expected = rec.module.model.score_all(hidden).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)
    scores[:, 0] = -np.inf
    top_onnx = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    top_ckpt = np.argsort(-expected, axis=1, kind="stable")[:, :10]
    agree = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_onnx, top_ckpt)])
    assert agree == 1.0
    # The exported query vectors against the embedding table give the same ranking (vector search path).
    _, via_table = exact_top_k(query, emb, 10)
    np.testing.assert_array_equal(via_table + 1, top_ckpt)


def test_validation_popularity_is_computed_once_and_logged_every_epoch(trained: tuple[Path, Path]) -> None:
    import csv

    _, tmp = trained
    rows = [r for f in tmp.rglob("metrics.csv") for r in csv.DictReader(f.read_text().splitlines())
            if r.get("val/ndcg@10")]
    assert len(rows) == 2  # two epochs, validated each
    assert rows[0]["val/popularity/ndcg@10"] == rows[1]["val/popularity/ndcg@10"] != ""
    assert float(rows[0]["val/popularity/ndcg@10"]) > 0


def test_k_beyond_the_unseen_items_gives_fewer_rows_never_seen_items() -> None:
    raw_items = np.array([0, "a", "b", "c"], dtype=object)
    items = np.array([[2, 1, 0], [3, 2, 1]])
    scores = np.array([[0.5, 0.1, -np.inf], [0.9, 0.8, 0.7]], dtype=np.float32)
    rows = recommendation_rows(np.array(["u1", "u2"]), raw_items, items, scores)
    assert rows["user_id"].tolist() == ["u1", "u1", "u2", "u2", "u2"]
    assert rows["item_id"].tolist() == ["b", "a", "c", "b", "a"]
    assert rows["rank"].tolist() == [1, 2, 1, 2, 3]


@pytest.mark.slow
def test_recommend_all_items_returns_exactly_the_unseen_ones(trained: tuple[Path, Path]) -> None:
    ckpt, _ = trained
    rec = Recommender.from_checkpoint(ckpt)
    user = rec.histories.raw_user_ids[3]
    n = rec.module.hparams.num_items
    out = rec.recommend([user], k=n)
    seen = set(rec.histories.raw_item_ids[rec.histories.items[rec.histories.offsets[3]:rec.histories.offsets[4]]].tolist())
    assert len(out["item_id"]) == n - len(seen)
    assert not seen & set(out["item_id"].tolist())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_predict_refuses_data_whose_items_differ_from_the_checkpoint(tmp_path: Path) -> None:
    rows = "\n".join(f"{u},{i},{t}" for u in range(40) for t, i in enumerate(range(u % 7, u % 7 + 6)))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("user_id,item_id,timestamp\n" + rows + "\n")
    b.write_text("user_id,item_id,timestamp\n" + "\n".join(
        f"{u},{int(i) + 100},{t}" for u, i, t in (r.split(",") for r in rows.split("\n"))) + "\n")
    args = ["--config", str(ROOT / "configs/sasrec_synthetic.yaml"), "--model.hidden_size=16", "--trainer.max_epochs=1",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--data.sampled_eval=none",
            f"--trainer.default_root_dir={tmp_path / 'run'}"]
    run(["fit", *args, f"--data.path={a}", "--test_after_fit=false"])
    ckpt = (tmp_path / "run" / "best.ckpt").resolve()
    with pytest.raises(ValueError, match=r"catalogue .* dense item 1 is raw id '0' in the checkpoint and '100'"):
        run(["predict", *args, f"--data.path={b}", f"--ckpt_path={ckpt}", f"--predict_output={tmp_path / 'r.csv'}"])
    assert not (tmp_path / "r.csv").exists()


class _Payload:  # what a crafted checkpoint hides: unpickling it would create a file
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_crafted_checkpoint_runs_no_code(tmp_path: Path) -> None:
    import torch

    evil, marker = tmp_path / "evil.ckpt", tmp_path / "pwned"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload(str(marker))}}, evil)
    with pytest.raises(ValueError, match=r"evil\.ckpt: not a readable checkpoint"):
        Recommender.from_checkpoint(evil)
    assert not marker.exists()


def test_export_is_all_or_nothing(trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Onto a file: a clear error. A missing ONNX extra: a message and nothing written. A failure after the
    embeddings are written (here the ONNX step): the earlier export's files stay as they were, no mix."""
    import builtins

    import seqrec.serve.export as export_module

    ckpt, _ = trained
    afile = tmp_path / "taken"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"taken: exists and is not a folder"):
        tools(["export", str(ckpt), str(afile), "--no-onnx"])

    out = tmp_path / "out"
    real_import = builtins.__import__

    def no_onnxscript(name: str, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError("No module named 'onnxscript'")
        return real_import(name, *args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(builtins, "__import__", no_onnxscript)
        with pytest.raises(ValueError, match=r"pip install 'seqrec\[export\]'"):
            tools(["export", str(ckpt), str(out)])
    assert not out.exists()

    assert tools(["export", str(ckpt), str(out), "--no-onnx"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "item_embeddings.npy").write_bytes(b"old")  # mark the old set
    def failing_onnx(module, path):
        raise OSError("No space left on device")

    monkeypatch.setattr(export_module, "export_onnx", failing_onnx)
    with pytest.raises(OSError, match="No space left"):
        export_module.export(ckpt, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no scorer.onnx, no staging folder left
    assert (out / "item_embeddings.npy").read_bytes() == b"old"  # the new embeddings were not moved in
    assert not list(tmp_path.glob(".*partial"))


def test_a_checkpoint_naming_some_other_file_never_echoes_it(trained: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, _ = trained
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2 and more\n")
    state = torch.load(ckpt, weights_only=True)
    state["seqrec_dataset"]["source"] = {"path": str(secret), "format": "sasrec"}
    crafted = tmp_path / "crafted.ckpt"
    torch.save(state, crafted)
    with pytest.raises(ValueError) as err:
        Recommender.from_checkpoint(crafted)
    assert "crafted.ckpt: the training data it names" in str(err.value) and str(secret) in str(err.value)
    assert "hunter2" not in str(err.value)
