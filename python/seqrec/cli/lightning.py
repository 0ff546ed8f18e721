"""LightningCLI over ``SeqRecModule`` and ``SeqRecDataModule``: ``seqrec fit|validate|test|predict``.

A run is one folder, ``trainer.default_root_dir``: loggers without a ``save_dir`` of their own write there,
and with them the checkpoints and ``config.yaml`` (see README, "The run folder").
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace
from pytorch_lightning.cli import (
    LightningArgumentParser,
    LightningCLI,
    SaveConfigCallback,
)

from seqrec.data.datamodule import SeqRecDataModule
from seqrec.evaluate.test_report import TestReport
from seqrec.files import write_atomically
from seqrec.train.module import SeqRecModule

# What Lightning prints on every run that says nothing about this one. Each is silenced where it comes from,
# and only that message.


class _NoLightningTips(logging.Filter):
    """Drops Lightning's advertisements of its cloud services (litlogger from the logger connector, litmodels
    from the checkpoint connector), logged through ``rank_zero_info`` on every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("💡 Tip:") and ("litlogger" in message or "litmodels" in message))


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_NoLightningTips())
# Lightning's CombinedLoader flattens the loaders with torch's LeafSpec, which torch 2.10+ deprecates; no
# argument of ours avoids it (a single loader and a list of loaders both reach it), and Lightning will move off it.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning,
                        module=r"pytorch_lightning\.utilities\._pytree")


class SeqRecCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.max_len", "model.max_len")
        parser.link_arguments("model.architecture", "data.task")
        parser.link_arguments("data.num_items", "model.num_items", apply_on="instantiate")
        parser.link_arguments("data.num_attributes", "model.num_attributes", apply_on="instantiate")
        parser.link_arguments("data.max_attributes", "model.max_attributes", apply_on="instantiate")
        parser.link_arguments("data.num_numeric", "model.num_numeric", apply_on="instantiate")
        parser.link_arguments("data.vector_dim", "model.vector_dim", apply_on="instantiate")
        parser.link_arguments("data.num_time_buckets", "model.num_time_buckets", apply_on="instantiate")
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, evaluate the best checkpoint on the test split and print the results table.",
        )
        parser.add_argument("--predict_k", type=int, default=10, help="seqrec predict: recommendations per user.")
        parser.add_argument("--predict_output", type=str, default="recommendations.csv",
                            help="seqrec predict: where the top-k go: a .csv or .parquet file, or a folder of "
                                 "parquet parts, one per process (a name without a suffix).")
        parser.add_argument("--predict_allow", type=str | None, default=None,
                            help="seqrec predict: a file of the only items that may be recommended (raw ids, one per line).")
        parser.add_argument("--predict_exclude", type=str | None, default=None,
                            help="seqrec predict: a file of items never recommended (raw ids, one per line).")
        parser.add_argument("--predict_new_items", type=str | None, default=None,
                            help="seqrec predict: a feature file (the training layout) of items not in training, "
                                 "scored and recommended from their features beside the trained ones (models "
                                 "trained with model.feature_sides both).")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        # The Trainer method's own arguments (test's verbose, predict's return_predictions) exist only once
        # LightningCLI has added them here, after add_arguments_to_parser: their defaults are set here.
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "test":
            # TestReport prints the results table (model beside popularity); Lightning's raw one would repeat it.
            parser.set_defaults(verbose=False)
        if subcommand == "predict":
            # RecommendationWriter writes every batch as it comes: keeping them all too would undo that.
            parser.set_defaults(return_predictions=False)
        return parser

    # Model options that only change inference: given on the command line they replace the checkpoint's value
    # under --ckpt_path (LightningCLI otherwise lets the checkpoint's hyperparameters win over model.*).
    INFERENCE_OPTIONS = ("new_item_boost",)

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        raw = sys.argv[1:] if args is None else args
        self._given_inference = {k for k in self.INFERENCE_OPTIONS
                                 if isinstance(raw, list) and any(str(a).startswith(f"--model.{k}") for a in raw)}
        super().parse_arguments(parser, args)
        # With --ckpt_path, the data module the checkpoint was trained with is the default: the stored source
        # and data arguments. The config and the command line still override any of them, so they are
        # defaults of the subcommand's parser and the command line is parsed again over them.
        self._checkpoint_data = self._data_from_checkpoint()
        if self._checkpoint_data:
            self._subcommand_parsers[self.config["subcommand"]].set_defaults(self._checkpoint_data)
            super().parse_arguments(parser, args)

    def _data_from_checkpoint(self) -> dict[str, Any]:
        """``data.*`` defaults from the checkpoint of ``--ckpt_path`` (none without one, or from a checkpoint
        that stores no data description)."""
        import torch

        from seqrec.data.description import catalogue_from_checkpoint
        from seqrec.train.checkpoint_io import load_checkpoint_file

        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not Path(path).is_file():
            return {}
        try:  # memory-mapped: only the small description is read, not the weights
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            checkpoint = load_checkpoint_file(path)  # the old format cannot be mapped; a damaged file says so
        stored = catalogue_from_checkpoint(checkpoint) or {}
        data = dict(stored.get("data") or {})
        if not data and stored.get("source"):  # written before checkpoints kept the data arguments
            data = {k: v for k, v in stored["source"].items() if k in ("path", "format", "columns", "synthetic",
                                                                         "timestamps")}
            data.update({k: stored[k] for k in ("split", "sampled_eval", "num_sampled") if k in stored})
        flat = {f"data.{k}": v for k, v in data.items() if k != "synthetic"}
        flat.update({f"data.synthetic.{k}": v for k, v in (data.get("synthetic") or {}).items()})
        parser = self._subcommand_parsers[subcommand]
        known = {}
        for key, value in flat.items():  # a key this version does not have (newer checkpoint) is left out
            try:
                parser.get_default(key)
            except KeyError:
                continue
            known[key] = value
        return known

    def _parse_ckpt_path(self) -> None:
        # LightningCLI reads --ckpt_path's hyperparameters before anything else; a damaged file would end in
        # torch's page-long unpickling advice without naming the file.
        from seqrec.train.checkpoint_io import unreadable

        sub = self.config.get("subcommand")
        given = {k: self.config[sub]["model"][k] for k in getattr(self, "_given_inference", ())} if sub else {}
        try:
            super()._parse_ckpt_path()
        except (SystemExit, FileNotFoundError):
            raise
        except Exception as e:
            path = self.config[self.config.subcommand].get("ckpt_path")
            raise unreadable(path, e) from None
        for key, value in given.items():
            self.config[sub]["model"][key] = value

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.get("trainer")
        # A progress bar redrawn into a log file (CI, nohup) is noise: without a terminal, show none unless
        # the config or command line asked for one.
        if trainer is not None and trainer.get("enable_progress_bar") is None and not sys.stdout.isatty():
            trainer["enable_progress_bar"] = False
        if trainer is not None:
            given = trainer.get("default_root_dir")
            root = Path(given) if given is not None else Path.cwd()  # Lightning's own default
            if self.subcommand == "fit" and not config.get("ckpt_path") and given is not None:
                fresh = free_run_folder(root)
                if fresh != root:
                    print(f"{root} holds a finished run: this one goes to {fresh}")
                    trainer["default_root_dir"] = str(fresh)
            follow_run_folder(trainer.get("logger"), root, Path(trainer.get("default_root_dir") or root))
        self._check_checkpoint_data(config)

    def _check_checkpoint_data(self, config: Namespace) -> None:
        """A data file named by the checkpoint (not by the config) that is gone: say which, and what to do."""
        data = config.get("data") or {}
        for key in ("path", "timestamps", "item_features"):
            value = data.get(key)
            if value is not None and value == self._checkpoint_data.get(f"data.{key}") and not Path(value).exists():
                raise FileNotFoundError(
                    f"{value}: no such file; {config.get('ckpt_path')} was trained on it (data.{key}) and it has "
                    f"moved or been deleted since: give its place with --data.{key}")

    def after_instantiate_classes(self) -> None:
        # ConfigToLoggers logs the whole resolved config, the model's arguments included. Lightning's own
        # logging of them would add them again at the top level, with LightningCLI's `_instantiator` entry.
        if self.model is not None:
            self.model._log_hyperparams = False
        if self.datamodule is not None:
            self.datamodule._log_hyperparams = False

    def before_predict(self) -> None:
        from seqrec.serve.predictions import RecommendationWriter

        config = self.config[self.subcommand]
        # With --ckpt_path, LightningCLI takes the model's hyperparameters from the checkpoint, whatever the
        # command line says of model.*: k is given to the model here, explicitly, instead.
        if config["predict_k"] < 1:
            raise ValueError(f"predict_k must be positive, got {config['predict_k']}")
        self.model.hparams.predict_k = config["predict_k"]
        from seqrec.serve.new_items import PredictionCatalogue
        from seqrec.serve.rules import rules_from_files

        if config["predict_new_items"] is None:  # the rules are checked now, before the model loads
            rules_from_files(self.datamodule.interactions.raw_item_ids, config["predict_allow"],
                             config["predict_exclude"])
        # Set when prediction starts: new items can only join the tables after the checkpoint is restored.
        self.trainer.callbacks.append(PredictionCatalogue(config["predict_new_items"], config["predict_allow"],
                                                          config["predict_exclude"]))
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
        best = getattr(ckpt, "best_model_path", "") if ckpt is not None else ""
        if best and self.trainer.is_global_zero:  # one process links (ranks racing on it could fail)
            link = link_best(Path(best), Path(self.trainer.default_root_dir))
            print(f"best checkpoint: {best} (also {link})")
        if not self.config[self.subcommand].get("test_after_fit", True):
            return
        # The best checkpoint by its path: "best" would make Lightning warn that of the two ModelCheckpoint
        # callbacks (best, last) it takes the first. verbose=False: TestReport prints the table.
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best or None, verbose=False)


class ConfigToLoggers(SaveConfigCallback):
    """Lightning's ``SaveConfigCallback`` (``config.yaml`` in the log folder) that also logs the same resolved
    config to every logger: trainer, model and data, as the command line names them (``model.lr``,
    ``data.batch_size``). The model's section holds its actual arguments, the values linked from the data
    (``num_items``, ...) included."""

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # seqrec predict without a logger writes its recommendations and nothing else: a config.yaml left in
        # the working folder (default_root_dir) would be litter.
        if stage == "predict" and not trainer.loggers:
            return
        super().setup(trainer, pl_module, stage)

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        hparams = {k: v for k, v in dict(getattr(pl_module, "hparams", {})).items() if not k.startswith("_")}
        config["model"] = {**(config.get("model") or {}), **hparams}
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


def follow_run_folder(loggers: Any, root: Path, fresh: Path) -> None:
    """Points the loggers at the run folder: a logger without a ``save_dir`` gets ``fresh``, the run's
    ``default_root_dir``, and one inside ``root`` moves with it when the run went to a fresh folder
    (``free_run_folder``). Checkpoints and ``config.yaml`` go where the first logger writes."""
    entries = loggers if isinstance(loggers, list) else [loggers]
    for entry in entries:
        if not isinstance(entry, Namespace) or entry.get("init_args") is None:
            continue  # True/False/None, or a logger built elsewhere
        args = entry["init_args"]
        if "save_dir" not in args:
            continue
        save_dir = args.get("save_dir")
        if save_dir is None:
            args["save_dir"] = str(fresh)
        elif fresh != root and _inside(Path(save_dir), root):
            args["save_dir"] = str(fresh / Path(save_dir).resolve().relative_to(root.resolve()))


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


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
    if args is not None and len(sys.argv) > 1:
        # LightningCLI warns of "both args and command line" whenever sys.argv holds anything: a script that
        # takes its own options (benchmarks.accuracy) and calls run(args) means args, so hide its argv.
        saved, sys.argv = sys.argv, sys.argv[:1]
        try:
            return run(args)
        finally:
            sys.argv = saved
    return SeqRecCLI(
        SeqRecModule,
        SeqRecDataModule,
        save_config_callback=ConfigToLoggers,
        save_config_kwargs={"overwrite": True},
        # One optimiser mechanism: the module's (model.optimizer, model.lr, model.lr_schedule, ...).
        # LightningCLI's --optimizer/--lr_scheduler would silently replace it while hparams kept the old values.
        auto_configure_optimizers=False,
        args=args,  # None: LightningCLI reads sys.argv itself (passing it too warns of "both args and argv")
    )
