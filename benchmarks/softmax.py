"""Full softmax cross-entropy: today's (T, N) logits against the chunked softmax, time per step and peak memory.

For each catalogue size, one training step's loss and backward (queries and item table both get gradients)
by each path, in a fresh process each so that the peak resident memory is the step's own (peak minus the
resident memory before the step). Times are medians over repeats; both paths are checked to give the same
loss first.

    python -m benchmarks.softmax                                  # 12k, 54k and 1M items
    python -m benchmarks.softmax --items 5000 --tokens 64 --repeats 2  # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import RESULTS, write

PATHS = ("logits", "chunked")


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def one(items: int, tokens: int, hidden: int, chunk: int, path: str, repeats: int) -> dict:
    import torch
    from seqrec.train.losses import chunked_cross_entropy, full_cross_entropy

    torch.manual_seed(0)
    h = torch.randn(tokens, hidden, requires_grad=True)
    table = (torch.randn(items + 1, hidden) * 0.1).requires_grad_()
    targets = torch.randint(1, items + 1, (tokens,))

    def step() -> float:
        h.grad = table.grad = None
        if path == "logits":
            loss = full_cross_entropy(h @ table.T, targets, reduction="sum")
        else:
            loss = chunked_cross_entropy(h, table, targets, chunk, reduction="sum")
        loss.backward()
        return float(loss)

    before = peak_rss_gib()
    value = step()  # warm-up, and the step whose peak memory is reported
    peak = peak_rss_gib() - before
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"items": items, "path": path, "loss": value, "seconds": statistics.median(times), "times": times,
            "peak_step_gib": peak, "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, nargs="+", default=[12_101, 54_542, 1_000_000])
    p.add_argument("--tokens", type=int, default=512, help="target positions in the step")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--chunk", type=int, default=65_536)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="softmax")
    p.add_argument("--one", nargs=2, default=None, help=argparse.SUPPRESS)  # internal: ITEMS PATH
    args = p.parse_args(argv)
    if args.one is not None:
        print("RESULT " + json.dumps(one(int(args.one[0]), args.tokens, args.hidden, args.chunk, args.one[1],
                                         args.repeats)))
        return {}
    rows = []
    for items in args.items:
        for path in PATHS:
            cmd = [sys.executable, "-m", "benchmarks.softmax", "--one", str(items), path, "--tokens", str(args.tokens),
                   "--hidden", str(args.hidden), "--chunk", str(args.chunk), "--repeats", str(args.repeats)]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if done.returncode != 0 or line is None:
                raise RuntimeError(f"softmax benchmark at {items} items ({path}) failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(line[len("RESULT "):]))
    lines = [f"# Full softmax CE, one step (loss + backward), {args.tokens} target positions, d={args.hidden}", "",
             f"`logits`: today's (T, N + 1) logits and F.cross_entropy; `chunked`: `seqrec.train.losses.chunked_cross_entropy` "
             f"in chunks of {args.chunk:,} items. Medians of {args.repeats} steps, {rows[0]['threads']} torch "
             "thread(s); peak memory is the step's growth of the process's peak resident set.", "",
             "| items | path | seconds per step | vs logits | peak step memory | loss |", "|---:|---|---:|---:|---:|---:|"]
    for items in args.items:
        base = next(r for r in rows if r["items"] == items and r["path"] == "logits")
        for r in (x for x in rows if x["items"] == items):
            if abs(r["loss"] - base["loss"]) > 1e-3 * abs(base["loss"]):
                raise AssertionError(f"paths disagree at {items} items: {r['loss']} vs {base['loss']}")
            lines.append(f"| {items:,} | {r['path']} | {r['seconds']:.4f} | {base['seconds'] / r['seconds']:.2f}x | "
                         f"{r['peak_step_gib']:.3f} GiB | {r['loss']:.2f} |")
    payload = {"tokens": args.tokens, "hidden": args.hidden, "chunk": args.chunk, "rows": rows}
    write(args.name, payload, "\n".join(lines), args.out)
    print("\n".join(lines))
    return payload


if __name__ == "__main__":
    main()
