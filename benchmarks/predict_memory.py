"""Memory of ``seqrec predict`` from a checkpoint alone, as the number of users grows.

Trains a small SASRec on a synthetic dataset of ``--users`` users (a few batches: the weights do not matter
here), then runs ``seqrec predict --ckpt_path best.ckpt`` in a fresh process for each share of those users
(``--data.predict_users``), sampling the process's resident memory every 20 ms. Recommendations stream to
parquet parts batch by batch, so the growth of memory during prediction should not depend on how many users
are predicted; the data the checkpoint names is loaded before prediction starts and counted apart.

    OMP_NUM_THREADS=1 python -m benchmarks.predict_memory              # 1M users; results/predict_memory.{json,md}
    python -m benchmarks.predict_memory --users 2000 --shares 0.1 1    # a tiny run (the tests)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from benchmarks.common import RESULTS, write

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PredictMemory(pl.Callback):
    """Resident memory when prediction starts and its peak until it ends (sampled by a thread)."""

    result: dict[str, float] = {}

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop = threading.Event()
        self._start, self._peak, self._t0 = rss_bytes(), rss_bytes(), time.perf_counter()

        def sample() -> None:
            while not self._stop.wait(0.02):
                self._peak = max(self._peak, rss_bytes())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop.set()
        self._thread.join()
        PredictMemory.result = {"rss_at_start_mb": self._start / 2**20,
                                "peak_growth_mb": (max(self._peak, rss_bytes()) - self._start) / 2**20,
                                "predict_seconds": time.perf_counter() - self._t0}


def child(ckpt: str, users_file: str | None, out: str, result: str) -> None:
    from seqrec.cli import run

    run(["predict", "--ckpt_path", ckpt, "--predict_output", out, "--trainer.logger=false",
         "--trainer.enable_progress_bar=false", "--trainer.callbacks+=benchmarks.predict_memory.PredictMemory",
         *(["--data.predict_users", users_file] if users_file else [])])
    # The callback the CLI built is of the imported module's class, not this __main__'s copy.
    from benchmarks.predict_memory import PredictMemory as Imported

    Path(result).write_text(json.dumps({**Imported.result, "peak_rss_mb": _peak_mb()}))


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=1_000_000, help="users of the synthetic dataset")
    p.add_argument("--items", type=int, default=20_000, help="items of the synthetic dataset")
    p.add_argument("--shares", type=float, nargs="+", default=[0.01, 0.1, 1.0],
                   help="fractions of the users to predict for, one process each")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="predict_memory")
    p.add_argument("--child", nargs=4, metavar=("CKPT", "USERS", "OUT", "RESULT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        ckpt, users_file, out, result = args.child
        child(ckpt, users_file or None, out, result)
        return {}
    import pyarrow.parquet as pq

    from seqrec.cli import run

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        synthetic = [f"--data.synthetic.num_users={args.users}", f"--data.synthetic.num_items={args.items}"]
        fit = run(["fit", "--config", str(ROOT / "configs" / "sasrec_synthetic.yaml"), *synthetic,
                   f"--trainer.default_root_dir={run_dir}", "--trainer.logger=false", "--trainer.max_epochs=1",
                   "--trainer.limit_train_batches=5", "--trainer.limit_val_batches=1", "--test_after_fit=false",
                   "--trainer.enable_progress_bar=false"])
        fit_seconds = time.perf_counter() - start
        ckpt = fit.trainer.checkpoint_callback.best_model_path
        data = fit.datamodule.interactions
        raw_users = data.raw_user_ids
        for share in args.shares:
            n = max(1, int(round(share * data.num_users)))
            users_file = ""
            if n < data.num_users:
                users_file = str(Path(tmp) / f"users_{n}.txt")
                Path(users_file).write_text("\n".join(map(str, raw_users[:n].tolist())) + "\n")
            out, result = Path(tmp) / f"recs_{n}", Path(tmp) / f"result_{n}.json"
            wall = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "benchmarks.predict_memory", "--child", ckpt, users_file,
                                  str(out), str(result)], cwd=ROOT, capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"predict for {n} users failed:\n{res.stderr[-3000:]}")
            got = json.loads(result.read_text())
            written = pq.read_table(out).num_rows
            rows.append({"users": n, "rows": written, "wall_seconds": time.perf_counter() - wall,
                         "users_per_s": n / got["predict_seconds"], **got})
    payload = {"dataset": {"users": int(data.num_users), "items": int(data.num_items),
                           "interactions": int(data.items.size)},
               "fit_seconds": fit_seconds, "rows": rows,
               "command": "OMP_NUM_THREADS=1 python -m benchmarks.predict_memory " + " ".join(argv or sys.argv[1:])}
    lines = [f"# seqrec predict: memory by users predicted (synthetic, {data.num_users:,} users, "
             f"{data.num_items:,} items, {data.items.size:,} interactions)", "",
             "Each row is one `seqrec predict --ckpt_path best.ckpt` process writing parquet parts (top-10 per user). "
             "RSS at start: the process when prediction starts (Python, torch, the model and the histories "
             "the checkpoint names); growth: its peak resident memory during prediction minus that.", "",
             "| users predicted | rows written | RSS at start (MB) | peak growth during predict (MB) | seconds | users/s |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['users']:,} | {r['rows']:,} | {r['rss_at_start_mb']:.0f} | {r['peak_growth_mb']:.0f} | "
                     f"{r['predict_seconds']:.1f} | {r['users_per_s']:,.0f} |")
    lines += ["", f"Command: `{payload['command']}`"]
    text = "\n".join(lines)
    write(args.name, payload, text, args.out)
    print(text)
    return payload


if __name__ == "__main__":
    main()
