"""Writing ``seqrec predict``'s recommendations as they are computed: parquet parts per process, joined at the end.

Memory holds one batch of inputs and at most ``rows_per_group`` rows of output, however many users: nothing is
collected for a final write (``SeqRecCLI`` also runs ``trainer.predict`` with ``return_predictions=False``).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

from seqrec.files import write_atomically

FILE_SUFFIXES = (".csv", ".parquet")


def part_name(rank: int) -> str:
    """The file one process writes its users' recommendations to."""
    return f"part-{rank:05d}.parquet"


class RecommendationWriter(BasePredictionWriter):
    """Streams the top-k of ``seqrec predict`` to parquet: user_id, rank, item_id, score (raw ids).

    Each process writes the recommendations of its own users (the data module gives each rank a contiguous
    block of them) to ``part-<rank>.parquet``, a row group every ``rows_per_group`` rows. A folder output keeps
    these parts: a parquet dataset that pyarrow, polars, pandas and DuckDB read as one table, the users in
    their original order across parts. A ``.csv`` or ``.parquet`` output is the parts joined in rank order by
    rank 0, streamed row group by row group, after which the parts are removed. With several machines the
    output must lie on a filesystem they share.

    Parameters
    ----------
    output : str
        A ``.csv`` or ``.parquet`` file, or a folder: an existing one or a name without a suffix. How many per
        user is the model's ``predict_k``.
    rows_per_group : int
        Rows held in memory before they are written out (one parquet row group).
    """

    def __init__(self, output: str, rows_per_group: int = 1 << 16):
        super().__init__(write_interval="batch")
        path = Path(output)
        if not (path.is_dir() or path.suffix == "" or path.suffix in FILE_SUFFIXES):
            raise ValueError(f"predict_output {output}: recommendations are written as .csv or .parquet, or into a "
                             f"folder (a name without a suffix), not {path.suffix!r}")
        if rows_per_group < 1:
            raise ValueError(f"rows_per_group must be positive, got {rows_per_group}")
        self.output = path
        self.to_folder = path.is_dir() or path.suffix == ""
        self.rows_per_group = rows_per_group
        self._reset()

    @property
    def parts(self) -> Path:
        """The folder of the per-process parts: the output itself, or ``<output>.parts`` beside a file."""
        return self.output if self.to_folder else self.output.with_name(self.output.name + ".parts")

    def _reset(self) -> None:
        self._buffer: list[dict[str, np.ndarray]] = []
        self._buffered = 0
        self._users = 0
        self._k = 0
        self._file: Any = None  # the open pyarrow ParquetWriter of this rank's part
        self._schema: Any = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # The predict loop warns on every run that it cannot tell the writer which dataset indices a batch
        # holds (it only can for a DataLoader with a batch sampler). Each batch names its users itself, so
        # nothing is missing: not worth a warning.
        warnings.filterwarnings("ignore", message="Couldn't infer the batch indices fetched from your dataloader")
        # Parts of an earlier run (of more processes) would join this one's. Rank 0 removes them here, and
        # Lightning waits for every rank after setup, before any rank writes.
        if trainer.is_global_zero:
            if self.to_folder:
                for old in self.parts.glob("part-*.parquet"):
                    old.unlink()
            elif self.parts.exists():
                shutil.rmtree(self.parts)

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._reset()

    def write_on_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, prediction: Any,
                           batch_indices: Sequence[int] | None, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        from seqrec.serve.recommend import recommendation_rows

        info = getattr(pl_module, "dataset", None)  # the data module's description, attached at setup
        if info is None:
            raise ValueError("predict needs the data module's dataset description (use SeqRecDataModule)")
        users = prediction["users"].cpu().numpy()
        items = prediction["items"].cpu().numpy()
        rows = recommendation_rows(info.raw_user_ids[users], info.raw_item_ids, items,
                                   prediction["scores"].float().cpu().numpy())
        if self._schema is None:
            self._schema = _schema(info.raw_user_ids, info.raw_item_ids)
        self._buffer.append(rows)
        self._buffered += rows["rank"].size
        self._users += users.size
        self._k = items.shape[1]
        if self._buffered >= self.rows_per_group:
            self._flush(trainer)

    def _flush(self, trainer: pl.Trainer) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self._file is None:
            self.parts.mkdir(parents=True, exist_ok=True)
            self._file = pq.ParquetWriter(self._partial(trainer), self._schema)
        if self._buffer:
            columns = {name: np.concatenate([b[name] for b in self._buffer]) for name in self._schema.names}
            self._file.write_table(pa.Table.from_pydict(
                {name: v.tolist() if v.dtype == object else v for name, v in columns.items()}, schema=self._schema))
        self._buffer, self._buffered = [], 0

    def _partial(self, trainer: pl.Trainer) -> Path:
        return self.parts / (part_name(trainer.global_rank) + ".partial")

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._schema is None:  # no batch at all: an empty part of the same columns
            info = pl_module.dataset
            self._schema = _schema(info.raw_user_ids, info.raw_item_ids)
        self._flush(trainer)
        self._file.close()
        self._file = None
        # Renamed into place only whole: a crashed run leaves no part that looks complete.
        self._partial(trainer).replace(self.parts / part_name(trainer.global_rank))
        # Summed over the ranks, which also waits until every rank's part is closed.
        users = int(trainer.strategy.reduce(torch.tensor(float(self._users), device=pl_module.device),
                                            reduce_op="sum").item())
        if not trainer.is_global_zero:
            return
        parts = [self.parts / part_name(rank) for rank in range(trainer.world_size)]
        if self.to_folder:
            where = f"{self.output} ({len(parts)} parquet part{'s' if len(parts) > 1 else ''})"
        else:
            join_parts(parts, self.output)
            shutil.rmtree(self.parts)
            where = str(self.output)
        print(f"wrote top-{self._k or pl_module.hparams.predict_k} recommendations of {users} users to {where}")


def _schema(raw_user_ids: np.ndarray, raw_item_ids: np.ndarray) -> Any:
    """The columns of every part: one schema, so that the parts of all ranks join into one table."""
    import pyarrow as pa

    def kind(ids: np.ndarray) -> Any:
        ids = np.asarray(ids)
        if ids.dtype != object:
            return pa.from_numpy_dtype(ids.dtype)
        return pa.array(ids[-1:].tolist()).type if ids.size else pa.string()  # raw ids of one kind: the last's

    return pa.schema([("user_id", kind(raw_user_ids)), ("rank", pa.int64()), ("item_id", kind(raw_item_ids)),
                      ("score", pa.float32())])


def join_parts(parts: Sequence[Path], output: Path) -> Path:
    """Joins parquet parts, in order, into one ``.csv`` or ``.parquet`` file, a row group at a time (never a
    whole part in memory); written beside ``output`` and renamed into place."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    schema = pq.read_schema(parts[0])

    def write(tmp: Path) -> None:
        sink = pq.ParquetWriter(tmp, schema) if output.suffix == ".parquet" else pacsv.CSVWriter(tmp, schema)
        with sink:
            for part in parts:
                source = pq.ParquetFile(part)
                for group in range(source.num_row_groups):
                    sink.write_table(source.read_row_group(group))

    return write_atomically(output, write)
