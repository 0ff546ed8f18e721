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
