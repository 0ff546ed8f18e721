"""The ``seqrec`` command: the LightningCLI subcommands and the tools (data, plot, export, evaluate, compare)."""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["SeqRecCLI", "link_best", "main", "run"]

TOOLS = ("data", "plot", "export", "compare", "evaluate")  # subcommands of seqrec.cli.tools; the rest is Lightning's


def __getattr__(name: str) -> Any:
    # The Lightning side imports torch: only when asked for, so that the tools start fast.
    if name in ("SeqRecCLI", "link_best", "run"):
        from seqrec.cli import lightning

        return getattr(lightning, name)
    raise AttributeError(f"module 'seqrec.cli' has no attribute {name!r}")


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] and argv[0] in TOOLS:
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


