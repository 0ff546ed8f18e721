"""The speed suite: one run measures every speed figure, checks the ratios against a committed baseline.

Absolute speeds move with the machine and its neighbours, so regressions are judged on ratios measured
in the same run: the Rust batcher against its numpy reference (one batch shape, and the batches of a
real SASRec training epoch), seqrec's engine against the original SASRec pipeline, and throughputs
divided by a matrix-multiply calibration (GFLOP/s of this machine now). A checked figure missing from the
run or from the baseline, or a missing baseline, fails ``--check``: a gate that cannot compare must not
pass.

    python -m benchmarks run --suite ci --check     # what .ci/run does: about 3 minutes on 2 cores
    python -m benchmarks run --suite full           # adds larger data and the shared datasets; appends history
    python -m benchmarks baseline                   # refresh benchmarks/baseline_ci.json from a ci run
    python -m benchmarks plot                       # benchmarks/results/history.png from the history
    python -m benchmarks run --check --slow-engine 1.3   # shows the gate failing on a 30% slower engine
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.common import RESULTS, machine

HERE = Path(__file__).parent
BASELINE = HERE / "baseline_ci.json"
HISTORY = HERE / "history.jsonl"

# name -> (higher is better, tolerance): fail when a figure is worse than baseline by more than the factor.
CHECKS: dict[str, tuple[bool, float]] = {
    "batching.rust_vs_numpy": (True, 0.5),
    # The engine's build of a real training epoch over numpy's. CI's machine once measured 10.5 (9.2-12.0)
    # against this baseline's 12.8 on a commit that left the engine alone: the engine's passes were timed in
    # one block shorter than the shared machine's slow spells. Interleaved with numpy's (batching.TrainingEpoch),
    # five idle runs here gave 12.2-12.5 and a 1.5x engine slowdown 0.67-0.68 of them. 0.75 passes every
    # unslowed run and fails every 1.5x one (tests/benchmarks: test_speed_gate_fails_on_an_injected_engine_
    # slowdown); a 1.3x slowdown (about 0.78) is inside what two machines may disagree by. A later machine
    # of the same kind measured 7.5-10.7 idle, at this commit and at the last one that landed alike (0.59-0.84
    # of the baseline): the ratio itself differs between machines by that much. Hence 0.55: an unslowed run
    # passes on both, and a 2x slowdown (about 0.5 on either) fails, though CI once measured one as 0.615,
    # so the test injects 3x (0.37 here); a 1.5x one is caught on the faster machine only.
    "batching.epoch_vs_numpy": (True, 0.55),
    "training.seqrec_vs_original": (True, 0.5),
    "training.sasrec_tokens_per_gflop": (True, 0.5),
    "training.bert4rec_tokens_per_gflop": (True, 0.5),
    "evaluation.users_per_gflop": (True, 0.5),
    "training.sasrec_data_wait_fraction": (False, 3.0),
}
# A wait fraction this small is noise: a baseline of 0.2% must not fail a run at 0.7%.
FLOORS = {"training.sasrec_data_wait_fraction": 0.05}


def stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def repeat(fn: Callable[[], float], n: int) -> dict[str, float]:
    return stats([fn() for _ in range(n)])


def calibration(n: int = 512) -> float:
    """GFLOP/s of a float32 n x n matrix product on the current torch threads (median of 7)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b

    def once() -> float:
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        return 10 * 2 * n**3 / (time.perf_counter() - start) / 1e9

    return statistics.median(once() for _ in range(7))


def batching(repeats: int, inner: int) -> dict[str, Any]:
    from benchmarks.batching import bench_shape

    runs = [bench_shape("games", 128, 50, repeats=3, inner=inner)["ratios"]["rust_1_thread_vs_numpy"]
            for _ in range(repeats)]
    return {"rust_vs_numpy": stats(runs)}


def training_epoch(users: int, repeats: int, slowdown: float = 1.0) -> dict[str, dict[str, float]]:
    """The engine's build of a real SASRec training epoch against numpy's (see ``batching.TrainingEpoch``)."""
    from benchmarks.batching import TrainingEpoch

    r = TrainingEpoch(users).measure(repeats=repeats, slowdown=slowdown)
    return {"epoch_vs_numpy": stats(r["vs_numpy"]), "epoch_engine_ns_per_token": stats(r["engine_ns_per_token"])}


def lightning_throughput(
    architecture: str, users: int, items: int, repeats: int, path: str | None = None
) -> dict[str, dict[str, float]]:
    """tokens/s and data-wait fraction of one training epoch through SeqRecModule under Lightning.

    On synthetic data of ``users`` x ``items``, or on the file at ``path`` when given.
    """
    import pytorch_lightning as pl
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec
    from seqrec.train.callbacks import ThroughputMonitor
    from seqrec.train.module import SeqRecModule

    spec = SyntheticSpec(num_users=users, num_items=items, num_clusters=20, mean_length=20, seed=0)
    dm = SeqRecDataModule(path=path, synthetic=spec, max_len=50, batch_size=128,
                          task=architecture,  # type: ignore[arg-type]
                          negatives="uniform" if architecture == "sasrec" else "none", mask_prob=0.2, seed=0)
    tokens, waits = [], []
    for r in range(repeats):
        torch.manual_seed(r)
        model = SeqRecModule(architecture=architecture, num_items=dm.num_items,  # type: ignore[arg-type]
                             max_len=50, hidden_size=64, num_heads=2, loss="bce" if architecture == "sasrec" else "ce")
        monitor = ThroughputMonitor()
        trainer = pl.Trainer(max_epochs=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor],
                             accelerator="cpu", num_sanity_val_steps=0)
        trainer.fit(model, datamodule=dm)
        tokens.append(monitor.summary["tokens_per_s"])
        waits.append(monitor.summary["data_wait_fraction"])
    return {"tokens_per_s": stats(tokens), "data_wait_fraction": stats(waits)}


def original_vs_seqrec(users: int, items: int, repeats: int) -> dict[str, float]:
    from benchmarks import training

    ratios = []
    for _ in range(repeats):
        args = argparse.Namespace(users=users, items=items, clusters=20, mean_length=9.26, max_len=50, hidden=50,
                                  dropout=0.5, batch_size=128, epochs=1, workers=1, setups=["original", "seqrec"])
        ratios.append(training.run(args)["speedup_tokens_per_s"])
    return stats(ratios)


def evaluation(users: int, items: int, repeats: int) -> dict[str, float]:
    """Users per second through full-ranking evaluation (scores, exclusions, metrics) of SASRec."""
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec
    from seqrec.evaluate.ranking import evaluate
    from seqrec.models import ModelConfig, SASRec

    spec = SyntheticSpec(num_users=users, num_items=items, num_clusters=50, mean_length=10, seed=0)
    dm = SeqRecDataModule(synthetic=spec, max_len=50, eval_batch_size=512, seed=0)
    batches = dm.eval_batches("val")
    model = SASRec(ModelConfig(num_items=dm.num_items, max_len=50, hidden_size=64))
    n = sum(len(b["users"]) for b in batches)

    def once() -> float:
        start = time.perf_counter()
        evaluate(model, batches, [10])
        return n / (time.perf_counter() - start)

    return repeat(once, repeats)


SUITES = {
    # suite -> sizes; the ci suite fits in about 3 minutes on 2 cores.
    "ci": {"repeats": 5, "inner": 10, "train_users": 3000, "train_items": 2000, "eval_users": 4000,
           "eval_items": 20000, "orig_users": 3000, "epoch_users": 20000},
    "full": {"repeats": 3, "inner": 40, "train_users": 20000, "train_items": 20000, "eval_users": 20000,
             "eval_items": 100000, "orig_users": 31013, "epoch_users": 20000},
}


def run_suite(suite: str, engine_slowdown: float = 1.0) -> dict[str, Any]:
    """Every figure of ``suite``; ``engine_slowdown`` > 1 gives the engine's epoch builds that many times
    the work (only to show the gate failing; the result records it)."""
    size = SUITES[suite]
    torch.set_num_threads(1)  # figures per core: stable on a shared machine, comparable across machines
    start = time.perf_counter()
    # The machine's speed drifts during a run (other jobs, clocks): calibrate next to each measurement and
    # normalise by the median of those calibrations.
    gflops_seen = [calibration()]
    figures: dict[str, dict[str, float]] = {}
    figures["batching.rust_vs_numpy"] = batching(size["repeats"], size["inner"])["rust_vs_numpy"]
    for name, figure in training_epoch(size["epoch_users"], size["repeats"], engine_slowdown).items():
        figures[f"batching.{name}"] = figure
    throughput = {}
    for arch in ("sasrec", "bert4rec"):
        gflops_seen.append(calibration())
        throughput[arch] = lightning_throughput(arch, size["train_users"], size["train_items"], size["repeats"])
        gflops_seen.append(calibration())
    gflops = statistics.median(gflops_seen)
    for arch, t in throughput.items():
        figures[f"training.{arch}_tokens_per_s"] = t["tokens_per_s"]
        figures[f"training.{arch}_tokens_per_gflop"] = {k: v / gflops if k != "n" else v
                                                        for k, v in t["tokens_per_s"].items()}
        if arch == "sasrec":
            figures["training.sasrec_data_wait_fraction"] = t["data_wait_fraction"]
    if suite == "full":  # the shared real datasets, where present
        from seqrec.data.source import resolve_data_path

        for name, rel in (("games", "amazon-games/Video.txt"), ("beauty", "amazon-beauty-bert4rec/beauty.txt")):
            try:
                path = str(resolve_data_path("$SEQREC_DATA_DIR/" + rel))
            except FileNotFoundError as e:
                print(f"skipping {name}: {e}")
                continue
            t = lightning_throughput("sasrec", 0, 0, size["repeats"], path=path)
            figures[f"training.{name}_sasrec_tokens_per_s"] = t["tokens_per_s"]
            figures[f"training.{name}_sasrec_data_wait_fraction"] = t["data_wait_fraction"]
    figures["training.seqrec_vs_original"] = original_vs_seqrec(size["orig_users"], size["train_items"],
                                                                max(1, size["repeats"] - 1))
    ev = evaluation(size["eval_users"], size["eval_items"], size["repeats"])
    gflops_seen.append(calibration())
    gflops = statistics.median(gflops_seen)  # now with the calibrations around evaluation too
    figures["evaluation.users_per_s"] = ev
    figures["evaluation.users_per_gflop"] = {k: v / gflops if k != "n" else v for k, v in ev.items()}
    figures["calibration.gflops"] = stats(gflops_seen)
    out = {"suite": suite, "machine": machine(), "seconds": time.perf_counter() - start, "figures": figures}
    if engine_slowdown != 1:
        out["engine_slowdown"] = engine_slowdown
    return out


def compare(result: dict[str, Any], baseline: dict[str, Any],
            checks: dict[str, tuple[bool, float]] | None = None) -> tuple[bool, str]:
    """(passed, markdown table) of each checked figure (default ``CHECKS``) against the baseline's median.

    A checked figure missing from the run or from the baseline fails, and the table says which.
    """
    ok = True
    lines = ["| figure | baseline | now | limit | |", "|---|---:|---:|---:|---|"]
    for name, (higher, factor) in (CHECKS if checks is None else checks).items():
        now = result["figures"].get(name, {}).get("median")
        base = baseline.get("figures", {}).get(name, {}).get("median")
        if now is None or base is None:
            where = " and ".join(w for w, v in (("this run", now), ("the baseline", base)) if v is None)
            fix = " (refresh it with `python -m benchmarks baseline`)" if now is not None else ""
            shown = [f"{v:.4g}" if v is not None else "–" for v in (base, now)]
            lines.append(f"| {name} | {shown[0]} | {shown[1]} | – | **MISSING** from {where}{fix} |")
            ok = False
            continue
        if higher:
            limit = base * factor
            passed = now >= limit
        else:
            limit = max(base * factor, FLOORS.get(name, 0.0))
            passed = now <= limit
        ok &= passed
        lines.append(f"| {name} | {base:.4g} | {now:.4g} | {'>=' if higher else '<='} {limit:.4g} | "
                     f"{'ok' if passed else '**REGRESSION**'} |")
    return ok, "\n".join(lines)


def summary(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# Speed suite `{result['suite']}` ({result['seconds']:.0f} s)", "",
             f"_{m['time']}, commit {m['git_commit']}, {m['cores']} cores, torch {m['torch']}, one torch thread_", ""]
    if "engine_slowdown" in result:
        lines += [f"**Injected: the engine's epoch builds did {result['engine_slowdown']}x the work** "
                  "(`--slow-engine`).", ""]
    lines += ["| figure | median | min | max |", "|---|---:|---:|---:|"]
    for name, s in result["figures"].items():
        lines.append(f"| {name} | {s['median']:.4g} | {s.get('min', s['median']):.4g} | {s.get('max', s['median']):.4g} |")
    return "\n".join(lines)


def plot_history(history: Path = HISTORY, out: Path = RESULTS / "history.png") -> Path:
    from seqrec.evaluate.plots import _pyplot

    plt = _pyplot()
    rows = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    names = ["batching.rust_vs_numpy", "batching.epoch_vs_numpy", "training.seqrec_vs_original",
             "training.sasrec_tokens_per_gflop", "training.bert4rec_tokens_per_gflop", "evaluation.users_per_gflop"]
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.2 * len(names)), sharex=True)
    labels = [f"{r['machine']['git_commit']}\n{r['suite']}" for r in rows]
    for ax, name in zip(axes, names):
        ys = [r["figures"].get(name, {}).get("median", float("nan")) for r in rows]
        ax.plot(range(len(rows)), ys, marker="o", color="#3b75af")
        ax.set_ylabel(name.split(".", 1)[1], fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xticks(range(len(rows)), labels, fontsize=7, rotation=45)
    fig.suptitle("seqrec speed over commits (ratios measured within each run)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a suite")
    r.add_argument("--suite", choices=sorted(SUITES), default="ci")
    r.add_argument("--check", action="store_true", help="exit 1 when a figure regressed against the baseline")
    r.add_argument("--baseline", type=Path, default=BASELINE)
    r.add_argument("--out", type=Path, default=RESULTS / "suite", help="folder of the per-run JSON files")
    r.add_argument("--history", type=Path, default=None, help="append the run here (default: full runs only)")
    r.add_argument("--slow-engine", type=float, default=1.0, metavar="FACTOR",
                   help="give the engine's epoch builds FACTOR times the work: shows that --check catches it")
    b = sub.add_parser("baseline", help="run the ci suite and make it the baseline")
    b.add_argument("--baseline", type=Path, default=BASELINE)
    pl = sub.add_parser("plot", help="plot the history of full runs")
    pl.add_argument("--history", type=Path, default=HISTORY)
    pl.add_argument("--out", type=Path, default=RESULTS / "history.png")
    args = p.parse_args(argv)

    if args.command == "plot":
        print(f"wrote {plot_history(args.history, args.out)}")
        return 0
    suite = "ci" if args.command == "baseline" else args.suite
    result = run_suite(suite) if args.command == "baseline" else run_suite(suite, args.slow_engine)
    text = summary(result)
    if args.command == "baseline":
        args.baseline.write_text(json.dumps(result, indent=2) + "\n")
        print(text + f"\n\nwrote the baseline {args.baseline}")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"{suite}-{result['machine']['time'].replace(':', '')}-{result['machine']['git_commit'] or 'nogit'}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    history = args.history or (HISTORY if suite == "full" and args.slow_engine == 1 else None)
    if history is not None:
        with history.open("a") as f:
            f.write(json.dumps(result) + "\n")
    passed, why = False, ""
    baseline = json.loads(args.baseline.read_text()) if args.baseline.exists() else None
    if baseline is None:
        why = f"no baseline file {args.baseline} (write one with `python -m benchmarks baseline`)"
        text += f"\n\nNot compared: {why}."
    elif baseline.get("suite") not in (None, suite):
        why = f"the baseline {args.baseline} is a {baseline['suite']} run, this a {suite} run (sizes differ)"
        text += f"\n\nNot compared: {why}."
    else:
        passed, table = compare(result, baseline)
        why = "a figure regressed or is missing: see the table above"
        text += "\n\nAgainst the baseline (" + str(args.baseline) + "):\n\n" + table
    (args.out / f"{stem}.md").write_text(text + "\n")
    print(text)
    if args.check and not passed:
        print(f"\nspeed check failed: {why}. Refresh the baseline with `python -m benchmarks baseline` only when "
              "a slowdown is intended.", file=sys.stderr)
        return 1
    return 0
