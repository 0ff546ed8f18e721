"""`seqrec data stats` and `seqrec plot`: summaries and PNG files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT  # noqa: E402
from seqrec.cli import run
from seqrec.cli.tools import tools
from seqrec.data.loaders import load
from seqrec.evaluate.plots import dataset_summary

PNG = b"\x89PNG\r\n\x1a\n"


def test_summary_by_hand(fixtures: Path) -> None:
    s = dataset_summary(load(fixtures / "sasrec.txt"))  # lengths 4, 3, 1; item counts 2, 2, 1, 2, 1
    assert (s["users"], s["items"], s["interactions"]) == (3, 5, 8)
    assert (s["length_min"], s["length_median"], s["length_max"]) == (1, 3.0, 4)
    assert s["top1pct_items_share"] == pytest.approx(2 / 8)
    # Gini of counts (1, 1, 2, 2, 2): sum_i (2i - n - 1) x_i / (n sum x) with x ascending
    x = np.array([1, 1, 2, 2, 2.0])
    gini = ((2 * np.arange(1, 6) - 6) * x).sum() / (5 * x.sum())
    assert s["popularity_gini"] == pytest.approx(gini)


def test_data_stats_writes_pngs(fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tools(["data", "stats", str(fixtures / "ratings.dat"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert '"users": 2' in out and "sequence_lengths.png" in out
    for name in ("sequence_lengths.png", "item_popularity.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


@pytest.mark.slow
def test_plot_from_csv_logs(tmp_path: Path) -> None:
    logger = '--trainer.logger=[{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}]'
    run(["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), "--data.synthetic.num_users=300",
         "--data.synthetic.num_items=120", "--data.synthetic.mean_length=12", "--data.synthetic.num_clusters=6",
         "--model.hidden_size=16", "--trainer.max_epochs=3", "--trainer.log_every_n_steps=1",
         f"--trainer.default_root_dir={tmp_path}", logger % tmp_path, "--test_after_fit=false"])
    assert tools(["plot", str(tmp_path), "--out", str(tmp_path / "png")]) == 0
    for name in ("train_loss.png", "validation.png"):
        assert (tmp_path / "png" / name).read_bytes().startswith(PNG)


def test_tool_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-c", "import sys; sys.argv=['seqrec','plot','%s']; "
                          "from seqrec.cli import main; main()" % tmp_path], capture_output=True, text=True)
    assert res.returncode == 2
    assert "no metrics.csv and no offline W&B run" in res.stderr and "Traceback" not in res.stderr


def _events(tmp_path: Path, sep: str = ",", suffix: str = ".csv") -> Path:
    path = tmp_path / f"events{suffix}"
    rows = [f"u{u}{sep}s{(u + t) % 7}{sep}{t}" for u in range(6) for t in range(4)]
    path.write_text(sep.join(("uid", "sku", "ts")) + "\n" + "\n".join(rows) + "\n")
    return path


def test_tools_name_columns_as_training_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    src = _events(tmp_path)
    assert tools(["data", "stats", str(src), "--columns", "uid", "sku", "ts", "--out", str(tmp_path / "png")]) == 0
    summary = json.loads(capsys.readouterr().out.split("\nplots:")[0])
    assert (summary["users"], summary["items"], summary["interactions"]) == (6, 7, 24)
    # TIME null keeps file order, as data.columns' null does in a training config.
    assert tools(["data", "prepare", str(src), str(tmp_path / "p"), "--columns", "uid", "sku", "null"]) == 0
    assert json.loads(capsys.readouterr().out)["after"]["interactions"] == 24
    # The old one-column flags still work, alone; beside --columns they are refused by name.
    assert tools(["data", "stats", str(src), "--user-col", "uid", "--item-col", "sku", "--time-col", "ts",
                  "--out", str(tmp_path / "png")]) == 0
    capsys.readouterr()
    with pytest.raises(ValueError, match=r"--item-col and --columns both name columns"):
        tools(["data", "stats", str(src), "--columns", "uid", "sku", "ts", "--item-col", "sku"])
    with pytest.raises(ValueError, match=r"--columns: the USER column needs a name"):
        tools(["data", "stats", str(src), "--columns", "null", "sku", "ts"])
    with pytest.raises(SystemExit):  # argparse: --columns takes exactly USER ITEM TIME
        tools(["data", "stats", str(src), "--columns", "uid", "sku"])
    assert "--user-col" not in tools_help(capsys) and "--columns USER ITEM TIME" in tools_help(capsys)


def tools_help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        tools(["data", "stats", "--help"])
    return capsys.readouterr().out


def test_tools_read_tsv_and_other_delimiters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    tsv = _events(tmp_path, "\t", ".tsv")
    assert tools(["data", "stats", str(tsv), "--columns", "uid", "sku", "ts", "--out", str(tmp_path / "a")]) == 0
    assert json.loads(capsys.readouterr().out.split("\nplots:")[0])["interactions"] == 24
    piped = _events(tmp_path, "|")
    assert tools(["data", "stats", str(piped), "--columns", "uid", "sku", "ts", "--delimiter", "|",
                  "--out", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out.split("\nplots:")[0])["interactions"] == 24
    with pytest.raises(ValueError, match=r"missing column.*the header holds '\|'"):
        tools(["data", "stats", str(piped), "--columns", "uid", "sku", "ts"])


def test_data_stats_prints_four_significant_digits(fixtures: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert tools(["data", "stats", str(fixtures / "sasrec.txt"), "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out.split("\nplots:")[0])
    exact = dataset_summary(load(fixtures / "sasrec.txt"))
    floats = [name for name, v in exact.items() if isinstance(v, float) and len(repr(v)) > 7]
    assert floats  # the summary has long floats (density 8/15 = 0.5333...) that must come out short
    for name, value in exact.items():
        assert printed[name] == (float(f"{value:.4g}") if isinstance(value, float) else value)
    assert printed["density"] == 0.5333
    from seqrec.cli.tools import rounded

    assert rounded({"a": [1234567.0, 0.000123456, 7, float("inf")], "b": (2 / 3,)}) == \
        {"a": [1235000.0, 0.0001235, 7, float("inf")], "b": [0.6667]}
