"""A hyperparameter search over a shipped config: Optuna's sampler and pruner, seqrec's training, validation only.

Each trial is ``seqrec fit`` of the config with the trial's overrides, within a wall-clock budget, early
stopping and checkpointing on validation NDCG@10 as the config says; the test split is never read (trials
run with ``test_after_fit=false``). A trial that trails the median of earlier trials at the same validation
is pruned (Optuna's MedianPruner). The result is a table of every trial, best first, and the overrides of
the best one, to write into a config and then test once with ``benchmarks.accuracy``.

    pip install -e ".[tune]"
    SEQREC_DATA_DIR=../shared/data OMP_NUM_THREADS=1 python -m benchmarks.search --config sasrec_beauty_s3 \
        --trials 12 --minutes 10 --name search_beauty_s3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl

from benchmarks.common import RESULTS, write

ROOT = Path(__file__).resolve().parents[1]
METRIC = "val/ndcg@10"

# name -> (kind, choices or (low, high)): what a trial may change. Keys are LightningCLI options.
SPACE: dict[str, tuple[str, Any]] = {
    "model.block": ("categorical", ["transformer", "ligr"]),
    "model.num_blocks": ("categorical", [1, 2, 3]),
    "model.num_heads": ("categorical", [1, 2]),
    "model.dropout": ("float", (0.1, 0.6)),
    "model.embedding_dropout": ("float", (0.0, 0.6)),
    "model.lr": ("log", (3e-4, 3e-3)),
    "model.weight_decay_scope": ("categorical", ["all", "matrices"]),
    "model.warmup_steps": ("categorical", [0, 200, 1000]),
}


class PruneOnValidation(pl.Callback):
    """Reports each validation to the trial and stops a trial Optuna prunes.

    optuna-integration's callback imports the ``lightning`` namespace, and seqrec trains under
    ``pytorch_lightning`` (mixing the two fails), so this is the same few lines on our side.
    """

    def __init__(self, trial: Any, monitor: str = METRIC):
        self.trial, self.monitor, self.pruned = trial, monitor, False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = True
            trainer.should_stop = True


def suggest(trial: Any, space: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (kind, spec) in space.items():
        if kind == "categorical":
            out[key] = trial.suggest_categorical(key, spec)
        elif kind == "float":
            out[key] = round(trial.suggest_float(key, *spec), 3)
        elif kind == "log":
            out[key] = trial.suggest_float(key, *spec, log=True)
        else:
            raise ValueError(f"search space {key}: unknown kind {kind!r}")
    return out


def train_trial(config: str, params: dict[str, Any], minutes: float, root: Path, seed: int,
                extra: list[str]) -> dict[str, Any]:
    """One ``seqrec fit`` of ``config`` with ``params``; returns its best validation score and epochs."""
    from seqrec.cli import run

    hh, mm, ss = int(minutes // 60), int(minutes % 60), int(round(minutes * 60 % 60))
    logger = json.dumps([{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": str(root)}}])
    args = ["fit", "--config", str(ROOT / "configs" / f"{config}.yaml"), *[f"--{k}={v}" for k, v in params.items()],
            *extra, f"--trainer.max_time=00:{hh:02d}:{mm:02d}:{ss:02d}", f"--trainer.default_root_dir={root}",
            f"--trainer.logger={logger}", "--trainer.enable_progress_bar=false", "--test_after_fit=false",
            f"--seed_everything={seed}", f"--data.seed={seed}"]
    start = time.perf_counter()
    cli = run(args)
    ckpt = cli.trainer.checkpoint_callback
    score = ckpt.best_model_score if ckpt is not None else None
    return {"value": float(score) if score is not None else float("nan"), "epochs": int(cli.trainer.current_epoch),
            "minutes": (time.perf_counter() - start) / 60}


def objective_for(config: str, minutes: float, out: Path, seed: int, space: dict[str, tuple[str, Any]],
                  extra: list[str]) -> Callable[[Any], float]:
    import optuna

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        pruning = PruneOnValidation(trial)
        _ACTIVE.append(pruning)
        try:
            result = train_trial(config, params, minutes, out / "runs" / f"search_{config}" / f"trial{trial.number}",
                                 seed, extra)
        finally:
            _ACTIVE.remove(pruning)
        trial.set_user_attr("epochs", result["epochs"])
        trial.set_user_attr("minutes", result["minutes"])
        if pruning.pruned:
            raise optuna.TrialPruned()
        return result["value"]

    return objective


# The pruning callback of the trial being trained. LightningCLI builds the trainer from text, so a live
# trial object cannot be passed in; ActiveTrial (added by a config override) forwards its hooks here.
_ACTIVE: list[PruneOnValidation] = []


class ActiveTrial(pl.Callback):
    """Forwards validation ends to the running trial's pruning callback (given as a trainer callback)."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for cb in _ACTIVE:
            cb.on_validation_end(trainer, pl_module)


def table(study: Any, config: str, minutes: float) -> str:
    rows = sorted(study.trials, key=lambda t: (t.value is None, -(t.value or 0.0)))
    keys = list(SPACE)
    lines = [f"# Search over {config} (validation {METRIC}; test split not read)", "",
             f"{len(study.trials)} trials of at most {minutes:g} minutes each; pruned: stopped early for trailing the "
             "median of earlier trials at the same validation.", "",
             "| trial | state | validation NDCG@10 | epochs | " + " | ".join(k.split(".")[-1] for k in keys) + " |",
             "|---:|---|---:|---:|" + "---|" * len(keys)]
    for t in rows:
        value = f"{t.value:.4f}" if t.value is not None else "–"
        cells = " | ".join(str(round(t.params[k], 5)) if isinstance(t.params.get(k), float) else str(t.params.get(k, ""))
                           for k in keys)
        lines.append(f"| {t.number} | {t.state.name.lower()} | {value} | {t.user_attrs.get('epochs', '')} | {cells} |")
    complete = [t for t in study.trials if t.value is not None]
    if complete:
        best = max(complete, key=lambda t: t.value)
        lines += ["", f"Best: trial {best.number}, overrides " +
                  " ".join(f"--{k}={v}" for k, v in best.params.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Any:
    try:
        import optuna
    except ImportError:
        raise SystemExit("benchmarks.search needs Optuna: pip install -e '.[tune]'") from None
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="sasrec_beauty_s3")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per trial (wall clock)")
    p.add_argument("--seed", type=int, default=42, help="seeds the sampler and every trial's training")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="fixed overrides for every trial")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default=None)
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=args.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1))
    extra = [f"--{kv}" for kv in args.set] + ["--trainer.callbacks+=benchmarks.search.ActiveTrial"]
    study.optimize(objective_for(args.config, args.minutes, args.out, args.seed, SPACE, extra), n_trials=args.trials)
    text = table(study, args.config, args.minutes)
    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params, **t.user_attrs}
              for t in study.trials]
    write(args.name or f"search_{args.config}", {"config": args.config, "minutes": args.minutes, "seed": args.seed,
                                                  "metric": METRIC, "set": args.set, "trials": trials}, text, args.out)
    print(text)
    return study


if __name__ == "__main__":
    main()
