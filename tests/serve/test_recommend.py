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


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_predict_command_applies_allow_and_exclude_files(tiny: list[str], trained: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    ckpt, _ = trained
    rec = Recommender.from_checkpoint(ckpt)
    raw_user, ranked, seen = _ranked_unseen(rec, 4)
    users, allow, exclude = tmp_path / "users.txt", tmp_path / "stock.txt", tmp_path / "exclude.txt"
    users.write_text(f"{raw_user}\n")
    allow.write_text("\n".join(str(i) for i in [*ranked[2:6], *sorted(seen, key=str)[:2]]) + "\n")
    exclude.write_text(f"{ranked[3]}\n")
    out = tmp_path / "recs.csv"
    run(["predict", *base(tiny, tmp_path), f"--ckpt_path={ckpt}", f"--predict_output={out}", "--predict_k=10",
         f"--data.predict_users={users}", f"--predict_allow={allow}", f"--predict_exclude={exclude}"])
    table = pacsv.read_csv(out).to_pydict()
    assert [str(i) for i in table["item_id"]] == [str(i) for i in (ranked[2], ranked[4], ranked[5])]
    assert table["rank"] == [1, 2, 3]  # fewer allowed unseen items than k: fewer rows
    exclude.write_text("ghost\n")
    with pytest.raises(ValueError, match=r"--predict_exclude: .*exclude\.txt:1: unknown item 'ghost'"):
        run(["predict", *base(tiny, tmp_path), f"--ckpt_path={ckpt}", f"--predict_output={out}",
             f"--predict_exclude={exclude}"])


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
    blocked = np.zeros(1000, dtype=bool)
    blocked[idx[:, :3].reshape(-1)] = True  # product rules: no query may get another's best three either
    _, ruled = exact_top_k(queries, items, 10, exclude=exclude, chunk=64, blocked=blocked)
    for q in range(5):
        full[q, blocked] = -np.inf
        assert ruled[q].tolist() == np.argsort(-full[q], kind="stable")[:10].tolist()
    allowed_only = np.ones(1000, dtype=bool)
    allowed_only[[3, 4]] = False
    few_scores, few = exact_top_k(queries[:1], items, 5, blocked=allowed_only)
    assert sorted(few[0, :2].tolist()) == [3, 4] and np.isinf(few_scores[0, 2:]).all()
    with pytest.raises(ValueError, match="blocked must be a mask of the 1000 rows"):
        exact_top_k(queries, items, 10, blocked=np.zeros(5, dtype=bool))


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


# Product rules, similar items, exported vectors and the ONNX scorer ------------------------------------------


def _ranked_unseen(rec: Recommender, user: int) -> tuple[object, list, set]:
    """A known user's raw id, every unseen item best first (no rules), and the raw ids the user saw."""
    data = rec.histories
    raw_user = data.raw_user_ids[user]
    seen = set(data.raw_item_ids[data.sequence(user)].tolist())
    ranked = rec.recommend([raw_user], k=rec.module.hparams.num_items)["item_id"].tolist()
    return raw_user, ranked, seen


def test_allow_list_and_exclusions_filter_the_unrestricted_ranking(trained: tuple[Path, Path]) -> None:
    rec = Recommender.from_checkpoint(trained[0])
    raw_user, ranked, seen = _ranked_unseen(rec, 3)
    allow = ranked[4:30] + sorted(seen, key=str)[:3]  # seen items on the allow-list still never come out
    exclude = ranked[5:9] + ranked[40:42]
    expected = [i for i in ranked if i in set(allow) and i not in set(exclude)][:10]
    out = rec.recommend([raw_user], k=10, items_to_recommend=allow, exclude_items=exclude)
    assert out["item_id"].tolist() == expected
    assert out["rank"].tolist() == list(range(1, 11))
    # An ad-hoc sequence of the same history follows the same rules.
    history = rec.histories.raw_item_ids[rec.histories.sequence(3)].tolist()
    again = rec.recommend_sequences([history], k=10, items_to_recommend=allow, exclude_items=exclude)
    assert again["item_id"].tolist() == expected
    only_excluded = rec.recommend([raw_user], k=5, exclude_items=ranked[:2])
    assert only_excluded["item_id"].tolist() == ranked[2:7]


def test_fewer_allowed_unseen_items_than_k_give_fewer_rows(trained: tuple[Path, Path]) -> None:
    rec = Recommender.from_checkpoint(trained[0])
    raw_user, ranked, seen = _ranked_unseen(rec, 10)
    out = rec.recommend([raw_user], k=10, items_to_recommend=[ranked[7], ranked[2], *sorted(seen, key=str)[:2]])
    assert out["item_id"].tolist() == [ranked[2], ranked[7]] and out["rank"].tolist() == [1, 2]
    assert np.isfinite(out["score"]).all()


def test_rules_refuse_unknown_ids_unless_asked_to_skip_them(trained: tuple[Path, Path]) -> None:
    rec = Recommender.from_checkpoint(trained[0])
    raw_user, ranked, _ = _ranked_unseen(rec, 3)
    with pytest.raises(KeyError, match=r"items_to_recommend: unknown item id\(s\) \['no-such-item'\]"):
        rec.recommend([raw_user], items_to_recommend=["no-such-item", ranked[0]])
    with pytest.raises(KeyError, match=r"exclude_items: unknown item id"):
        rec.recommend_sequences([[ranked[0]]], exclude_items=["no-such-item"])
    skipped = rec.recommend([raw_user], k=3, items_to_recommend=["no-such-item", ranked[1]], skip_unknown=True)
    assert skipped["item_id"].tolist() == [ranked[1]]
    with pytest.raises(ValueError, match="items_to_recommend holds no item of the catalogue"):
        rec.recommend([raw_user], items_to_recommend=[])


def test_predict_step_applies_the_item_rules_the_cli_sets(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """What ``seqrec predict --predict_allow/--predict_exclude`` runs: files -> mask -> SeqRecModule.predict_step."""
    from seqrec.serve.rules import rules_from_files

    rec = Recommender.from_checkpoint(trained[0])
    raw_user, ranked, _ = _ranked_unseen(rec, 5)
    allow, exclude = tmp_path / "in_stock.txt", tmp_path / "exclude.txt"
    allow.write_text("\n".join(str(i) for i in ranked[3:20]) + "\n\n")
    exclude.write_text(f"{ranked[4]}\n")
    module = rec.module
    module.hparams.predict_k = 6
    module.set_item_rules(rules_from_files(rec.raw_item_ids, allow, exclude))
    _, batches = rec._known_batches([raw_user], 512)
    with torch.no_grad():
        out = module.predict_step(batches[0], 0)
    rows = recommendation_rows(np.array([raw_user]), rec.raw_item_ids, out["items"].numpy(), out["scores"].numpy())
    assert rows["item_id"].tolist() == [ranked[3], *ranked[5:10]]
    module.set_item_rules(None)
    with torch.no_grad():
        assert module.predict_step(batches[0], 0)["items"].shape == (1, 6)
    with pytest.raises(ValueError, match=r"mask of 121 entries .* got shape \(5,\)"):
        module.set_item_rules(np.zeros(5, dtype=bool))


def test_rule_files_name_the_option_file_and_line(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from seqrec.serve.rules import blocked_items, rules_from_files

    rec = Recommender.from_checkpoint(trained[0])
    raw = rec.raw_item_ids
    bad = tmp_path / "stock.txt"
    bad.write_text(f"{raw[1]}\n\n{raw[2]}\nghost\n")
    with pytest.raises(ValueError, match=r"--predict_allow: .*stock\.txt:4: unknown item 'ghost'"):
        rules_from_files(raw, bad, None)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    with pytest.raises(ValueError, match=r"--predict_exclude: .*empty\.txt: no item ids"):
        rules_from_files(raw, None, empty)
    with pytest.raises(FileNotFoundError, match=r"--predict_allow: .*missing\.txt"):
        rules_from_files(raw, tmp_path / "missing.txt", None)
    assert rules_from_files(raw, None, None) is None
    mask = blocked_items(raw, items_to_recommend=[raw[1], raw[2], raw[3]], exclude_items=[raw[2]])
    assert mask.shape == (len(raw),) and np.flatnonzero(~mask).tolist() == [1, 3]  # padding always blocked


def test_similar_items_are_the_nearest_by_cosine_without_the_item_itself(trained: tuple[Path, Path]) -> None:
    rec = Recommender.from_checkpoint(trained[0])
    table = rec.item_embeddings().astype(np.float64)
    unit = table / np.linalg.norm(table, axis=1, keepdims=True)
    asked = [1, 17, 60]
    out = rec.similar_items(rec.raw_item_ids[asked].tolist(), k=5)
    assert out["item_id"].tolist() == np.repeat(rec.raw_item_ids[asked], 5).tolist()
    for row, dense in enumerate(asked):
        cosine = unit @ unit[dense - 1]
        cosine[dense - 1] = -np.inf  # never the item itself
        expected = np.argsort(-cosine, kind="stable")[:5] + 1
        got = slice(row * 5, (row + 1) * 5)
        assert out["similar_item_id"][got].tolist() == rec.raw_item_ids[expected].tolist()
        np.testing.assert_allclose(out["score"][got], cosine[expected - 1], rtol=1e-5)
    # Dot products rank otherwise on this table (its norms differ), so the check above tells the two apart.
    dot = table @ table[np.array(asked) - 1].T  # (N, 3)
    dot[np.array(asked) - 1, np.arange(3)] = -np.inf
    by_dot = np.argsort(-dot, axis=0, kind="stable")[:5].T + 1
    assert out["similar_item_id"].tolist() != rec.raw_item_ids[by_dot.reshape(-1)].tolist()
    allow = rec.raw_item_ids[[2, 3, 4, 17]].tolist()
    ruled = rec.similar_items([rec.raw_item_ids[17]], k=5, items_to_recommend=allow, exclude_items=[allow[0]])
    assert set(ruled["similar_item_id"].tolist()) == set(allow[1:3]) and ruled["rank"].tolist() == [1, 2]


def _export_tables(folder: Path) -> dict[str, tuple[list, np.ndarray]]:
    import pyarrow.parquet as pq

    out = {}
    for name in ("item_embeddings", "user_embeddings"):
        table = pq.read_table(folder / f"{name}.parquet")
        out[name] = (table.column(0).to_pylist(), np.stack(table.column("embedding").to_numpy(zero_copy_only=False)))
    return out


def test_exported_user_vectors_times_the_item_table_give_the_recommender_top_k(
        trained: tuple[Path, Path], tmp_path: Path) -> None:
    ckpt, _ = trained
    assert tools(["export", str(ckpt), str(tmp_path / "out"), "--no-onnx"]) == 0
    rec = Recommender.from_checkpoint(ckpt)
    data = rec.histories
    tables = _export_tables(tmp_path / "out")
    item_ids, items = tables["item_embeddings"]
    user_ids, users = tables["user_embeddings"]
    assert item_ids == rec.raw_item_ids[1:].tolist() and user_ids == data.raw_user_ids.tolist()
    np.testing.assert_array_equal(items, rec.item_embeddings())
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "item_embeddings.npy"), items)
    picked = np.arange(0, data.num_users, 13)
    seen = [data.sequence(u).astype(np.int64) - 1 for u in picked]  # rows of the item table
    _, top = exact_top_k(users[picked], items, 10, exclude=seen)
    expected = rec.recommend(data.raw_user_ids[picked].tolist(), k=10)["item_id"].reshape(len(picked), 10)
    np.testing.assert_array_equal(rec.raw_item_ids[top + 1], expected)
    meta = (tmp_path / "out" / "export.json").read_text()
    assert '"scorer": null' in meta and "scorer_skipped" not in meta  # --no-onnx: left out on purpose


@pytest.mark.slow
def test_onnx_top_k_scorer_matches_the_recommender_at_any_length(trained: tuple[Path, Path], tmp_path: Path) -> None:
    ort = require("onnxruntime")
    require("onnxscript")
    ckpt, _ = trained
    rec = Recommender.from_checkpoint(ckpt)
    data = rec.histories
    n = rec.module.hparams.num_items
    allow = rec.raw_item_ids[1 : n // 2].tolist()
    (tmp_path / "stock.txt").write_text("\n".join(map(str, allow)) + "\n")
    out = tmp_path / "out"
    assert tools(["export", str(ckpt), str(out), "--onnx-top-k", "10", "--allow", str(tmp_path / "stock.txt")]) == 0
    allowed = np.load(out / "allowed_items.npy")
    assert allowed.shape == (n + 1,) and np.flatnonzero(allowed).tolist() == list(range(1, n // 2))
    session = ort.InferenceSession(str(out / "scorer.onnx"))
    assert [i.name for i in session.get_inputs()] == ["inputs", "allowed"]
    everything = np.arange(n + 1) != 0

    def onnx_top(inputs: np.ndarray, mask: np.ndarray) -> list[list]:
        _, _, items, scores = session.run(None, {"inputs": inputs, "allowed": mask})
        return [rec.raw_item_ids[i[np.isfinite(s)]].tolist() for i, s in zip(items, scores)]

    users = np.arange(0, data.num_users, 7)
    lengths = data.offsets[users + 1] - data.offsets[users]
    assert lengths.min() < lengths.max()
    per_user_allowed = rec.recommend(data.raw_user_ids[users].tolist(), k=10, items_to_recommend=allow)
    per_user_all = rec.recommend(data.raw_user_ids[users].tolist(), k=10)
    for row, u in enumerate(users):  # each history as it is, unpadded: the sequence length varies call to call
        history = data.sequence(u).astype(np.int64)[None]
        mine = per_user_allowed["user_id"] == data.raw_user_ids[u]
        assert onnx_top(history, allowed) == [per_user_allowed["item_id"][mine].tolist()]
        assert onnx_top(history, everything)[0] == per_user_all["item_id"][row * 10 : (row + 1) * 10].tolist()
    # A batch left-padded to its longest history ranks the same; the query output is the exported user vector.
    from seqrec.data.batches import left_pad

    batch = left_pad(data.offsets, data.items.astype(np.int64), users, int(lengths.max()))
    assert onnx_top(batch, everything) == per_user_all["item_id"].reshape(len(users), 10).tolist()
    query, scores, _, _ = session.run(None, {"inputs": batch, "allowed": everything})
    _, vectors = _export_tables(out)["user_embeddings"]
    np.testing.assert_allclose(query, vectors[users], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores[:, 1:], query @ rec.item_embeddings().T, rtol=1e-4, atol=1e-4)
    # Longer than max_len: the model reads the most recent max_len items, and none of the history comes out.
    long = [rec.raw_item_ids[(np.arange(rec.max_len + 20) * 11) % (n - 1) + 1].tolist()]  # 70 distinct items
    expected = rec.recommend_sequences(long, k=10)["item_id"].tolist()
    assert onnx_top(rec.encode(long[0])[None], everything) == [expected]
    assert not set(expected) & set(long[0])
    # Fewer items left than k: fewer finite slots, never a seen or disallowed item.
    few = everything.copy()
    few[1:] = False
    few[[5, 6, 7]] = True
    history = np.array([[5, 9, 12]], dtype=np.int64)
    got = onnx_top(history, few)[0]
    assert sorted(got, key=str) == sorted(rec.raw_item_ids[[6, 7]].tolist(), key=str)


def test_export_without_the_onnx_extra_writes_the_embeddings_and_says_how_to_get_the_scorer(
        trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import builtins
    import json

    import seqrec.serve.export as export_module

    ckpt, _ = trained
    out = tmp_path / "out"
    out.mkdir()
    (out / "scorer.onnx").write_bytes(b"an older checkpoint's scorer")
    real_import = builtins.__import__

    def no_onnxscript(name: str, *args, **kwargs):
        if name == "onnxscript":
            raise ImportError("No module named 'onnxscript'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxscript)
    with pytest.raises(ImportError, match=r"pip install 'seqrec\[export\]'"):
        export_module.export(ckpt, tmp_path / "required", onnx=True)  # asked for explicitly: nothing written
    assert not (tmp_path / "required").exists()
    assert tools(["export", str(ckpt), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "item_embeddings.parquet" in printed and "user_embeddings.parquet" in printed
    assert "skipped scorer.onnx" in printed and "pip install 'seqrec[export]'" in printed
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "item_embeddings.npy", "item_embeddings.parquet",
                                                     "user_embeddings.parquet"]  # the stale scorer is gone
    meta = json.loads((out / "export.json").read_text())
    assert meta["scorer"] is None and "seqrec[export]" in meta["scorer_skipped"]


def test_export_is_all_or_nothing(trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Onto a file, or options that contradict each other: a clear error. A failure after the embeddings are
    written (here the ONNX step): the earlier export's files stay as they were, no mix, no staging left."""
    import seqrec.serve.export as export_module

    ckpt, _ = trained
    afile = tmp_path / "taken"
    afile.write_text("x")
    with pytest.raises(ValueError, match=r"taken: exists and is not a folder"):
        tools(["export", str(ckpt), str(afile), "--no-onnx"])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"--onnx-top-k .* --no-onnx"):
        tools(["export", str(ckpt), str(out), "--no-onnx", "--onnx-top-k", "5"])
    with pytest.raises(ValueError, match=r"--onnx-top-k 500 is more than the 120 items"):
        tools(["export", str(ckpt), str(out), "--onnx-top-k", "500"])
    (tmp_path / "stock.txt").write_text("ghost\n")
    with pytest.raises(ValueError, match=r"--allow: .*stock\.txt:1: unknown item 'ghost'"):
        tools(["export", str(ckpt), str(out), "--no-onnx", "--allow", str(tmp_path / "stock.txt")])
    assert not out.exists()

    assert tools(["export", str(ckpt), str(out), "--no-onnx"]) == 0
    before = sorted(p.name for p in out.iterdir())
    (out / "item_embeddings.npy").write_bytes(b"old")  # mark the old set

    def failing_onnx(module, path, top_k=0):
        raise OSError("No space left on device")

    monkeypatch.setattr(export_module, "export_onnx", failing_onnx)
    with pytest.raises(OSError, match="No space left"):
        export_module.export(ckpt, out)
    assert sorted(p.name for p in out.iterdir()) == before  # no scorer.onnx, no staging folder left
    assert (out / "item_embeddings.npy").read_bytes() == b"old"  # the new embeddings were not moved in
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "time_buckets"), [("bert4rec", 0), ("sasrec", 8)])
def test_onnx_scorer_of_bert4rec_and_of_time_features_takes_any_length(
        architecture: str, time_buckets: int, tmp_path: Path) -> None:
    """BERT4Rec drops its oldest column to append the mask, and time inputs must be padded like the items:
    both only match ``top_k`` of the left-padded max_len batch if the graph pads (or crops) itself."""
    ort = require("onnxruntime")
    require("onnxscript")
    from seqrec.serve.export import export_onnx
    from seqrec.train.module import SeqRecModule

    torch.manual_seed(0)
    module = SeqRecModule(architecture=architecture, num_items=40, max_len=10, hidden_size=16, num_blocks=1,
                          num_time_buckets=time_buckets).eval()
    session = ort.InferenceSession(str(export_onnx(module, tmp_path / "scorer.onnx", top_k=5)))
    rng = np.random.default_rng(0)
    for length in (1, 3, 10, 14):
        items, times = rng.integers(1, 41, size=(2, length)), rng.integers(1, 8, size=(2, length))
        feed = {"inputs": items, "allowed": np.ones(41, dtype=bool)}
        padded = {"inputs": np.zeros((2, 10), dtype=np.int64)}
        padded["inputs"][:, -min(length, 10):] = items[:, -10:]
        if time_buckets:
            feed["time_inputs"] = times
            padded["time_inputs"] = np.zeros((2, 10), dtype=np.int64)
            padded["time_inputs"][:, -min(length, 10):] = times[:, -10:]
        batch = {name: torch.from_numpy(v) for name, v in padded.items()}
        batch["history_rows"] = torch.arange(2).repeat_interleave(length)
        batch["history_items"] = torch.from_numpy(items.reshape(-1))
        _, _, top_items, top_scores = session.run(None, feed)
        with torch.no_grad():
            scores, expected = module.top_k(batch, 5)
        np.testing.assert_array_equal(top_items, expected.numpy())
        np.testing.assert_allclose(top_scores, scores.numpy(), rtol=1e-4, atol=1e-5)
