"""The commands that are not training runs: ``seqrec data stats|prepare``, ``plot``, ``compare``, ``evaluate``, ``export``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqrec.data.interactions import Interactions

FORMAT_HELP = "auto, sasrec, user_lines, movielens, csv, parquet or prepared"


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="a data file or prepared folder ($SEQREC_DATA_DIR expands), or 'synthetic'")
    p.add_argument("--format", default="auto", help=FORMAT_HELP)
    p.add_argument("--user-col", default="user_id", help="CSV/parquet: the user column")
    p.add_argument("--item-col", default="item_id", help="CSV/parquet: the item column")
    p.add_argument("--time-col", default="timestamp", help="CSV/parquet: the time column ('' for file order)")
    p.add_argument("--timestamps", default=None,
                   help="one-user-per-line text: a 'user t1 t2 ...' file of the same users (e.g. Beauty_time.txt)")


def _read(args: argparse.Namespace) -> tuple[Interactions, str]:
    from seqrec.data.features import attach_user_line_times
    from seqrec.data.loaders import load
    from seqrec.data.source import resolve_data_path
    from seqrec.data.synthetic import make_synthetic

    if args.dataset == "synthetic":
        return make_synthetic(), "synthetic"
    path = resolve_data_path(args.dataset)
    data = load(path, args.format, user_col=args.user_col, item_col=args.item_col, time_col=args.time_col or None)
    if args.timestamps:
        data = attach_user_line_times(data, resolve_data_path(args.timestamps))
    return data, path.name


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqrec", description="seqrec tools (training: seqrec fit|validate|test|predict)")
    sub = p.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="action", required=True)
    stats = data.add_parser("stats", help="summary and PNG plots of a dataset")
    _add_input(stats)
    stats.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default runs/stats/<name>)")
    prep = data.add_parser("prepare", help="convert to the compact format, optionally k-core filtered and deduplicated")
    _add_input(prep)
    prep.add_argument("out", type=Path, help="output folder (data.path of a training config can point at it)")
    prep.add_argument("--min-count", "--k-core", type=int, default=0, dest="min_count",
                      help="k-core: keep users and items with at least this many interactions (0: no filter)")
    prep.add_argument("--dedup", action="store_true", help="drop an interaction repeating the user's previous item")
    plot = sub.add_parser("plot", help="PNG training curves of a run")
    plot.add_argument("run_dir", type=Path, help="a run folder: Lightning CSV logs or an offline W&B run")
    plot.add_argument("--out", type=Path, default=None, help="folder for the PNGs (default: the run folder)")
    cmp = sub.add_parser("compare", help="paired comparison of two test runs on the same users")
    cmp.add_argument("run_a", type=Path, help="a run folder holding test_per_user.parquet (the baseline)")
    cmp.add_argument("run_b", type=Path, help="the run compared with it")
    cmp.add_argument("--resamples", type=int, default=1000, help="bootstrap and permutation resamples")
    cmp.add_argument("--out", type=Path, default=None, help="also write the comparison as JSON here")
    ev = sub.add_parser("evaluate", help="a report (markdown, JSON, PNGs) of a test run's per-user results")
    ev.add_argument("run_dir", type=Path, help="a run folder holding test_per_user.parquet (seqrec test writes it)")
    ev.add_argument("--out", type=Path, default=None, help="report folder (default RUN_DIR/report)")
    export = sub.add_parser("export", help="item embeddings and an ONNX scorer from a checkpoint")
    export.add_argument("checkpoint", type=Path, help="a .ckpt written by seqrec fit")
    export.add_argument("out", type=Path, help="output folder")
    export.add_argument("--no-onnx", action="store_true", help="only the embeddings table (no ONNX scorer)")
    return p


def tools(argv: list[str]) -> int:
    """Runs one tool command; returns the exit status."""
    args = parser().parse_args(argv)
    if args.command == "data" and args.action == "stats":
        from seqrec.evaluate.plots import dataset_summary, plot_dataset

        interactions, name = _read(args)
        summary = dataset_summary(interactions)
        out = args.out or Path("runs") / "stats" / name
        paths = plot_dataset(interactions, name, out)
        print(json.dumps({"dataset": name, **summary}, indent=2))
        print("plots: " + ", ".join(str(p) for p in paths))
        return 0
    if args.command == "data" and args.action == "prepare":
        from seqrec.data.prepared import prepare

        interactions, _ = _read(args)
        report = prepare(interactions, args.out, min_count=args.min_count, dedup=args.dedup)
        print(json.dumps(report, indent=2))
        return 0
    if args.command == "compare":
        from seqrec.evaluate.per_user import compare, dumps, format_comparison

        result = compare(args.run_a, args.run_b, args.resamples)
        print(format_comparison(result, str(args.run_a), str(args.run_b)))
        if args.out is not None:
            args.out.write_text(dumps(result) + "\n")
        return 0
    if args.command == "evaluate":
        from seqrec.evaluate.per_user import report

        print("wrote: " + ", ".join(str(p) for p in report(args.run_dir, args.out)))
        return 0
    if args.command == "export":
        from seqrec.serve.export import export

        try:
            written = export(args.checkpoint, args.out, onnx=not args.no_onnx)
        except ImportError as e:  # the optional extra is missing: say which, nothing was written
            raise ValueError(str(e)) from None
        print("wrote: " + ", ".join(str(p) for p in written))
        return 0
    from seqrec.evaluate.plots import plot_run

    paths = plot_run(args.run_dir, args.out or args.run_dir)
    print("plots: " + ", ".join(str(p) for p in paths))
    return 0
