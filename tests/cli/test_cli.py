"""The ``seqrec`` command end to end, on tiny data: configs parse, fit/validate/test run, tables print."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, common, csv_logger  # noqa: E402
from seqrec.cli import run

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))




@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_key_is_commented(config: Path) -> None:
    for lineno, line in enumerate(config.read_text().splitlines(), 1):
        if re.match(r"^\s*[A-Za-z_]+:", line) or re.match(r"^\s*- class_path:", line):
            assert "#" in line, f"{config.name}:{lineno} has no comment: {line!r}"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("architecture", "loss", "negatives"),
    [("sasrec", "ce", "uniform"), ("sasrec", "bce", "uniform"), ("sasrec", "sampled_softmax", "mixed"),
     ("sasrec", "gbce", "popularity"), ("bert4rec", "ce", "none"), ("bert4rec", "sampled_softmax", "in_batch"),
     ("sasrec", "bce", "uniform --data.shared_negatives=true --data.window_stride=4 --data.length_bucketing=false")],
)
def test_fit_prints_model_beside_popularity(tiny: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], architecture: str,
                                            loss: str, negatives: str) -> None:
    cli = run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, *common(tmp_path),
               f"--model.architecture={architecture}", f"--model.loss={loss}", *f"--data.negatives={negatives}".split(),
               "--data.num_in_batch=2", "--model.norm_first=false"])
    assert cli.datamodule.task == architecture
    out = capsys.readouterr().out
    assert "Dataset synthetic: users=300" in out
    assert "full ranking over" in out and "popularity" in out and "sampled: target vs 100 uniform" in out
    results = cli.model.results["test"]
    for name in ("hr@10", "ndcg@10", "mrr@10", "popularity/ndcg@10", "sampled/hr@10"):
        assert 0.0 <= results[name] <= 1.0
    assert cli.trainer.checkpoint_callback.best_model_path


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # a new log version per command is expected
def test_validate_and_test_from_checkpoint(tiny: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, *common(tmp_path, 1)]
    fit = run(["fit", *base, "--test_after_fit=false"])
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    assert "Test results" not in capsys.readouterr().out
    val = run(["validate", *base, f"--ckpt_path={ckpt}"])
    test = run(["test", *base, f"--ckpt_path={ckpt}"])
    assert "Test results on synthetic" in capsys.readouterr().out
    assert val.model.results["val"]["ndcg@10"] == pytest.approx(fit.model.results["val"]["ndcg@10"], abs=1e-6)
    assert 0 < test.model.results["test"]["ndcg@10"] <= 1


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_best_ckpt_is_the_epoch_with_the_best_validation_ndcg(tiny: list[str], tmp_path: Path) -> None:
    import csv

    import torch

    # A learning rate this high peaks at epoch 1 and then gets worse: the best epoch is neither the first
    # nor the last, so neither the last epoch's weights nor a checkpoint kept by the wrong mode pass for it.
    base = ["--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, "--model.lr=0.3"]
    fit = run(["fit", *base, *common(tmp_path / "fit", 4), "--test_after_fit=false"])
    with open(tmp_path / "fit" / "lightning_logs" / "version_0" / "metrics.csv", newline="") as f:
        val = {int(row["epoch"]): float(row["val/ndcg@10"]) for row in csv.DictReader(f) if row["val/ndcg@10"]}
    assert sorted(val) == [0, 1, 2, 3]
    best_epoch = max(val, key=val.get)
    assert 0 < best_epoch < 3, val  # the case this test is about
    link = tmp_path / "fit" / "best.ckpt"
    saved = torch.load(link, map_location="cpu", weights_only=False)
    assert saved["epoch"] == best_epoch
    assert link.resolve() == Path(fit.trainer.checkpoint_callback.best_model_path).resolve()
    assert float(fit.trainer.checkpoint_callback.best_model_score) == pytest.approx(val[best_epoch], abs=1e-6)
    # And its weights are that epoch's: validating them again gives that epoch's score.
    again = run(["validate", *base, *common(tmp_path / "validate", 4), f"--ckpt_path={link}"])
    assert again.model.results["val"]["ndcg@10"] == pytest.approx(val[best_epoch], abs=1e-6)
    # last.ckpt, what a killed run resumes from, is the last epoch, not the best one.
    last = next((tmp_path / "fit").rglob("last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == fit.trainer.global_step
    assert saved["global_step"] < fit.trainer.global_step


@pytest.mark.slow
def test_games_config_on_a_tiny_file_in_that_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "data" / "amazon-games"
    folder.mkdir(parents=True)
    lines = [f"{u} {(u * 7 + t * 3) % 40 + 1}" for u in range(1, 61) for t in range(6)]
    (folder / "Video.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("SEQREC_DATA_DIR", str(tmp_path / "data"))
    cli = run(["fit", "--config", str(ROOT / "configs/sasrec_games.yaml"), *common(tmp_path, 1),
               "--trainer.check_val_every_n_epoch=1"])
    assert "Test results on Video.txt (60 users" in capsys.readouterr().out
    assert cli.model.hparams.loss == "bce" and cli.model.hparams.hidden_size == 50
    assert cli.model.hparams.num_items == cli.datamodule.num_items == 40


def test_console_script_help() -> None:
    res = subprocess.run([sys.executable, "-m", "seqrec.cli", "fit", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--data.path" in res.stdout and "--model.loss" in res.stdout


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_config_parses(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", "--config", str(config), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "max_len" in capsys.readouterr().out


@pytest.mark.slow
def test_wandb_offline_run_records_config_metrics_table_and_checkpoint(tiny: list[str], tmp_path: Path, monkeypatch) -> None:
    import json

    import wandb
    from seqrec.train.tracking import read_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = json.dumps([
        {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path)}},
        {"class_path": "seqrec.train.tracking.WandbLogger", "init_args": {"save_dir": str(tmp_path)}},
    ])
    cli = run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, "--trainer.max_epochs=2",
               f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
               "--trainer.log_every_n_steps=1", f"--trainer.logger={loggers}"])
    wandb.finish()  # a CLI process finishes its run at exit; here the test reads it first
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    record = read_offline_run(runs[0], wait_seconds=30)
    assert record["finished"]
    assert record["config"].get("loss") == "ce" and record["config"]["hidden_size"] == 16, sorted(record["config"])
    assert record["config"]["dataset"]["users"] == 300
    logged = {k for row in record["history"] for k in row}
    for key in ("train/loss", "val/ndcg@10", "val/hr@10", "val/mrr@10", "train/tokens_per_s",
                "train/data_wait_fraction", "test/ndcg@10", "test/recommendations"):
        assert key in logged, key
    assert "test/recommendations" in record["tables"]
    assert any(a.startswith("model-") for a in record["artifacts"])
    assert record["summary"]["test/ndcg@10"] == pytest.approx(cli.model.results["test"]["ndcg@10"], abs=1e-6)


def test_wandb_mode_from_environment(monkeypatch) -> None:
    from seqrec.train.tracking import resolve_mode

    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("offline") == "disabled"
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode("offline") == "offline"
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="W&B mode"):
        resolve_mode("offline")


def test_no_progress_bar_without_a_terminal(tiny: list[str], tmp_path: Path) -> None:
    # pytest captures stdout, so there is no terminal here, as in CI.
    cli = run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, "--trainer.max_epochs=1",
               f"--trainer.default_root_dir={tmp_path}", csv_logger(tmp_path), "--test_after_fit=false",
               "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"])
    assert cli.trainer.progress_bar_callback is None


def test_unloggable_monitor_and_nothing_to_evaluate_fail_before_training(tiny: list[str], tmp_path: Path) -> None:
    base = ["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, *common(tmp_path, 1)]
    with pytest.raises(ValueError, match=r"EarlyStopping monitors 'val/ndcg@10', which is never logged with model.ks=\[5\]"):
        run([*base, "--model.ks=[5]"])
    short = tmp_path / "short.txt"
    short.write_text("1 5\n1 6\n2 5\n2 7\n")  # two interactions per user: none can be evaluated
    with pytest.raises(ValueError, match="no user can be evaluated"):
        run([*base, f"--data.path={short}", "--data.format=sasrec", "--data.sampled_eval=none"])
    assert not list(tmp_path.rglob("*.ckpt"))  # refused before any training


def test_two_fits_into_one_folder_never_overwrite_each_other(tiny: list[str], tmp_path: Path) -> None:
    root = tmp_path / "run"
    args = ["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, "--trainer.max_epochs=1",
            f"--trainer.default_root_dir={root}", csv_logger(tmp_path / "logs"), "--trainer.enable_progress_bar=false"]
    first = run(args)
    before = (root / "test_results.json").read_bytes()
    second = run([*args, "--seed_everything=7", "--data.seed=7"])
    assert Path(second.trainer.default_root_dir) == tmp_path / "run-2"
    assert (root / "test_results.json").read_bytes() == before and (tmp_path / "run-2" / "best.ckpt").exists()
    assert first.model.results["test"] != second.model.results["test"]


@pytest.mark.parametrize("subcommand", ["fit", "validate", "test", "predict"])
def test_a_damaged_checkpoint_is_named_not_a_traceback(subcommand: str, tiny: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "damaged.ckpt"
    bad.write_bytes(b"PK\x03\x04 not a checkpoint" * 20)
    base = [subcommand, "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, *common(tmp_path, 1)]
    with pytest.raises(ValueError, match=r"damaged\.ckpt: not a readable checkpoint"):
        run([*base, f"--ckpt_path={bad}"])


def test_the_console_script_prints_one_line_for_a_bad_checkpoint(tmp_path: Path) -> None:
    bad = tmp_path / "random.ckpt"
    bad.write_bytes(bytes(range(256)) * 8)
    proc = subprocess.run([sys.executable, "-m", "seqrec.cli", "test", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"),
                           f"--ckpt_path={bad}"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"seqrec: error: {bad}: not a readable checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr and "weights_only` set to `False`" not in proc.stderr
    assert "args parameter is intended" not in proc.stderr  # the command line reaches LightningCLI once
