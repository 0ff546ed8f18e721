"""Benchmarks are not tests: here they only run once on a tiny size, to prove they still work."""

import json

import pytest
from conftest import require  # noqa: E402

from benchmarks import batching, training


def test_batching_benchmark_runs(tmp_path) -> None:
    results = batching.main(["--shapes", "tiny", "--repeats", "1", "--inner", "2", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "batching.json").read_text())
    assert saved["results"][0]["shape"]["name"] == "tiny"
    assert set(results[0]["impls"]) == {"rust_1_thread", "rust_all_threads", "numpy_vectorised", "python_loop", "memcpy"}
    assert "Rust (1 thread) is" in (tmp_path / "batching.md").read_text()


@pytest.mark.slow
def test_training_benchmark_runs_and_decomposes_the_speed_up(tmp_path) -> None:
    out = training.main(["--users", "300", "--items", "200", "--clusters", "5", "--epochs", "1", "--hidden", "16",
                         "--workers", "1", "--batch-size", "32", "--out", str(tmp_path)])
    setups = out["setups"]
    assert list(setups) == ["original", "original_bucketed", "seqrec_fixed", "seqrec"]
    for r in setups.values():
        assert r["tokens_per_s"] > 0 and 0 <= r["data_wait_fraction"] < 1 and "ndcg@10" in r["val"]
    # Length-aware batches pad less than batches padded to max_len, with either sampler.
    for aware, fixed in (("seqrec", "seqrec_fixed"), ("original_bucketed", "original")):
        assert setups[aware]["padding_fraction"] < setups[fixed]["padding_fraction"] - 0.3
    assert setups["seqrec_fixed"]["padding_fraction"] == pytest.approx(setups["original"]["padding_fraction"], abs=0.05)
    # Both routes multiply back to the whole speed-up, and each route's log shares sum to 1.
    d = out["decomposition"]
    total = out["speedup_tokens_per_s"]
    assert d["sampler_at_fixed_padding"] * d["batching_with_engine"] == pytest.approx(total)
    assert d["batching_with_python_sampler"] * d["sampler_at_length_aware_batches"] == pytest.approx(total)
    assert d["sampler_at_fixed_padding_share"] + d["batching_with_engine_share"] == pytest.approx(1)
    text = (tmp_path / "training.md").read_text()
    assert "| batching_with_engine | seqrec / seqrec_fixed |" in text
    assert json.loads((tmp_path / "training.json").read_text())["decomposition"] == pytest.approx(d)


def test_original_sampler_groups_by_length_and_cuts_padding() -> None:
    import numpy as np

    lengths = np.array([2, 9, 3, 12, 5, 4, 8, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    items = (np.arange(offsets[-1]) % 20 + 1).astype(np.int32)
    users = np.arange(lengths.size)
    plain = list(training.OriginalSampler(offsets, items, 40, users, 4, 10, 6, seed=0))
    bucketed = list(training.OriginalSampler(offsets, items, 40, users, 4, 10, 6, seed=0, bucket=True))
    assert len(plain) == len(bucketed) == 6 and all(b["inputs"].shape == (4, 10) for b in plain)
    for b in bucketed:  # cut to the longest row, which fills its first column; the rest as the loop builds them
        width = b["inputs"].shape[1]
        assert (b["inputs"][:, 0] != 0).any() and (b["targets"] != 0).sum(1).max() == width
        assert b["negatives"].shape == (4, width, 1)
        assert set(b["inputs"][b["inputs"] != 0].tolist()) <= set(items.tolist())
    # Sorted by length within the group, so the batches differ in width and pad less than the plain ones.
    assert len({b["inputs"].shape[1] for b in bucketed}) > 1
    padding = [sum(int((b["inputs"] == 0).sum()) for b in batches) / sum(b["inputs"].numel() for b in batches)
               for batches in (plain, bucketed)]
    assert padding[1] < padding[0]


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
    require("faiss")
    from benchmarks import retrieval

    out = retrieval.main(["--items", "3000", "--dim", "16", "--queries", "50", "--ef", "16", "64", "--repeats", "1",
                          "--out", str(tmp_path)])
    assert [r["ef_search"] for r in out["hnsw"]] == [16, 64]
    assert 0 < out["hnsw"][0]["recall"] <= out["hnsw"][1]["recall"] <= 1  # more candidates, no worse recall
    assert "speed-up vs exact" in (tmp_path / "retrieval.md").read_text()


def test_suite_comparison_flags_a_regression_and_plots_history(tmp_path) -> None:
    from benchmarks import suite

    figures = {name: {"median": 10.0} for name in suite.CHECKS}
    figures["training.sasrec_data_wait_fraction"] = {"median": 0.01}
    base = {"figures": figures}
    same = {"figures": {k: dict(v) for k, v in figures.items()}}
    assert suite.compare(same, base)[0]
    # Noise within the tolerance passes; a 3x slower batcher does not, and the table says which figure.
    same["figures"]["training.seqrec_vs_original"]["median"] = 6.0
    same["figures"]["training.sasrec_data_wait_fraction"]["median"] = 0.04  # under the 5% floor
    assert suite.compare(same, base)[0]
    slow = {"figures": {k: dict(v) for k, v in figures.items()}}
    slow["figures"]["batching.rust_vs_numpy"]["median"] = 3.0
    passed, table = suite.compare(slow, base)
    assert not passed and "| batching.rust_vs_numpy | 10 | 3 | >= 5 | **REGRESSION** |" in table
    waiting = {"figures": {k: dict(v) for k, v in figures.items()}}
    waiting["figures"]["training.sasrec_data_wait_fraction"]["median"] = 0.2
    assert not suite.compare(waiting, base)[0]
    # A figure that cannot be compared fails too, and the table says where it is missing.
    gone = {"figures": {k: dict(v) for k, v in figures.items() if k != "batching.epoch_vs_numpy"}}
    passed, table = suite.compare(gone, base)
    assert not passed and "| batching.epoch_vs_numpy | 10 | – | – | **MISSING** from this run |" in table
    passed, table = suite.compare(same, gone)
    assert not passed and "**MISSING** from the baseline (refresh it with `python -m benchmarks baseline`)" in table

    machine = {"git_commit": "abc", "time": "t", "cores": 2, "torch": "x"}
    history = tmp_path / "history.jsonl"
    history.write_text("".join(json.dumps({"suite": "full", "machine": machine, "figures": figures}) + "\n"
                               for _ in range(3)))
    png = suite.plot_history(history, tmp_path / "history.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| calibration.gflops |" in suite.summary({"suite": "ci", "seconds": 1, "machine": machine,
                                                      "figures": {"calibration.gflops": {"median": 1.0}}})


@pytest.mark.slow
def test_gpu_benchmark_skips_without_cuda_and_runs_its_path_on_cpu(tmp_path, capsys, monkeypatch) -> None:
    import torch

    from benchmarks import gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path)]) is None
    assert "skipping" in capsys.readouterr().out
    out = gpu.main(["--device", "cpu", "--users", "300", "--items", "100", "--epochs", "1", "--minutes", "1", "--batch-size", "32",
                    "--out", str(tmp_path)])
    assert out["sasrec_ce"]["throughput"]["tokens_per_s"] > 0 and out["sasrec_bce"]["epochs"] >= 0
    assert out["sasrec_pool"]["recipe"] == "pool" and out["sasrec_pool"]["throughput"]["tokens_per_s"] > 0
    assert json.loads((tmp_path / "gpu.json").read_text())["device"] == "cpu"


def test_suite_commands_write_runs_history_baseline_and_plot(tmp_path, monkeypatch, capsys) -> None:
    # The measuring itself is what .ci/run runs; here every command's bookkeeping runs on a fake result.
    from benchmarks import suite

    machine = {"git_commit": "abc", "time": "2026-01-01T00:00:00", "cores": 2, "torch": "x"}
    fake = {"machine": machine, "seconds": 1.0,
            "figures": {name: {"median": 2.0, "min": 1.0, "max": 3.0} for name in suite.CHECKS}}
    slowdowns = []

    def run_suite(name, engine_slowdown=1.0):
        slowdowns.append(engine_slowdown)
        return {"suite": name, **fake}

    monkeypatch.setattr(suite, "run_suite", run_suite)
    base = tmp_path / "baseline.json"
    assert suite.main(["baseline", "--baseline", str(base)]) == 0
    assert json.loads(base.read_text())["suite"] == "ci"
    history = tmp_path / "history.jsonl"
    for _ in range(2):
        assert suite.main(["run", "--suite", "full", "--baseline", str(base), "--out", str(tmp_path / "runs"),
                           "--history", str(history)]) == 0
    assert len(history.read_text().splitlines()) == 2
    assert len(list((tmp_path / "runs").glob("full-*.json"))) >= 1
    assert "Not compared: the baseline" in capsys.readouterr().out  # a full run is not held to the ci baseline
    assert suite.main(["run", "--suite", "ci", "--baseline", str(base), "--out", str(tmp_path / "runs")]) == 0
    assert "| batching.rust_vs_numpy | 2 | 2 | >= 1 | ok |" in capsys.readouterr().out
    assert suite.main(["plot", "--history", str(history), "--out", str(tmp_path / "h.png")]) == 0
    assert (tmp_path / "h.png").exists()
    # --check fails whenever it cannot compare: no baseline file, or a baseline of another suite.
    missing = tmp_path / "nowhere.json"
    assert suite.main(["run", "--baseline", str(missing), "--out", str(tmp_path / "runs"), "--check"]) == 1
    assert f"no baseline file {missing}" in capsys.readouterr().err
    assert suite.main(["run", "--suite", "full", "--baseline", str(base), "--out", str(tmp_path / "runs"),
                       "--history", str(history), "--check"]) == 1
    assert "is a ci run, this a full run" in capsys.readouterr().err
    assert suite.main(["run", "--baseline", str(base), "--out", str(tmp_path / "runs"), "--check",
                       "--slow-engine", "1.3"]) == 0 and slowdowns[-1] == 1.3  # reaches the measurement
    fake["figures"]["batching.rust_vs_numpy"]["median"] = 0.5
    assert suite.main(["run", "--baseline", str(base), "--out", str(tmp_path / "runs"), "--check"]) == 1
    del fake["figures"]["batching.epoch_vs_numpy"]
    fake["figures"]["batching.rust_vs_numpy"]["median"] = 2.0
    assert suite.main(["run", "--baseline", str(base), "--out", str(tmp_path / "runs"), "--check"]) == 1
    assert "**MISSING** from this run" in capsys.readouterr().out


def test_speed_gate_fails_on_an_injected_engine_slowdown() -> None:
    # The engine's build of a real training epoch against numpy's, the suite's epoch: a measurement whose
    # engine does 3x the work must fail the suite's check against an unslowed one, and a second unslowed
    # one must pass it. One epoch for all three: what differs between processes (memory layout, the
    # neighbours) is the noise the tolerance was sized on (see suite.CHECKS), not what this test shows.
    # 3x, not 2x: CI once measured an injected 2x as 0.615 of the unslowed run (limit 0.55); 3x measured
    # 0.37 of it here (the engine 2.66x slower), failing with room to spare.
    from benchmarks import suite

    name = "batching.epoch_vs_numpy"
    only = {name: suite.CHECKS[name]}
    epoch = batching.TrainingEpoch(users=20000)  # the suite's size: a smaller epoch measured 1.5x as 0.59-0.72

    def run(slowdown: float) -> dict:
        r = epoch.measure(repeats=5, slowdown=slowdown)
        return {"figures": {name: suite.stats(r["vs_numpy"])}, "engine": suite.stats(r["engine_ns_per_token"])}

    base = run(1.0)
    slow = run(3.0)
    passed, table = suite.compare(slow, base, only)
    assert not passed and "**REGRESSION**" in table, table
    # 1.5x injected work measured 1.46x on an idle machine, up to 2.2x with a training on the other core (the
    # extra builds run colder there): the 3x here must take effect, and the failure not come from far more.
    assert 2.2 * base["engine"]["median"] < slow["engine"]["median"] < 5.0 * base["engine"]["median"], (base, slow)
    passed, table = suite.compare(run(1.0), base, only)
    assert passed, table


@pytest.mark.slow
def test_large_catalogue_benchmark_runs(tmp_path) -> None:
    from benchmarks import large_catalogue

    out = large_catalogue.main(["--catalogues", "3000", "9000", "--users", "800", "--train-steps", "4", "--repeats", "2",
                                "--eval-users", "256", "--eval-chunk", "500", "--hidden", "16", "--out", str(tmp_path)])
    first, second = out["catalogues"]
    assert 0 < first["items"] <= 3000 < second["items"] <= 9000  # ids compacted to the items the walks reached
    for r in out["catalogues"]:
        assert r["eval"]["users"] == 256
        for recipe in ("shared_dense", "pool_sparse"):
            assert len(r["train"][recipe]["tokens_per_s"]) == 2 and r["train"][recipe]["tokens_per_s_median"] > 0
    assert "pool_sparse" in (tmp_path / "large_catalogue.md").read_text()


def test_kernels_benchmark_runs(tmp_path) -> None:
    from benchmarks import kernels

    out = kernels.main(["--users", "16", "--items", "500", "--negatives", "8", "--repeats", "1", "--train-users", "300",
                        "--train-epochs", "1", "--hidden", "8", "--out", str(tmp_path)])
    assert out["rank_counts"]["speedup"] > 0 and out["shared_negatives"]["speedup"] > 0
    trained = out["rank_counts_trained"]
    assert trained["speedup"] > 0 and trained["users"] == 16 and 0 <= trained["rows_counted"] <= 1
    assert trained["columns"] == trained["model"]["items"] + 1  # every item's score, and the padding column
    text = (tmp_path / "kernels.md").read_text()
    assert "speed-up" in text and "trained SASRec's scores" in text


@pytest.mark.slow
def test_time_to_quality_benchmark_runs_and_merges(tmp_path, monkeypatch) -> None:
    from benchmarks import time_to_quality

    small_pool = [o.replace("8192", "60") for o in time_to_quality.RECIPES["pool_8k_sparse"]]
    monkeypatch.setitem(time_to_quality.RECIPES, "pool_small", small_pool)

    tiny = ["data.synthetic.num_users=300", "data.synthetic.num_items=120", "data.synthetic.num_clusters=6",
            "data.synthetic.mean_length=12", "model.hidden_size=16", "trainer.max_epochs=3",
            "trainer.check_val_every_n_epoch=1", "data.sampled_eval=none"]
    runs = time_to_quality.main(["--config", "sasrec_synthetic", "--recipes", "ce", "pool_small", "--minutes", "2",
                                 "--set", *tiny, "--out", str(tmp_path), "--name", "ttq_a"])
    assert [r["recipe"] for r in runs] == ["ce", "pool_small"]
    for r in runs:
        assert [p["epoch"] for p in r["curve"]] == [1, 2, 3] and r["epochs"] == 3
        assert 0 < r["curve"][0]["seconds"] < r["curve"][-1]["seconds"] <= r["train_seconds"] + 1e-9
        assert 0 < r["test"]["ndcg@10"] <= 1
    # the table's seconds-to-95% column is the first validation at 95% of CE's best
    best = max(p["val_ndcg@10"] for p in runs[0]["curve"])
    assert time_to_quality.seconds_to(runs[0]["curve"], 0.95 * best) is not None
    assert time_to_quality.seconds_to(runs[1]["curve"], 10.0) is None
    merged = time_to_quality.main(["--merge", "ttq_a", "--out", str(tmp_path), "--name", "ttq_all"])
    assert len(merged) == 2 and (tmp_path / "ttq_all.png").stat().st_size > 0
    assert "s to 95% of CE" in (tmp_path / "ttq_all.md").read_text()


def test_softmax_benchmark_runs_both_paths(tmp_path) -> None:
    from benchmarks import softmax

    out = softmax.main(["--items", "3000", "--tokens", "32", "--hidden", "8", "--chunk", "700", "--repeats", "2",
                        "--out", str(tmp_path)])
    paths = [(r["items"], r["path"]) for r in out["rows"]]
    assert paths == [(3000, "logits"), (3000, "chunked")]
    a, b = out["rows"]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["seconds"] > 0 and b["peak_step_gib"] >= 0
    assert "chunked" in (tmp_path / "softmax.md").read_text()


@pytest.mark.slow
def test_predict_memory_benchmark_runs(tmp_path, monkeypatch) -> None:
    from benchmarks import predict_memory

    monkeypatch.setattr("sys.argv", ["predict_memory"])
    out = predict_memory.main(["--users", "600", "--items", "300", "--shares", "0.5", "1", "--out", str(tmp_path)])
    # every predicted user gets its top-10 written, by a process whose memory was sampled
    assert [r["users"] for r in out["rows"]] == [300, 600]
    assert [r["rows"] for r in out["rows"]] == [3000, 6000]
    assert all(r["peak_growth_mb"] >= 0 and r["rss_at_start_mb"] > 100 for r in out["rows"])
    assert (tmp_path / "predict_memory.md").read_text().count("\n| ") == 3


@pytest.mark.slow
def test_serving_benchmark_runs(tmp_path, monkeypatch) -> None:
    require("httpx")
    require("fastapi")
    from benchmarks import serving

    monkeypatch.setattr("sys.argv", ["serving"])
    out = serving.main(["--catalogues", "synthetic", "--items", "600", "--users", "700", "--train-batches", "2",
                        "--settings", "exact, one at a time", "hnsw, micro-batched", "--levels", "1", "4",
                        "--seconds", "1", "--requests", "40", "--out", str(tmp_path)])
    rows = out["rows"]
    assert [(r["setting"], r["concurrency"]) for r in rows] == [
        ("exact, one at a time", 1), ("exact, one at a time", 4), ("hnsw, micro-batched", 1), ("hnsw, micro-batched", 4)]
    assert all(r["errors"] == 0 and 0 < r["requests"] <= 40 and r["p50_ms"] <= r["p99_ms"] for r in rows)
    assert rows[0]["mean_batch"] == rows[1]["mean_batch"] == 1.0  # --max-batch 1: one request per pass
    assert "highest rate with p99 under 50 ms" in (tmp_path / "serving.md").read_text()


def test_cold_start_table_compares_the_best_validation_feature_arm(tmp_path) -> None:
    from benchmarks import cold_start

    def test(warm: float, cold: float, knn: float) -> dict:
        return {"ndcg@10": warm, "warm/ndcg@10": warm, "cold/ndcg@10": cold, "cold/hr@10": 2 * cold,
                "feature_knn/cold/ndcg@10": knn, "feature_popularity/cold/ndcg@10": knn / 2}

    def row(overrides: list[str], val: float, warm: float, cold: float, knn: float) -> dict:
        return {"overrides": overrides, "seed": 42, "epochs": 3, "val": {"ndcg@10": val},
                "test": test(warm, cold, knn), "command": "cmd"}

    rows = [row(cold_start.ARMS["features"], 0.05, 0.09, 0.03, 0.01),
            row([o.replace("0.5", "0.2") for o in cold_start.ARMS["features"]], 0.06, 0.095, 0.02, 0.01),
            row(cold_start.ARMS["ids"], 0.07, 0.1, 0.05, 0.0)]
    text = cold_start.table(rows)
    assert "Compared: features, ID dropout 0.2 (" in text  # the better validation, not the better cold test
    assert "| features, ID dropout 0.2, unboosted | 0.950 | – | 0.0200 | 2.00x | – |" in text
    assert "Cold targets, per run" not in text and "trade-off on validation" not in text  # nothing recorded
    run = tmp_path / "run"
    run.mkdir()
    margin = {"baseline": 0.01, "model": 0.02, "difference": {"mean": 0.01, "low": 0.004, "high": 0.016},
              "p_value": 0.0005, "ratio": 2.0}
    (run / "test_results.json").write_text(json.dumps({"cold_start": {"users": 321, "margins": {
        "feature_knn/ndcg@10": margin, "feature_knn/hr@10": margin}}}))
    cold_start.attach_margins(rows[1], str(run))
    text = cold_start.table(rows)
    assert "| features, ID dropout 0.2 | 42 | 321 | feature_knn | 0.0200 | 0.0100 | +0.0100 | [+0.0040, +0.0160] | " \
           "2.00 | < 0.001 |" in text
    assert "| 0.0200 | 2.00x | 1 of 1 (mean difference +0.0100) |" in text
    rows.append(row(cold_start.ARMS["ids_withheld"], 0.05, 0.08, 0.0, 0.0))
    assert "| features, ID dropout 0.2, unboosted | 0.950 | 1.188 |" in cold_start.table(rows)
    # The same run tested again at the boost validation chose: its own rows, its curve with the choice marked.
    below = {**margin, "difference": {"mean": 0.02, "low": -0.001, "high": 0.03}}
    rows[1]["boost"] = {"chosen": 0.3, "tolerance": 0.02, "test": test(0.0912, 0.04, 0.01),
                        "curve": [{"boost": 0.0, "warm": 0.1, "cold": 0.02}, {"boost": 0.3, "warm": 0.099, "cold": 0.03}],
                        "cold_margins": {"users": 321, "margins": {"feature_knn/ndcg@10": below}}}
    text = cold_start.table(rows)
    assert "| features, ID dropout 0.2 | model, new-item boost 0.3 | 42 | 3 | 0.0912 | 0.0912 | 0.0400 | 0.0800 |" in text
    assert "| features, ID dropout 0.2, with the new-item boost | 0.912 | 1.140 | 0.0400 | 4.00x | 0 of 1 " in text
    assert "| features, ID dropout 0.2 | 42 | 0.1000 / 0.0200 | **0.0990 / 0.0300** |" in text
    assert "| features, ID dropout 0.2, new-item boost | 42 | 321 | feature_knn |" in text
    assert "| features, ID dropout 0.2, unboosted | 0.950 | 1.188 |" in text  # still beside it
    # Overrides beyond the arm's own name the arm.
    extra = row([*cold_start.ARMS["features"], "--model.unknown_id=learned"], 0.04, 0.09, 0.03, 0.01)
    assert cold_start.arm_name(extra) == "features, ID dropout 0.5, model.unknown_id=learned"


def test_accuracy_time_to_quality_reads_each_curve_at_fixed_training_times() -> None:
    from benchmarks import accuracy

    curve = [{"epoch": 2, "seconds": 200, "val_ndcg@10": 0.02}, {"epoch": 4, "seconds": 500, "val_ndcg@10": 0.04},
             {"epoch": 6, "seconds": 1000, "val_ndcg@10": 0.035}]
    assert accuracy.best_by(curve, 2) is None and accuracy.best_by(curve, 5) == 0.02
    assert accuracy.best_by(curve, 10) == 0.04 and accuracy.best_by(curve, 30) == 0.04  # the best so far
    runs = {"a": [{"curve": curve, "train_seconds": 1000}, {"curve": [{"epoch": 1, "seconds": 100, "val_ndcg@10": 0.06}],
                                                           "train_seconds": 100}]}
    lines = accuracy.time_to_quality(runs)
    assert "| a | 2 | 0.0400 | 0.0500 | 0.0500 | 0.0500 | 17 |" in lines  # means over the seeds there by then


def test_bootstrap_benchmark_runs_and_both_intervals_agree(tmp_path) -> None:
    from benchmarks import bootstrap

    out = bootstrap.main(["--users", "3000", "--resamples", "400", "--repeats", "1", "--out", str(tmp_path)])
    for r in out["rows"]:
        (lo_a, hi_a), (lo_b, hi_b) = r["interval_loop"], r["interval_seqrec"]
        width = hi_a - lo_a
        assert lo_b < r["mean"] < hi_b and abs(lo_a - lo_b) < 0.25 * width and abs(hi_a - hi_b) < 0.25 * width
    assert (tmp_path / "bootstrap.md").exists()
