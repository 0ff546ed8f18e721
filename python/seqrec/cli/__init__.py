"""The ``seqrec`` command: the LightningCLI subcommands and the tools (data, plot, export, evaluate, compare,
serve)."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["SeqRecCLI", "link_best", "main", "run"]

# Lightning's subcommands (seqrec.cli.lightning), with the line `seqrec --help` shows for each.
TRAINING = {
    "fit": "train a model: keeps the best checkpoint, then tests it (--config FILE, any key as --section.key)",
    "validate": "evaluate a checkpoint (--ckpt_path) on the validation split",
    "test": "evaluate a checkpoint on the test split: results table, intervals, per-user results",
    "predict": "top-k recommendations of every user from a checkpoint, to .csv, .parquet or a folder",
}
TOOLS = ("data", "plot", "export", "compare", "evaluate", "serve")  # subcommands of seqrec.cli.tools; the rest is Lightning's


def __getattr__(name: str) -> Any:
    # The Lightning side imports torch: only when asked for, so that the tools start fast.
    if name in ("SeqRecCLI", "link_best", "run"):
        from seqrec.cli import lightning

        return getattr(lightning, name)
    raise AttributeError(f"module 'seqrec.cli' has no attribute {name!r}")


def usage() -> str:
    """What ``seqrec --help`` prints: every subcommand, Lightning's and the tools', without importing torch
    (LightningCLI's own top-level help takes seconds to build and lists only its four)."""
    import argparse

    from seqrec.cli.tools import parser

    tools = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {a.dest: a.help for a in tools._choices_actions}
    lines = ["usage: seqrec <command> [options]    (seqrec <command> --help: the options of one)", "",
             "training and evaluation (LightningCLI):"]
    lines += [f"  {name:<10}{text}" for name, text in TRAINING.items()]
    lines += ["", "tools:"]
    lines += [f"  {name:<10}{helps.get(name, '')}" for name in TOOLS]
    return "\n".join(lines) + "\n"


def main() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    if argv[0] in TOOLS:
        from seqrec.cli.tools import tools

        try:
            code = tools(argv)
        except (FileNotFoundError, ValueError) as e:  # bad paths and data: a message, not a traceback
            print(f"seqrec: error: {e}", file=sys.stderr)
            code = 2
        raise SystemExit(code)
    from seqrec.cli.lightning import run

    try:
        run()
    except (FileNotFoundError, ValueError) as e:  # bad options, files and checkpoints: a message
        if os.environ.get("SEQREC_TRACEBACK"):
            raise
        print(f"seqrec: error: {e}\n(set SEQREC_TRACEBACK=1 for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None
