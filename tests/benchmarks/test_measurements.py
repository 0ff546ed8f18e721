"""benchmarks.search, bucketing_accuracy and quickstart: each runs small and writes what it claims."""

import json

import pytest
import torch
from conftest import require


def test_search_runs_trials_on_validation_only_and_tables_them(tmp_path, monkeypatch) -> None:
    """Two tiny trials on the synthetic config: each a real fit with the trial's overrides, never a test pass,
    the table best first; and a trial Optuna prunes is stopped by the callback."""
    require("optuna")
    from benchmarks import search
    from conftest import TINY_ARGS

    monkeypatch.setattr(search, "SPACE", {"model.dropout": ("float", (0.1, 0.3)),
                                          "model.block": ("categorical", ["transformer", "ligr"])})
    study = search.main(["--config", "sasrec_synthetic", "--trials", "2", "--minutes", "0.5", "--out", str(tmp_path),
                         "--name", "s", "--set", *[a.lstrip("-") for a in TINY_ARGS], "trainer.max_epochs=2"])
    assert len(study.trials) == 2 and all(0 < t.value <= 1 for t in study.trials)
    assert not list(tmp_path.rglob("test_results.json"))  # the test split was never read
    text = (tmp_path / "s.md").read_text()
    assert "Best: trial" in text and "--model.block=" in text
    assert json.loads((tmp_path / "s.json").read_text())["trials"][0]["epochs"] == 2

    class Trial:
        def __init__(self):
            self.reported = []

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return True

    class FakeTrainer:
        sanity_checking, current_epoch, should_stop = False, 3, False
        callback_metrics = {"val/ndcg@10": torch.tensor(0.25)}

    trial, trainer = Trial(), FakeTrainer()
    cb = search.PruneOnValidation(trial)
    cb.on_validation_end(trainer, None)
    assert trial.reported == [(3, 0.25)] and trainer.should_stop and cb.pruned


def test_bucketing_accuracy_table_from_stored_runs(tmp_path) -> None:
    from benchmarks import bucketing_accuracy

    def row(config, seed, values, seconds):
        return {"config": config, "seed": seed, "epochs": 10, "train_seconds": seconds,
                "curve": [{"epoch": e, "seconds": 0.0, "val_ndcg@10": v} for e, v in zip((5, 10), values)],
                "test": {"ndcg@10": values[-1] - 0.01, "sampled/hr@10": 0.5}}

    runs = [row("sasrec_games", 42, (0.02, 0.03), 90.0), row("sasrec_games", 43, (0.02, 0.05), 100.0),
            row("sasrec_games_fixed", 42, (0.01, 0.02), 220.0), row("other", 42, (0.9, 0.9), 1.0)]
    (tmp_path / "b.json").write_text(json.dumps({"runs": runs}))
    text = bucketing_accuracy.main(["--runs", "b", "--out", str(tmp_path), "--name", "t"])
    assert "| 10 | 0.0200 | 0.0400 ± 0.0141 | +0.0200 |" in text  # per epoch: fixed, bucketed mean ± sd, difference
    assert "| bucketed | 42,43 | 10 | 9.5 |" in text and "| fixed | 42 | 10 | 22.0 |" in text
    assert "0.9000" not in text  # rows of other configs are ignored


def test_quickstart_benchmark_times_the_readme_command(tmp_path) -> None:
    from benchmarks import quickstart
    from conftest import TINY_ARGS

    result = quickstart.main(["--set", *[a.lstrip("-") for a in TINY_ARGS], "trainer.max_epochs=1",
                              "--out", str(tmp_path)])
    assert result["seconds"] > 0 and result["epochs"] == 1 and 0 <= result["test_ndcg@10"] <= 1
    assert "seqrec fit --config configs/sasrec_synthetic.yaml" in (tmp_path / "quickstart.md").read_text()
