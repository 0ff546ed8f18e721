"""Experiment tracking: CSV logs and Weights & Biases (offline by default, so a run needs no account and no
network), both in the run folder unless told otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pytorch_lightning.loggers import CSVLogger as _LightningCSVLogger
from pytorch_lightning.loggers import WandbLogger as _LightningWandbLogger

MODES = ("offline", "online", "disabled")


def resolve_mode(mode: str) -> str:
    """``WANDB_MODE`` in the environment wins over the configured mode (``online`` to upload as it runs,
    ``disabled`` to turn tracking off); ``dryrun`` is W&B's old name for offline."""
    chosen = os.environ.get("WANDB_MODE", mode)
    chosen = "offline" if chosen == "dryrun" else chosen
    if chosen not in MODES:
        raise ValueError(f"W&B mode must be one of {MODES}, got {chosen!r} (from WANDB_MODE or the config)")
    return chosen


class CSVLogger(_LightningCSVLogger):
    """Lightning's ``CSVLogger`` whose ``save_dir`` may be left out: ``metrics.csv`` and ``hparams.yaml`` then
    go to the run folder (Lightning's own requires one, so a config would have to repeat the run folder).

    Parameters
    ----------
    save_dir : str or None
        Folder above ``name/version_N``. None: the run folder, ``trainer.default_root_dir`` (``seqrec`` fills
        it in before the logger is built; elsewhere None is the current folder).
    name : str
        Sub-folder of ``save_dir`` holding the ``version_N`` folders.
    **kwargs
        Passed on to Lightning's ``CSVLogger`` (``version``, ``prefix``, ``flush_logs_every_n_steps``).
    """

    def __init__(self, save_dir: str | None = None, name: str = "lightning_logs", **kwargs: Any):
        super().__init__(save_dir="." if save_dir is None else save_dir, name=name, **kwargs)


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` with seqrec's defaults.

    Parameters
    ----------
    mode : str
        ``offline`` (default: runs land under ``save_dir/wandb`` and ``wandb sync`` uploads them later),
        ``online`` or ``disabled``; the ``WANDB_MODE`` environment variable overrides it.
    project : str
        The W&B project the run is filed in.
    name : str or None
        The run's display name (None: W&B picks one).
    save_dir : str or None
        Folder of the run's local files (``save_dir/wandb``). None: the run folder, ``trainer.default_root_dir``
        (``seqrec`` fills it in before the logger is built; elsewhere None is the current folder).
    log_model : bool
        Upload the best checkpoint as an artifact at the end of training.
    **kwargs
        Passed on to Lightning's ``WandbLogger`` (and from there to ``wandb.init``).
    """

    def __init__(
        self,
        mode: Literal["offline", "online", "disabled"] = "offline",
        project: str = "seqrec",
        name: str | None = None,
        save_dir: str | None = None,
        log_model: bool = True,
        **kwargs: Any,
    ):
        resolved = resolve_mode(mode)
        # Absolute: W&B's service process, which writes the run, may have started in another folder.
        save_dir = str(Path("." if save_dir is None else save_dir).resolve())
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        # Lightning refuses log_model offline; we log the best checkpoint ourselves at the end (finalize),
        # which W&B keeps with the offline run and uploads on `wandb sync`.
        super().__init__(
            name=name,
            save_dir=save_dir,
            project=project,
            offline=resolved == "offline",
            log_model=log_model and resolved == "online",
            mode=resolved,
            **kwargs,
        )
        # Lightning always hands wandb.init an `anonymous` entry (None when unset), and W&B warns on every run
        # that the setting has no effect: leave it out.
        self._wandb_init.pop("anonymous", None)
        self.mode = resolved
        self._log_best_offline = log_model and resolved == "offline"
        self._best_path: str | None = None

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        super().after_save_checkpoint(checkpoint_callback)
        self._best_path = getattr(checkpoint_callback, "best_model_path", None) or self._best_path

    def finalize(self, status: str) -> None:
        if self._log_best_offline and self._best_path and Path(self._best_path).exists() and status == "success":
            import wandb

            artifact = wandb.Artifact(name=f"model-{self.experiment.id}", type="model")
            artifact.add_file(self._best_path, name="best.ckpt")
            self.experiment.log_artifact(artifact, aliases=["best"])
            self._log_best_offline = False
        super().finalize(status)


def read_offline_run(run_dir: str | Path, wait_seconds: float = 0.0) -> dict[str, Any]:
    """Reads what an offline W&B run recorded, without network or account: ``config`` (dict), ``history``
    (list of logged rows), ``summary`` (dict), ``tables`` (keys logged as tables), ``artifacts`` (names)
    and ``finished`` (whether the run's exit record is there).

    W&B's service writes the file in the background, also for a moment after ``wandb.finish()`` returns:
    ``wait_seconds`` re-reads until the exit record is there or that much time has passed.

    The ``run-*.wandb`` file is a LevelDB-style log (32 KiB blocks of checksummed chunks) of protobuf
    records; W&B itself reads it only from its Go core, so this is the Python reader tests and plots use.
    """
    import time

    deadline = time.monotonic() + wait_seconds
    while True:
        out = _read_run_file(Path(run_dir))
        if out["finished"] or time.monotonic() >= deadline:
            return out
        time.sleep(0.2)


def _read_run_file(run_dir: Path) -> dict[str, Any]:
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file (is this a W&B run folder?)")
    data = files[0].read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{files[0]}: not a W&B run file")
    out: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "tables": [], "artifacts": [], "finished": False}
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 2):  # full record, or the first chunk of one
            pending = chunk
        elif kind in (3, 4):
            pending += chunk
        if kind not in (1, 4):
            continue
        record = pb.Record()
        record.ParseFromString(pending)
        which = record.WhichOneof("record_type")
        if which == "config":
            for item in record.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif which == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, item.key, list(item.nested_key), json.loads(item.value_json))
            out["history"].append(row)
            out["tables"] += [k for k, v in row.items() if isinstance(v, dict) and v.get("_type") == "table-file"]
        elif which == "summary":
            for item in record.summary.update:
                _put(out["summary"], item.key, list(item.nested_key), json.loads(item.value_json))
        elif which == "artifact":
            out["artifacts"].append(record.artifact.name)
        elif which == "exit":
            out["finished"] = True
    return out


def _put(target: dict[str, Any], key: str, nested: list[str], value: Any) -> None:
    """Stores a W&B item: a plain key, or a nested one (["test/table", "_type"]) as a dict under its parent."""
    if key or not nested:
        target[key] = value
        return
    parent = "/".join(nested[:-1])
    if not parent:
        target[nested[-1]] = value
        return
    slot = target.setdefault(parent, {})
    if isinstance(slot, dict):
        slot[nested[-1]] = value
