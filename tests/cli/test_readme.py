"""Every ``seqrec`` command and Python snippet in README.md runs, in order, in a fresh folder.

Training commands get a few extra overrides so that they take seconds (one epoch, a smaller synthetic
population and model); everything else runs exactly as written. Data the commands name is made here: tiny
files in the formats they expect. ``pip`` and ``pytest`` lines are what .ci/run runs; the benchmark
commands are run at a tiny size by test_benchmarks.py.
"""

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import wandb
from conftest import (
    FIXTURES,  # noqa: E402
    ROOT,  # noqa: E402
)
from seqrec.cli import run
from seqrec.cli.tools import tools

TRAINING = ("fit", "validate", "test", "predict")
QUICK = ["--trainer.max_epochs=1", "--trainer.enable_progress_bar=false", "--model.hidden_size=16",
         "--data.eval_batch_size=256"]
SYNTHETIC = ["--data.synthetic.num_users=300"]


def readme_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def python_lines() -> list[str]:
    return [line for block in readme_blocks("bash") for line in block.splitlines() if line.startswith("python -c ")]


def curl_lines() -> list[str]:
    return [line for block in readme_blocks("bash") for line in block.splitlines() if line.startswith("curl ")]


def start_server(words: list[str], port: int, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """README's ``seqrec serve`` in a subprocess (it runs until stopped), on ``port``; returns when ready."""
    import httpx

    words = [str(port) if w == "8000" else w for w in words]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "seqrec.cli", *words], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("seqrec serve did not get ready")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seqrec_commands() -> list[list[str]]:
    commands = []
    for block in readme_blocks("bash"):
        for line in block.splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                while words and re.match(r"^[A-Z_]+=", words[0]):  # environment assignments: set by the test
                    words = words[1:]
                if words and words[0] == "seqrec":
                    commands.append(words[1:])
    return commands


def make_data(tmp: Path) -> None:
    (tmp / "configs").symlink_to(ROOT / "configs")
    data = tmp / "data"
    data.mkdir()
    (data / "ratings.dat").write_text((FIXTURES / "ratings.dat").read_text())
    rng = np.random.default_rng(0)
    rows = [f"u{u},i{(u + 3 * t) % 40},{t}" for u in range(80) for t in range(8)]
    rows += [f"u{u},i{u % 40},{100}" for u in range(5)]  # some consecutive repeats
    (data / "events.csv").write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    shared = tmp / "shared"
    games = shared / "amazon-games"
    games.mkdir(parents=True)
    (games / "Video.txt").write_text("".join(f"{u} {(u * 7 + t * 3) % 40 + 1}\n" for u in range(1, 61) for t in range(6)))
    beauty = shared / "amazon-beauty-s3rec"
    beauty.mkdir()
    lines, times = [], []
    for u in range(1, 61):
        items = rng.choice(np.arange(1, 51), size=6, replace=False)
        lines.append(f"{u} " + " ".join(map(str, items)))
        times.append(f"{u} " + " ".join(str(1_300_000_000 + 86400 * t * u) for t in range(6)))
    (beauty / "Beauty.txt").write_text("\n".join(lines) + "\n")
    (beauty / "Beauty_time.txt").write_text("\n".join(times) + "\n")
    (beauty / "Beauty_item2attributes.json").write_text(json.dumps({str(i): [i % 4, 10 + i % 3] for i in range(1, 51)}))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The dirpath has changed")  # predict restores a checkpoint from another run
def test_readme_commands_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    make_data(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEQREC_DATA_DIR", str(tmp_path / "shared"))
    commands = seqrec_commands()
    for line in python_lines():  # files the commands read (the synthetic item features)
        res = subprocess.run([sys.executable, *shlex.split(line)[1:]], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (line, res.stderr[-2000:])
    port, servers, curl_out = free_port(), [], []
    request.addfinalizer(lambda: [(p.terminate(), p.wait(30)) for p in servers])
    assert len(commands) >= 9 and {c[0] for c in commands} >= {"fit", "predict", "data", "plot", "export"}
    for words in commands:
        if words[0] in TRAINING:
            # Without --config (a checkpoint alone), the data is the checkpoint's: nothing to shrink.
            config = words[words.index("--config") + 1] if "--config" in words else ""
            extra = QUICK + (SYNTHETIC if "synthetic" in config and "--data.path" not in words else [])
            logger = "--trainer.logger=false" if words[0] == "predict" else None
            args = [*words, *extra, *([logger] if logger else [])]
            if "--trainer.strategy" in words:
                # DDP relaunches the running command for each rank: that must be seqrec, not pytest.
                res = subprocess.run([sys.executable, "-m", "seqrec.cli", *args], capture_output=True, text=True,
                                     timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
                assert res.returncode == 0, res.stderr[-3000:]
                continue
            run(args)
            wandb.finish()  # one W&B run per command, as separate processes would have
        elif words[0] == "serve":
            env = {**os.environ, "OMP_NUM_THREADS": "1", "SEQREC_ADMIN_TOKEN": "change-me"}
            server, url = start_server(words, port, env, tmp_path / "serve.log")
            servers.append(server)
            for line in curl_lines():  # the queries README gives right after, with this test's port
                res = subprocess.run(["bash", "-c", line.replace("localhost:8000", url)], capture_output=True,
                                     text=True, timeout=120)
                assert res.returncode == 0 and '"error"' not in res.stdout, (line, res.stdout[-2000:])
                curl_out.append(res.stdout)
        else:
            if "in_stock.txt" in words and not Path("in_stock.txt").exists():
                # An allow-list the README's export names: every other item of the trained catalogue.
                from seqrec.serve.recommend import Recommender

                raw = Recommender.from_checkpoint("runs/sasrec_synthetic/best.ckpt").raw_item_ids[1::2]
                Path("in_stock.txt").write_text("\n".join(map(str, raw.tolist())) + "\n")
            assert tools(words) == 0, words
    out = capsys.readouterr().out
    assert "best checkpoint:" in out and "wrote top-10 recommendations" in out
    assert (tmp_path / "recs.parquet").exists() and (tmp_path / "exported" / "scorer.onnx").exists()
    assert (tmp_path / "recs_new.csv").read_text().count("\n") == 1 + 300 * 10  # predict with the new items
    cold_run = tmp_path / "runs" / "cold_start"  # its test: the cold slice and the margins over the baselines
    cold = json.loads((cold_run / "test_results.json").read_text())
    assert "feature_knn/ndcg@10" in cold["cold_start"]["margins"] and (cold_run / "cold_items.npy").exists()
    assert (tmp_path / "exported" / "user_embeddings.parquet").exists()
    allowed = np.load(tmp_path / "exported_top10" / "allowed_items.npy")
    assert allowed.dtype == bool and 0 < allowed.sum() < allowed.size - 1  # only the listed items
    # The checkpoint alone predicts for the users it was trained on (300, not the config's default 6,000).
    assert pq.read_table(tmp_path / "recs_parts").equals(pq.read_table(tmp_path / "recs.parquet"))
    assert len(set(pq.read_table(tmp_path / "recs.parquet").column("user_id").to_pylist())) == 300
    assert (tmp_path / "data" / "prepared" / "meta.json").exists()
    assert list((tmp_path / "runs" / "stats" / "ratings.dat").glob("*.png"))

    # The service answered every query, and the reload swapped in the other run's checkpoint.
    assert servers and json.loads(curl_out[0])["items"] and "seed7" not in json.loads(curl_out[0])["model_version"]
    assert json.loads(curl_out[-1])["previous_version"].startswith("best.ckpt@")
    assert "seqrec_requests_total" in curl_out[-2]

    # Then the Python snippets, in the same folder, after the commands above made the checkpoint (and with
    # the service still running, on this test's port).
    for block in readme_blocks("python"):
        exec(compile(block.replace("127.0.0.1:8000", f"127.0.0.1:{port}"), "README.md", "exec"), {})
    assert (tmp_path / "top.csv").read_text().startswith('"user_id","rank","item_id","score"')
    printed = capsys.readouterr().out
    # New items came out (new-a, in the history, is excluded); the cold-start run printed its slices.
    assert "new-b" in printed and "new-c" in printed and "cold/ndcg@10" in out
