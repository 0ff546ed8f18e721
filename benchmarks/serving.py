"""``seqrec serve`` under load, on loopback: requests/s and latency by concurrency, batching and index.

For each catalogue (a SASRec trained briefly on the 54k-item BERT4Rec Beauty file; a synthetic table of about
a million items), each server setting (micro-batching off: ``--max-batch 1``; on: ``--max-batch 64``; exact
or HNSW retrieval) and each concurrency level, closed-loop clients (each sends its next request when the last
one is answered) ask for the top 10 of random known users for a bounded time or number of requests. The
server runs in its own process (one torch thread); the clients share the same 2 cores, as any loopback test
does, so the figures are a floor for a machine with a separate load generator. Latency is client-side:
from sending the request to the end of its answer.

    SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.serving       # results/serving.{json,md}
    python -m benchmarks.serving --catalogues synthetic --items 2000 --users 500 --levels 1 4 --seconds 1  # tiny
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import RESULTS, machine, write

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> seqrec serve options
    "exact, one at a time": ["--index", "exact", "--max-batch", "1"],
    "exact, micro-batched": ["--index", "exact", "--max-batch", "64", "--max-wait-ms", "2"],
    "hnsw, one at a time": ["--index", "hnsw", "--max-batch", "1"],
    "hnsw, micro-batched": ["--index", "hnsw", "--max-batch", "64", "--max-wait-ms", "2"],
}
P99_BUDGET_MS = 50.0


def train(kind: str, folder: Path, args: argparse.Namespace) -> Path:
    """A briefly trained checkpoint: serving speed does not depend on how well the weights rank."""
    from seqrec.cli import run

    quick = ["--trainer.max_epochs=1", f"--trainer.limit_train_batches={args.train_batches}",
             "--trainer.limit_val_batches=1", "--trainer.check_val_every_n_epoch=1", "--test_after_fit=false",
             "--trainer.logger=false",
             "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={folder}"]
    if kind == "beauty":
        cli = run(["fit", "--config", str(ROOT / "configs" / "sasrec_beauty.yaml"), *quick])
    else:
        from seqrec.data.prepared import prepare

        from benchmarks.large_catalogue import random_walks

        data = prepare(random_walks(args.users, args.items, 12.0, seed=0), folder / "data")
        del data
        cli = run(["fit", "--config", str(ROOT / "configs" / "sasrec_synthetic.yaml"), *quick,
                   f"--data.path={folder / 'data'}", "--data.format=prepared", "--model.loss=sampled_softmax",
                   "--data.negative_pool=1024", "--model.sparse_embeddings=true", "--model.hidden_size=64",
                   "--data.eval_batch_size=64"])
    return Path(cli.trainer.checkpoint_callback.best_model_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, ckpt: Path, options: list[str], log: Path):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "seqrec.cli", "serve", str(ckpt), "--port", str(self.port),
                                      "--threads", "1", *options], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        start = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited; see {log}")
            try:
                r = httpx.get(self.url + "/readyz", timeout=5)
                if r.status_code == 200:
                    self.ready = r.json()
                    break
                if r.json().get("status") == "failed":
                    raise RuntimeError(f"the server could not load {ckpt}: {r.json()['error']}")
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.start_seconds = time.perf_counter() - start

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def closed_loop(url: str, users: list[Any], concurrency: int, seconds: float, max_requests: int,
                      seed: int) -> dict[str, float]:
    """``concurrency`` clients, each sending its next request when the previous is answered.

    aiohttp rather than httpx: on this machine httpx's client spent more CPU than the server at 64
    connections (one-at-a-time HNSW fell from 419 to 142 req/s between 4 and 64 clients), so the figure
    measured the load generator.
    """
    import aiohttp

    rng = np.random.default_rng(seed)
    picks = [users[i] for i in rng.integers(0, len(users), size=max_requests)]
    latencies: list[float] = []
    errors = 0
    sent = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as client:
        async def post(u: Any) -> int:
            async with client.post("/v1/recommend", json={"user_id": u, "k": 10}) as r:
                await r.read()
                return r.status

        for u in picks[:min(20, max_requests)]:  # warm-up
            await post(u)
        stop_at = time.perf_counter() + seconds

        async def one_client() -> None:
            nonlocal sent, errors
            while sent < max_requests and time.perf_counter() < stop_at:
                u = picks[sent]
                sent += 1
                t = time.perf_counter()
                status = await post(u)
                latencies.append(time.perf_counter() - t)
                errors += status != 200

        start = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors, "seconds": wall,
            "rps": len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99))}


def batch_totals(url: str) -> tuple[float, float]:
    """(requests, encoder passes) so far, from the server's /metrics."""
    import httpx

    text = httpx.get(url + "/metrics").text
    get = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
           if line.startswith(("seqrec_batch_size_sum", "seqrec_batch_size_count"))}
    return get["seqrec_batch_size_sum"], get["seqrec_batch_size_count"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--catalogues", nargs="+", default=["beauty", "synthetic"], choices=["beauty", "synthetic"])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 64], help="concurrent clients")
    p.add_argument("--seconds", type=float, default=8.0, help="per level (bounded)")
    p.add_argument("--requests", type=int, default=4000, help="per level (bounded)")
    p.add_argument("--items", type=int, default=1_000_000, help="synthetic catalogue size")
    p.add_argument("--users", type=int, default=200_000, help="synthetic users")
    p.add_argument("--train-batches", type=int, default=30, help="training batches of each checkpoint")
    p.add_argument("--ckpt", nargs=2, action="append", default=[], metavar=("CATALOGUE", "PATH"),
                   help="use this checkpoint for a catalogue instead of training one")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="serving")
    args = p.parse_args(argv)
    given = dict(args.ckpt)
    rows: list[dict[str, Any]] = []
    catalogues: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cat in args.catalogues:
            ckpt = Path(given[cat]) if cat in given else train(cat, Path(tmp) / cat, args)
            from seqrec.serve.recommend import Recommender

            rec = Recommender.from_checkpoint(ckpt)
            users = rec.histories.raw_user_ids.tolist()
            catalogues[cat] = {"items": int(rec.module.hparams.num_items), "users": len(users),
                               "hidden": int(rec.module.hparams.hidden_size), "max_len": rec.max_len}
            del rec
            for name in args.settings:
                server = Server(ckpt, SETTINGS[name], Path(tmp) / f"{cat}-{len(rows)}.log")
                try:
                    for level in args.levels:
                        before = batch_totals(server.url)
                        r = asyncio.run(closed_loop(server.url, users, level, args.seconds, args.requests, level))
                        after = batch_totals(server.url)
                        mean_batch = (after[0] - before[0]) / max(after[1] - before[1], 1)  # warm-up included
                        rows.append({"catalogue": cat, "setting": name, "start_seconds": server.start_seconds,
                                     "mean_batch": mean_batch, **r})
                        print(f"{cat:>9} | {name:<22} | {level:>3} clients | {r['rps']:7.1f} req/s | p50 "
                              f"{r['p50_ms']:6.1f} p99 {r['p99_ms']:6.1f} ms", flush=True)
                finally:
                    server.stop()
    payload = {"machine": machine(), "catalogues": catalogues, "rows": rows,
               "command": "OMP_NUM_THREADS=1 python -m benchmarks.serving " + " ".join(argv if argv is not None
                                                                                       else sys.argv[1:])}
    text = table(payload)
    write(args.name, payload, text, args.out)
    print(text)
    return payload


def best_under_budget(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in rows if r["p99_ms"] <= P99_BUDGET_MS and r["errors"] == 0]
    return max(ok, key=lambda r: r["rps"]) if ok else None


def table(payload: dict[str, Any]) -> str:
    rows = payload["rows"]
    lines = ["# seqrec serve on loopback: requests/s and client-side latency", "",
             f"Closed-loop clients asking `POST /v1/recommend` for the top 10 of random known users; server with one "
             f"torch thread, clients in another process on the same {payload['machine'].get('cores', 2)} cores. "
             "Mean batch: requests per encoder pass during the level (server's /metrics).", ""]
    for cat, info in payload["catalogues"].items():
        lines += [f"## {cat}: {info['items']:,} items, {info['users']:,} users, hidden {info['hidden']}, "
                  f"max_len {info['max_len']}", "",
                  "| setting | clients | req/s | p50 ms | p95 ms | p99 ms | mean batch | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        mine = [r for r in rows if r["catalogue"] == cat]
        for r in mine:
            lines.append(f"| {r['setting']} | {r['concurrency']} | {r['rps']:.1f} | {r['p50_ms']:.1f} | "
                         f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['mean_batch']:.1f} | {r['errors']} |")
        lines.append("")
        for index in ("exact", "hnsw"):
            alone = [r for r in mine if r["setting"] == f"{index}, one at a time"]
            batched = [r for r in mine if r["setting"] == f"{index}, micro-batched"]
            if alone and batched:
                a, b = max(alone, key=lambda r: r["rps"]), max(batched, key=lambda r: r["rps"])
                lines.append(f"- {index}: micro-batching's best {b['rps']:.1f} req/s (p99 {b['p99_ms']:.1f} ms, "
                             f"{b['concurrency']} clients) vs one at a time {a['rps']:.1f} (p99 {a['p99_ms']:.1f} ms, "
                             f"{a['concurrency']} clients): {b['rps'] / a['rps']:.2f}x")
        best = best_under_budget(mine)
        lines.append(f"- highest rate with p99 under {P99_BUDGET_MS:.0f} ms: " + (
            f"{best['rps']:.1f} req/s ({best['setting']}, {best['concurrency']} clients, p99 {best['p99_ms']:.1f} ms)"
            if best else "none of the levels measured"))
        lines.append("")
    lines.append(f"Command: `{payload['command']}`")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
