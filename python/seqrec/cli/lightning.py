"""LightningCLI over ``SeqRecModule`` and ``SeqRecDataModule``: ``seqrec fit|validate|test|predict``."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from seqrec.data.datamodule import SeqRecDataModule
from seqrec.evaluate.test_report import TestReport
from seqrec.files import write_atomically
from seqrec.train.module import SeqRecModule


class SeqRecCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.max_len", "model.max_len")
        parser.link_arguments("model.architecture", "data.task")
        parser.link_arguments("data.num_items", "model.num_items", apply_on="instantiate")
        parser.link_arguments("data.num_attributes", "model.num_attributes", apply_on="instantiate")
        parser.link_arguments("data.max_attributes", "model.max_attributes", apply_on="instantiate")
        parser.link_arguments("data.num_time_buckets", "model.num_time_buckets", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, evaluate the best checkpoint on the test split and print the results table.",
        )
        parser.add_argument("--predict_k", type=int, default=10, help="seqrec predict: recommendations per user.")
        parser.add_argument("--predict_output", type=str, default="recommendations.csv",
                            help="seqrec predict: where the top-k go (.csv or .parquet).")

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyperparameters before anything else; a damaged file would end in
        # torch's page-long unpickling advice without naming the file.
        from seqrec.train.checkpoint_io import unreadable

        try:
            super()._parse_ckpt_path()
        except (SystemExit, FileNotFoundError):
            raise
        except Exception as e:
            path = self.config[self.config.subcommand].get("ckpt_path")
            raise unreadable(path, e) from None

    def before_instantiate_classes(self) -> None:
        # A progress bar redrawn into a log file (CI, nohup) is noise: without a terminal, show none unless
        # the config or command line asked for one.
        trainer = self.config[self.subcommand].get("trainer") if self.subcommand else self.config.get("trainer")
        if trainer is not None and trainer.get("enable_progress_bar") is None and not sys.stdout.isatty():
            trainer["enable_progress_bar"] = False
        if self.subcommand == "fit" and trainer is not None and not self.config["fit"].get("ckpt_path"):
            root = trainer.get("default_root_dir")
            if root is not None:
                fresh = free_run_folder(Path(root))
                if fresh != Path(root):
                    print(f"{root} holds a finished run: this one goes to {fresh}")
                    trainer["default_root_dir"] = str(fresh)

    def before_predict(self) -> None:
        from seqrec.serve.predictions import RecommendationWriter

        config = self.config[self.subcommand]
        # With --ckpt_path, LightningCLI takes the model's hyperparameters from the checkpoint, whatever the
        # command line says of model.*: k is given to the model here, explicitly, instead.
        if config["predict_k"] < 1:
            raise ValueError(f"predict_k must be positive, got {config['predict_k']}")
        self.model.hparams.predict_k = config["predict_k"]
        self.trainer.callbacks.append(RecommendationWriter(config["predict_output"]))

    def _add_test_report(self) -> None:
        # Tables, per-user rows and the results file of a test pass (the module itself only computes metrics).
        if not any(isinstance(c, TestReport) for c in self.trainer.callbacks):
            self.trainer.callbacks.append(TestReport())

    def before_test(self) -> None:
        self._add_test_report()

    def _check_before_training(self) -> None:
        """What would otherwise fail only after a whole epoch: nothing to evaluate, or monitors of metrics
        that are never logged (``model.ks`` without the monitored cut-off)."""
        dm, model = self.datamodule, self.model
        if dm.split.users("val").size == 0:
            raise ValueError(f"{dm.dataset_name}: no user can be evaluated (each needs at least 3 interactions "
                             f"for leave-one-out, or interactions on both sides of the time cut-offs)")
        model.dataset = dm.info  # metric_names needs the protocol; setup() attaches it again
        logged = model.metric_names("val")
        for cb in self.trainer.callbacks:
            monitor = getattr(cb, "monitor", None)
            if monitor and monitor not in logged:
                raise ValueError(f"{type(cb).__name__} monitors {monitor!r}, which is never logged with "
                                 f"model.ks={model.ks}: use one of {sorted(n for n in logged if '/' not in n[4:])}")

    def before_fit(self) -> None:
        from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

        from seqrec.train.checkpoint_io import AtomicCheckpointIO

        # Checkpoints never half-written under their final name (unless the config brought its own writer).
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        self._add_test_report()
        self._check_before_training()
        stats = self.datamodule.stats()
        print("Dataset " + self.datamodule.dataset_name + ": " + ", ".join(f"{k}={_fmt(v)}" for k, v in stats.items()))
        for logger in self.trainer.loggers:
            logger.log_hyperparams({"dataset": {"name": self.datamodule.dataset_name, **stats}})

    def after_fit(self) -> None:
        ckpt = self.trainer.checkpoint_callback
        has_best = ckpt is not None and getattr(ckpt, "best_model_path", "")
        if has_best and self.trainer.is_global_zero:  # one process links (ranks racing on it could fail)
            link = link_best(Path(ckpt.best_model_path), Path(self.trainer.default_root_dir))
            print(f"best checkpoint: {ckpt.best_model_path} (also {link})")
        if not self.config[self.subcommand].get("test_after_fit", True):
            return
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt.best_model_path if has_best else None)
        # (the path, not "best": with a second checkpoint callback for last.ckpt, "best" warns which it takes)


def free_run_folder(root: Path) -> Path:
    """``root``, or ``root-2``, ``root-3``, ... when it already holds a finished run (its best.ckpt or
    test_results.json): a new fit never overwrites another run's results. Resuming (``--ckpt_path``) keeps it."""
    def finished(folder: Path) -> bool:
        return (folder / "best.ckpt").exists() or (folder / "test_results.json").exists()

    candidate, n = root, 1
    while finished(candidate):
        n += 1
        candidate = root.with_name(f"{root.name}-{n}")
    return candidate


def link_best(best: Path, root: Path) -> Path:
    """Points ``root/best.ckpt`` at the run's best checkpoint: a path that does not change between runs."""
    target = os.path.relpath(best.resolve(), root.resolve())

    def make(tmp: Path) -> None:
        try:
            tmp.symlink_to(target)
        except OSError:  # no symlinks here (some Windows setups): a copy
            shutil.copyfile(best, tmp)

    return write_atomically(root / "best.ckpt", make)


def _fmt(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def run(args: list[str] | None = None) -> SeqRecCLI:
    """Runs the CLI with ``args`` (default: the command line) and returns it, for tests and notebooks."""
    return SeqRecCLI(
        SeqRecModule,
        SeqRecDataModule,
        save_config_kwargs={"overwrite": True},
        # One optimiser mechanism: the module's (model.optimizer, model.lr, model.lr_schedule, ...).
        # LightningCLI's --optimizer/--lr_scheduler would silently replace it while hparams kept the old values.
        auto_configure_optimizers=False,
        args=args,  # None: LightningCLI reads sys.argv itself (passing it too warns of "both args and argv")
    )
