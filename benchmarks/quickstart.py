"""How long README's first command takes here: ``seqrec fit --config configs/sasrec_synthetic.yaml``, as written.

Records the wall time from the start of the fit to the end of its test report (the command's whole run,
install excluded), the epochs it trained and the test NDCG@10 of the model and the popularity baseline.

    OMP_NUM_THREADS=1 python -m benchmarks.quickstart        # benchmarks/results/quickstart.{json,md}
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import RESULTS, write

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    from seqrec.cli import run

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides (tests shrink the run)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="quickstart")
    args = p.parse_args(argv)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the config's run folders are relative: a fresh folder, as for a new user
        try:
            start = time.perf_counter()
            cli = run(["fit", "--config", str(ROOT / "configs" / "sasrec_synthetic.yaml"),
                       *[f"--{kv}" for kv in args.set]])
            seconds = time.perf_counter() - start
        finally:
            os.chdir(here)
        import wandb

        wandb.finish()
    test = cli.model.results.get("test", {})
    result = {"seconds": seconds, "epochs": int(cli.trainer.current_epoch), "set": args.set,
              "test_ndcg@10": test.get("ndcg@10"), "popularity_test_ndcg@10": test.get("popularity/ndcg@10")}
    text = ("# README's quick-start command on this machine\n\n"
            "| command | seconds | epochs | test NDCG@10 | popularity NDCG@10 |\n|---|---:|---:|---:|---:|\n"
            f"| seqrec fit --config configs/sasrec_synthetic.yaml {' '.join('--' + kv for kv in args.set)} | "
            f"{seconds:.0f} | {result['epochs']} | {result['test_ndcg@10']:.4f} | {result['popularity_test_ndcg@10']:.4f} |")
    write(args.name, result, text, args.out)
    print(text)
    return result


if __name__ == "__main__":
    main()
