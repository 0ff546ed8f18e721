"""Benchmarks are not tests: here they only run once on a tiny size, to prove they still work."""

import json

import pytest

from benchmarks import batching, training


def test_batching_benchmark_runs(tmp_path) -> None:
    results = batching.main(["--shapes", "tiny", "--repeats", "1", "--inner", "2", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "batching.json").read_text())
    assert saved["results"][0]["shape"]["name"] == "tiny"
    assert set(results[0]["impls"]) == {"rust_1_thread", "rust_all_threads", "numpy_vectorised", "python_loop", "memcpy"}
    assert "Rust (1 thread) is" in (tmp_path / "batching.md").read_text()


@pytest.mark.slow
def test_training_benchmark_runs(tmp_path) -> None:
    out = training.main(["--users", "300", "--items", "200", "--clusters", "5", "--epochs", "1", "--hidden", "16",
                         "--workers", "1", "--batch-size", "32", "--out", str(tmp_path)])
    for setup in ("original", "seqrec"):
        r = out["setups"][setup]
        assert r["tokens_per_s"] > 0 and 0 <= r["data_wait_fraction"] < 1 and "ndcg@10" in r["val"]
    # Length-aware batches pad less than batches padded to max_len.
    assert out["setups"]["seqrec"]["padding_fraction"] < out["setups"]["original"]["padding_fraction"]
    assert (tmp_path / "training.md").exists()


@pytest.mark.slow
def test_accuracy_runner_on_a_tiny_file_and_skips_missing_data(tmp_path, monkeypatch, capsys) -> None:
    from benchmarks import accuracy

    folder = tmp_path / "data" / "amazon-games"
    folder.mkdir(parents=True)
    lines = [f"{u} {(u * 7 + t * 3) % 40 + 1}" for u in range(1, 61) for t in range(6)]
    (folder / "Video.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SEQREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr("sys.argv", ["seqrec"])
    rows = accuracy.main(["--configs", "sasrec_games", "sasrec_beauty", "--minutes", "1", "--out", str(tmp_path)])
    assert [r["config"] for r in rows] == ["sasrec_games"]
    assert "skipping sasrec_beauty" in capsys.readouterr().out
    assert 0 <= rows[0]["test"]["sampled/hr@10"] <= 1
    text = (tmp_path / "accuracy.md").read_text()
    assert "SASRec paper (ICDM 2018)" in text and "uniform-100" in text
    (tmp_path / "accuracy.json").rename(tmp_path / "part.json")
    merged = accuracy.main(["--merge", "part", "--out", str(tmp_path)])
    assert merged == json.loads((tmp_path / "accuracy.json").read_text())["runs"] == rows


def test_retrieval_benchmark_runs(tmp_path) -> None:
    pytest.importorskip("faiss")
    from benchmarks import retrieval

    out = retrieval.main(["--items", "3000", "--dim", "16", "--queries", "50", "--ef", "16", "64", "--repeats", "1",
                          "--out", str(tmp_path)])
    assert [r["ef_search"] for r in out["hnsw"]] == [16, 64]
    assert 0 < out["hnsw"][0]["recall"] <= out["hnsw"][1]["recall"] <= 1  # more candidates, no worse recall
    assert "speed-up vs exact" in (tmp_path / "retrieval.md").read_text()
