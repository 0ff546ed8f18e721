"""The commands that are not training runs: ``seqrec data stats|prepare``, ``plot``, ``compare``, ``evaluate``,
``export``, ``serve``."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from seqrec.data.interactions import Interactions

FORMAT_HELP = "auto, sasrec, user_lines, movielens, csv, parquet or prepared"


COLUMNS = ("user_id", "item_id", "timestamp")
NO_TIME = ("", "null", "none")  # a time column of these names: keep file order (null, as in a YAML config)
# The flags the tools had before --columns, kept as aliases (one column each), hidden from --help.
OLD_COLUMN_FLAGS = ("--user-col", "--item-col", "--time-col")


def _add_input(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="a data file or prepared folder ($SEQREC_DATA_DIR expands), or 'synthetic'")
    p.add_argument("--format", default="auto", help=FORMAT_HELP)
    p.add_argument("--columns", nargs=3, default=None, metavar=("USER", "ITEM", "TIME"),
                   help="CSV/TSV/parquet: the user, item and time columns, as data.columns in training "
                        f"(default {' '.join(COLUMNS)}; TIME null keeps file order)")
    p.add_argument("--delimiter", default=None,
                   help="CSV/TSV: the field separator, as data.delimiter (default: tab for .tsv, comma otherwise)")
    for position, flag in enumerate(OLD_COLUMN_FLAGS):
        p.add_argument(flag, default=None, dest=f"old_column_{position}", help=argparse.SUPPRESS)
    p.add_argument("--timestamps", default=None,
                   help="one-user-per-line text: a 'user t1 t2 ...' file of the same users (e.g. Beauty_time.txt)")


def _columns(args: argparse.Namespace) -> tuple[str, str, str | None]:
    """--columns, or the old one-column flags in its place (both at once is refused)."""
    old = [getattr(args, f"old_column_{i}") for i in range(3)]
    given = [flag for flag, value in zip(OLD_COLUMN_FLAGS, old) if value is not None]
    if args.columns is not None and given:
        raise ValueError(f"{' and '.join(given)} and --columns both name columns: give --columns USER ITEM TIME alone")
    columns = list(args.columns) if args.columns is not None else [
        value if value is not None else default for value, default in zip(old, COLUMNS)]
    for name, value in zip(("USER", "ITEM"), columns):
        if value in NO_TIME:
            raise ValueError(f"--columns: the {name} column needs a name, got {value!r}")
    return columns[0], columns[1], None if columns[2] in NO_TIME else columns[2]


def _read(args: argparse.Namespace) -> tuple[Interactions, str]:
    from seqrec.data.features import attach_user_line_times
    from seqrec.data.loaders import load
    from seqrec.data.source import resolve_data_path
    from seqrec.data.synthetic import make_synthetic

    user_col, item_col, time_col = _columns(args)
    if args.dataset == "synthetic":
        return make_synthetic(), "synthetic"
    path = resolve_data_path(args.dataset)
    data = load(path, args.format, user_col=user_col, item_col=item_col, time_col=time_col, delimiter=args.delimiter)
    if args.timestamps:
        data = attach_user_line_times(data, resolve_data_path(args.timestamps))
    return data, path.name


def rounded(value: Any, digits: int = 4) -> Any:
    """``value`` with every float inside it rounded to ``digits`` significant digits, for printing."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


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
    export = sub.add_parser("export", help="item and user embeddings and an ONNX scorer from a checkpoint")
    export.add_argument("checkpoint", type=Path, help="a .ckpt written by seqrec fit")
    export.add_argument("out", type=Path, help="output folder")
    export.add_argument("--no-onnx", action="store_true", help="only the embeddings (no ONNX scorer)")
    export.add_argument("--onnx-top-k", type=int, default=0, metavar="K",
                        help="the scorer also outputs the top K items, seen and disallowed ones left out "
                             "(0: scores only)")
    export.add_argument("--new-items", type=Path, default=None, metavar="FILE",
                        help="item features of items not in training (the training file's layout): exported "
                             "beside the known ones, from features alone")
    export.add_argument("--new-item-boost", type=float, default=None, metavar="B",
                        help="added to the scores of items without a trained ID (model.new_item_boost; default: "
                             "the checkpoint's): a last column of the item table, 1 in the user vectors")
    export.add_argument("--allow", type=Path, default=None, metavar="FILE",
                        help="allow-list, one raw item id per line: allowed_items.npy, the top-k scorer's "
                             "'allowed' input")
    srv = sub.add_parser("serve", help="an HTTP recommendation service from a checkpoint (pip install -e \".[serve]\")")
    srv.add_argument("checkpoint", type=Path, help="a .ckpt written by seqrec fit")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    srv.add_argument("--port", type=int, default=8000, help="port to listen on")
    srv.add_argument("--index", choices=("exact", "hnsw"), default="exact",
                     help="retrieval over the item table: exact, or faiss HNSW (approximate)")
    srv.add_argument("--max-batch", type=int, default=32, metavar="N",
                     help="micro-batching: at most N requests per encoder pass (1: every request alone)")
    srv.add_argument("--max-wait-ms", type=float, default=2.0, metavar="T",
                     help="micro-batching: a request waits at most T ms for others to join it")
    srv.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="B",
                     help="larger request bodies get 413")
    srv.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    srv.add_argument("--access-log", action="store_true", help="log every request")
    return p


SERVE_EXTRA = 'pip install -e ".[serve]"'


def tools(argv: list[str]) -> int:
    """Runs one tool command; returns the exit status."""
    args = parser().parse_args(argv)
    if args.command == "data" and args.action == "stats":
        from seqrec.evaluate.plots import dataset_summary, plot_dataset

        interactions, name = _read(args)
        summary = dataset_summary(interactions)
        out = args.out or Path("runs") / "stats" / name
        paths = plot_dataset(interactions, name, out)
        print(json.dumps(rounded({"dataset": name, **summary}), indent=2))
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
        from seqrec.serve.export import export, onnx_extra_missing

        missing = None if args.no_onnx else onnx_extra_missing()
        if args.new_items is not None and not args.no_onnx:
            missing = "new items were added: the ONNX scorer holds the trained catalogue only"
        written = export(args.checkpoint, args.out, onnx=False if args.no_onnx else None, top_k=args.onnx_top_k,
                         allow=args.allow, new_items=args.new_items, new_item_boost=args.new_item_boost)
        print("wrote: " + ", ".join(str(p) for p in written))
        if missing is not None:  # the embeddings are written; the scorer waits for the extra
            print(f"skipped scorer.onnx: {missing}")
        return 0
    if args.command == "serve":
        if not args.checkpoint.is_file():
            raise FileNotFoundError(f"{args.checkpoint}: no such checkpoint")
        for name, value, low in (("--max-batch", args.max_batch, 1), ("--max-wait-ms", args.max_wait_ms, 0),
                                 ("--max-body-bytes", args.max_body_bytes, 1), ("--threads", args.threads or 1, 1)):
            if value < low:
                raise ValueError(f"{name} must be at least {low}, got {value}")
        try:
            from seqrec.serve.server import serve
        except ImportError as e:
            raise ValueError(f"seqrec serve needs the serve extra ({e}): {SERVE_EXTRA}") from None
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        serve(args.checkpoint, args.host, args.port, args.index, args.max_batch, args.max_wait_ms,
              args.max_body_bytes, args.access_log)
        return 0
    from seqrec.evaluate.plots import plot_run

    paths = plot_run(args.run_dir, args.out or args.run_dir)
    print("plots: " + ", ".join(str(p) for p in paths))
    return 0
