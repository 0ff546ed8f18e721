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
    out = capsys.readouterr().out
    assert out.count("Test results on synthetic") == 1
    assert "DataLoader 0" not in out.split("Test results on")[1]  # validate's table, but not test's raw one
    assert test.trainer.test_loop.verbose is False
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


def test_run_with_args_from_a_script_with_its_own_options_does_not_warn(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # benchmarks.accuracy --configs ... calls run(args): its own argv is not the CLI's (warnings are errors here)
    monkeypatch.setattr("sys.argv", ["accuracy.py", "--configs", "x"])
    run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *common(tmp_path, 1), "--data.synthetic.num_users=200",
         "--test_after_fit=false"])
    assert sys.argv == ["accuracy.py", "--configs", "x"]


def test_console_script_help() -> None:
    res = subprocess.run([sys.executable, "-m", "seqrec.cli", "fit", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--data.path" in res.stdout and "--model.loss" in res.stdout
    # Each key has its line of help: those documented together once had none.
    assert re.search(r"--model\.num_blocks NUM_BLOCKS\s+Transformer blocks", res.stdout), res.stdout[:2000]
    assert re.search(r"--data\.eval_batch_size EVAL_BATCH_SIZE\s+Users per evaluation", res.stdout)


def _after(argv: list[str]) -> subprocess.CompletedProcess:
    """``seqrec ARGV`` in a fresh interpreter; its last stdout line says whether torch and Lightning were imported."""
    code = ("import sys; sys.argv = ['seqrec', *sys.argv[1:]]\n"
            "from seqrec.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('imported', 'torch' in sys.modules, 'pytorch_lightning' in sys.modules)")
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)


def test_seqrec_help_lists_every_subcommand_without_torch() -> None:
    from seqrec.cli import TOOLS, TRAINING

    res = _after(["--help"])
    listed = re.findall(r"^  (\w+)\s", res.stdout, flags=re.M)
    assert listed == ["fit", "validate", "test", "predict", "data", "plot", "export", "compare", "evaluate",
                      "serve"], res.stdout
    assert set(listed) == set(TRAINING) | set(TOOLS)
    assert "PNG training curves" in res.stdout  # the tools' own help lines
    assert res.stdout.splitlines()[-1] == "imported False False"
    assert _after(["data", "--help"]).stdout.splitlines()[-1] == "imported False False"
    assert "usage: seqrec data" in _after(["data", "--help"]).stdout
    bare = subprocess.run([sys.executable, "-m", "seqrec.cli"], capture_output=True, text=True)
    assert bare.returncode == 2 and "predict" in bare.stderr and "evaluate" in bare.stderr


def test_every_tool_of_the_tools_parser_is_a_seqrec_subcommand() -> None:
    import argparse

    from seqrec.cli import TOOLS
    from seqrec.cli.tools import parser

    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == sorted(TOOLS)


@pytest.mark.parametrize("cls", ["seqrec.train.module.SeqRecModule", "seqrec.data.datamodule.SeqRecDataModule",
                                 "seqrec.data.source.SyntheticSpec"])
def test_every_init_argument_has_its_own_entry_in_the_docstring(cls: str) -> None:
    # What `seqrec fit --help` shows for a key is its numpydoc entry, read by jsonargparse: an argument listed
    # with others ("a, b : int") or not at all has no help.
    import importlib
    import inspect

    import docstring_parser

    module, name = cls.rsplit(".", 1)
    klass = getattr(importlib.import_module(module), name)
    documented = {p.arg_name: p.description for p in docstring_parser.parse(klass.__doc__, docstring_parser.DocstringStyle.NUMPYDOC).params}
    arguments = [a for a in inspect.signature(klass.__init__).parameters if a != "self"]
    missing = [a for a in arguments if not documented.get(a)]
    assert not missing, f"{name}: no docstring entry of its own for {missing}"


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
    config = record["config"]
    # The resolved config as the command line names it: model, data and trainer, the data's linked values too.
    assert config["model"]["loss"] == "ce" and config["model"]["hidden_size"] == 16, sorted(config)
    assert config["model"]["num_items"] == cli.datamodule.num_items == 120
    assert {k: config["data"][k] for k in ("path", "split", "batch_size", "num_negatives", "negatives", "seed")} == {
        "path": None, "split": "leave_one_out", "batch_size": 128, "num_negatives": 1, "negatives": "uniform", "seed": 42}
    assert config["data"]["synthetic"]["num_users"] == 300
    assert config["trainer"]["max_epochs"] == 2 and config["seed_everything"] == 42
    assert config["dataset"]["users"] == 300
    assert "_instantiator" not in json.dumps(config)
    # The CSV logger got the same.
    import yaml

    hparams = yaml.safe_load(next(tmp_path.rglob("hparams.yaml")).read_text())
    assert hparams["data"] == config["data"] and hparams["model"] == config["model"]
    assert "_instantiator" not in json.dumps(hparams)
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


@pytest.mark.slow
def test_a_run_is_one_folder(tiny: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Everything a fit writes lands under trainer.default_root_dir, with the shipped config's own loggers
    (which name no save_dir): checkpoints, the CSV log, config.yaml, the test results and the W&B run."""
    import wandb
    from seqrec.cli.tools import tools

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, "--trainer.max_epochs=1",
            "--trainer.default_root_dir=runs/X"]
    run(args)
    wandb.finish()
    root = cwd / "runs" / "X"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd"] and sorted(p.name for p in cwd.iterdir()) == ["runs"]
    assert sorted(p.name for p in (cwd / "runs").iterdir()) == ["X"]  # nothing beside the run folder
    assert (root / "best.ckpt").resolve().is_file() and (root / "test_results.json").is_file()
    for name in ("last.ckpt", "metrics.csv", "config.yaml", "hparams.yaml"):
        assert len(list(root.rglob(name))) == 1, name
    assert len(list((root / "wandb").glob("offline-run-*/run-*.wandb"))) == 1
    assert tools(["plot", "runs/X"]) == 0 and (root / "validation.png").exists()  # seqrec plot finds the curves

    # A second fit into the same folder goes to X-2, and its loggers follow it there.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    second = run([*args, "--data.seed=7"])
    assert Path(second.trainer.default_root_dir) == Path("runs/X-2")
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    for name in ("best.ckpt", "test_results.json", "logs/version_0/metrics.csv", "logs/version_0/config.yaml"):
        assert (cwd / "runs" / "X-2" / name).exists(), name


@pytest.mark.slow
def test_fit_prints_none_of_lightning_wandb_and_torch_noise(tiny: list[str], tmp_path: Path) -> None:
    import os

    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_SILENT", None)  # W&B's own warnings too, as a user sees them
    proc = subprocess.run([sys.executable, "-m", "seqrec.cli", "fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"),
                           *tiny, "--trainer.max_epochs=1", f"--trainer.default_root_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = proc.stdout + proc.stderr
    for noise in ("litlogger", "litmodels",  # Lightning's adverts
                  "anonymous setting has no effect",  # W&B, for an argument Lightning always passed
                  "LeafSpec",  # torch's deprecation, raised inside Lightning's CombinedLoader
                  "IterableDataset` has `__len__`",  # Lightning, about our evaluation batches
                  "multiple `ModelCheckpoint` callbacks",  # Lightning, for test(ckpt_path="best")
                  "Test metric", "DataLoader 0"):  # Lightning's raw test table after ours
        assert noise not in printed, noise
    assert proc.stdout.count("Test results on synthetic") == 1


def test_loggers_follow_the_run_folder_to_a_fresh_one(tmp_path: Path) -> None:
    from jsonargparse import Namespace
    from seqrec.cli.lightning import follow_run_folder

    root, fresh = tmp_path / "X", tmp_path / "X-2"

    def logger(save_dir):
        return Namespace(class_path="L", init_args=Namespace(save_dir=save_dir))

    loggers = [logger(None), logger(str(root / "logs")), logger(str(root)), logger(str(tmp_path / "elsewhere")),
               Namespace(class_path="NoSaveDir", init_args=Namespace(name="n"))]
    follow_run_folder(loggers, root, fresh)
    assert [entry.init_args.get("save_dir") for entry in loggers] == [
        str(fresh), str(fresh / "logs"), str(fresh), str(tmp_path / "elsewhere"), None]
    single = logger(None)
    follow_run_folder(single, root, root)  # not moved: a missing save_dir is the run folder itself
    assert single.init_args.save_dir == str(root)
    follow_run_folder(False, root, fresh)  # no logger: nothing to do
