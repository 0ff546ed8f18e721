"""Batch-building throughput: seqrec's Rust engine vs numpy vs the original per-sample Python loop.

Every implementation builds the same SASRec batch (B sequences padded to max_len, next-item positives,
one uniform negative per position from the user's unseen items) for random batches of users. Figures are
medians over repeats, and the ratios come from one run on one machine. ``memcpy`` copies the same number
of output bytes between preallocated arrays: the ceiling no builder can beat.

    python -m benchmarks.batching                 # ml1m and games shapes
    python -m benchmarks.batching --shapes tiny --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
from seqrec._core import BatchBuilder, SequenceStore

from benchmarks.baselines import NumpyBatcher, python_loop_batch
from benchmarks.common import RESULTS, time_it, write
from benchmarks.shapes import SHAPES, shaped


def check_same_batch(offsets, items, num_items, users, max_len) -> None:
    """The compared builders must agree on everything but the random negatives."""
    store = SequenceStore(offsets, items, num_items)
    native = BatchBuilder(store, max_len, pad_to_max=True).build(users, seed=0)
    loop = python_loop_batch(offsets, items, num_items, users, max_len, np.random.RandomState(0))
    vec = NumpyBatcher(offsets, items, num_items).batch(users, max_len, np.random.default_rng(0))
    for other in (loop, vec):
        assert np.array_equal(native["inputs"], other[0]) and np.array_equal(native["targets"], other[1])
        assert np.array_equal(native["negatives"] == 0, other[2] == 0)


def bench_shape(name: str, batch_size: int, max_len: int, repeats: int, inner: int, large_batch: int = 2048) -> dict:
    offsets, items, num_items = shaped(name)
    num_users = offsets.size - 1
    rng = np.random.default_rng(1)
    batches = [rng.choice(num_users, size=min(batch_size, num_users), replace=False).astype(np.int64)
               for _ in range(64)]
    check_same_batch(offsets, items, num_items, batches[0], max_len)
    store = SequenceStore(offsets, items, num_items)
    one = BatchBuilder(store, max_len, pad_to_max=True, num_threads=1)
    many = BatchBuilder(store, max_len, pad_to_max=True, num_threads=0)
    vec = NumpyBatcher(offsets, items, num_items)
    gen = np.random.default_rng(2)
    legacy = np.random.RandomState(2)
    out_bytes = batches[0].size * max_len * 8 * 3  # inputs, positives, negatives as int64
    src = np.ones(out_bytes // 8, dtype=np.int64)
    dst = np.empty_like(src)
    impls = {
        "rust_1_thread": lambda i: one.build(batches[i % 64], seed=i),
        "rust_all_threads": lambda i: many.build(batches[i % 64], seed=i),
        "numpy_vectorised": lambda i: vec.batch(batches[i % 64], max_len, gen),
        "python_loop": lambda i: python_loop_batch(offsets, items, num_items, batches[i % 64], max_len, legacy),
        "memcpy": lambda i: np.copyto(dst, src),
    }
    rows = {}
    for impl, fn in impls.items():
        slow = impl == "python_loop"
        t = time_it(fn, repeats=repeats, inner=max(1, inner // 20) if slow else inner)
        rows[impl] = {
            "seconds_per_batch": t,
            "sequences_per_s": batches[0].size / t["median"],
            "output_mb_per_s": out_bytes / t["median"] / 1e6,
        }
    # Parallel scaling needs batches worth the pool's wake-up: time a large batch on 1 and all threads.
    big = rng.choice(num_users, size=min(large_batch, num_users), replace=False).astype(np.int64)
    big_one = time_it(lambda i: one.build(big, seed=i), repeats=repeats, inner=max(1, inner // 10))
    big_all = time_it(lambda i: many.build(big, seed=i), repeats=repeats, inner=max(1, inner // 10))
    base = rows["rust_1_thread"]["seconds_per_batch"]["median"]
    ratios = {
        "rust_1_thread_vs_numpy": rows["numpy_vectorised"]["seconds_per_batch"]["median"] / base,
        "rust_1_thread_vs_python_loop": rows["python_loop"]["seconds_per_batch"]["median"] / base,
        "rust_1_thread_over_memcpy": base / rows["memcpy"]["seconds_per_batch"]["median"],
        "rust_all_threads_vs_1_thread": base / rows["rust_all_threads"]["seconds_per_batch"]["median"],
        "large_batch_all_threads_vs_1_thread": big_one["median"] / big_all["median"],
    }
    return {
        "shape": {"name": name, "users": num_users, "items": num_items, "interactions": int(offsets[-1])},
        "batch_size": int(batches[0].size),
        "max_len": max_len,
        "output_bytes_per_batch": out_bytes,
        "impls": rows,
        "large_batch": {"batch_size": int(big.size), "rust_1_thread": big_one, "rust_all_threads": big_all},
        "ratios": ratios,
    }


class TrainingEpoch:
    """The engine's build time of one real SASRec training epoch, against numpy building the same batches.

    The batches are those ``SeqRecDataModule.train_dataloader`` yields for SASRec on synthetic data
    (``users`` x ``items``, max_len 50, batch 128: length buckets under a token budget, one uniform unseen
    negative per position). The data module's own builder builds each of them on the calling thread, and
    ``NumpyBatcher`` builds the same rows at the same widths (checked equal). The background thread of
    training is left out on purpose: on a shared 2-core machine its hand-offs wait on the scheduler, and
    draining the threaded epoch took 3 to 5 times the builds' own time, varying with the neighbours.
    """

    def __init__(self, users: int = 20000, items: int = 2000):
        from seqrec.data.datamodule import SeqRecDataModule
        from seqrec.data.source import SyntheticSpec

        spec = SyntheticSpec(num_users=users, num_items=items, num_clusters=20, mean_length=20, seed=0)
        dm = SeqRecDataModule(synthetic=spec, max_len=50, batch_size=128, task="sasrec", negatives="uniform", seed=0)
        dm.train_dataloader()
        assert dm.train_batches is not None
        # (users, ends, width) of each batch of the real epoch 0, through TrainBatches
        self.plan: list[tuple[np.ndarray, np.ndarray, int]] = []
        self.tokens = 0
        self.numpy = NumpyBatcher(dm.split.train_offsets, dm.split.train_items, dm.num_items)
        rng = np.random.default_rng(0)
        for b in dm.train_batches:
            inputs, targets = b["inputs"].numpy(), b["targets"].numpy()
            self.plan.append((b["users"].numpy(), b["ends"].numpy(), inputs.shape[1]))
            self.tokens += int((inputs != 0).sum())
            ref = self.numpy.batch(self.plan[-1][0], inputs.shape[1], rng)
            if not (np.array_equal(ref[0], inputs) and np.array_equal(ref[1], targets)):
                raise AssertionError("numpy's reference batch differs from the engine's: the ratio would compare "
                                     "two different jobs")
        self.build = dm.batch_builder().build

    def measure(self, repeats: int = 5, passes: int = 10, slowdown: float = 1.0) -> dict[str, Any]:
        """Per repeat, ``vs_numpy`` (numpy's time over the engine's: higher is better, machine speed cancels)
        and the ns per non-padding token of each.

        Each repeat runs ``passes`` rounds; a round builds every batch three times with the engine, then once
        with numpy, and each batch keeps its fastest build of each, so a neighbour's burst costs a sample
        rather than the figure; the summed minima give the epoch. The engine's epoch takes a tenth of
        numpy's: timed in one block (all its passes, then numpy's) it fit inside one slow spell of the shared
        machine, and whole repeats measured 8.4 to 12.1 on an idle machine. Interleaved, both builders see
        the same spells. Three engine passes per round because the first after numpy's runs on cold caches,
        which hid part of a slowdown of its own code (a 1.3x slowdown measured as 1.2x).

        ``slowdown`` > 1 gives the engine that many times the work, for showing that the speed gate catches
        a known regression (training never runs it): a share ``slowdown - 1`` of the timed slots, spread
        evenly, also builds the batch half an epoch away. Not a busy wait: a build that follows a wait runs
        colder, and a 1.3x wait measured as 1.45x.
        """
        if slowdown < 1:
            raise ValueError(f"a slowdown factor is at least 1, got {slowdown}")
        plan, build, n = self.plan, self.build, len(self.plan)
        extra = [int((i + 1) * (slowdown - 1) + 1e-9) - int(i * (slowdown - 1) + 1e-9) for i in range(n)]
        rng = np.random.default_rng(0)
        clock = time.perf_counter
        engine_passes = 3
        ratios, engine_ns, numpy_ns = [], [], []
        for r in range(repeats):
            fastest = np.full((2, n), np.inf)
            for p in range(passes):
                for q in range(engine_passes):
                    for i, (users_b, ends_b, _) in enumerate(plan):
                        start = clock()
                        build(users_b, ends_b, seed=((r * passes + p) * engine_passes + q) * n + i)
                        for _ in range(extra[i]):
                            build(*plan[(i + n // 2) % n][:2], seed=i)
                        fastest[0, i] = min(fastest[0, i], clock() - start)
                for i, (users_b, _, width) in enumerate(plan):
                    start = clock()
                    self.numpy.batch(users_b, width, rng)
                    fastest[1, i] = min(fastest[1, i], clock() - start)
            engine_s, numpy_s = fastest.sum(1)
            ratios.append(float(numpy_s / engine_s))
            engine_ns.append(float(engine_s / self.tokens * 1e9))
            numpy_ns.append(float(numpy_s / self.tokens * 1e9))
        return {"vs_numpy": ratios, "engine_ns_per_token": engine_ns, "numpy_ns_per_token": numpy_ns,
                "batches": n, "tokens": self.tokens, "slowdown": slowdown}


def table(results: list[dict]) -> str:
    lines = ["# Batch building: one SASRec batch (uniform unseen negative per position)", ""]
    for r in results:
        s = r["shape"]
        lines += [
            f"## {s['name']}: {s['users']:,} users, {s['items']:,} items, {s['interactions']:,} interactions; "
            f"batch {r['batch_size']} x max_len {r['max_len']}, {r['output_bytes_per_batch'] / 1e6:.2f} MB out",
            "",
            "| builder | ms / batch (median) | min | max | sequences/s | output MB/s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for impl, row in r["impls"].items():
            t = row["seconds_per_batch"]
            lines.append(f"| {impl} | {t['median'] * 1e3:.3f} | {t['min'] * 1e3:.3f} | {t['max'] * 1e3:.3f} | "
                         f"{row['sequences_per_s']:,.0f} | {row['output_mb_per_s']:,.0f} |")
        q = r["ratios"]
        lines += [
            "",
            f"Rust (1 thread) is **{q['rust_1_thread_vs_numpy']:.1f}x** the vectorised numpy builder and "
            f"**{q['rust_1_thread_vs_python_loop']:.0f}x** the per-sample Python loop; it takes "
            f"**{q['rust_1_thread_over_memcpy']:.1f}x** the time of a memcpy of its output. Batches this small "
            f"build on one thread (waking the pool would cost more); on a batch of {r['large_batch']['batch_size']} "
            f"sequences all threads give **{q['large_batch_all_threads_vs_1_thread']:.2f}x** over one.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=["ml1m", "games"], choices=sorted(SHAPES))
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--max-len", type=int, nargs="+", default=None, help="per shape; default 200 ml1m, 50 otherwise")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--inner", type=int, default=40, help="batches per timed repeat (1/20 of it for the Python loop)")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder for the JSON and markdown results")
    p.add_argument("--name", default="batching")
    args = p.parse_args(argv)
    lens = args.max_len or [200 if s == "ml1m" else 50 for s in args.shapes]
    results = [bench_shape(s, args.batch_size, l, args.repeats, args.inner) for s, l in zip(args.shapes, lens)]
    text = table(results)
    write(args.name, {"results": results}, text, args.out)
    print(text)
    return results


if __name__ == "__main__":
    main()
