"""The LightningDataModule: loads and splits the data, builds training batches natively, prepares evaluation."""

from __future__ import annotations

import inspect
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from seqrec._core import LIMITS, BatchBuilder, SequenceStore
from seqrec.data.batches import (
    FixedBatches,
    TrainBatches,
    UserBatches,
    derive_seed,
    history_batches,
)
from seqrec.data.description import DatasetInfo
from seqrec.data.features import (
    NUM_TIME_BUCKETS,
    ItemAttributes,
    gather_prefix,
    time_gap_buckets,
)
from seqrec.data.interactions import Interactions
from seqrec.data.item_table import ItemFeatureTable, load_item_features
from seqrec.data.source import (
    SyntheticSpec,
    absolute_data_path,
    load_source,
    resolve_data_path,
)
from seqrec.data.split import LeaveOneOut, TimeSplit


class SeqRecDataModule(pl.LightningDataModule):
    """Leave-one-out data for next-item models.

    Parameters
    ----------
    path : str or None
        Interactions file; ``$SEQREC_DATA_DIR`` in it expands to that variable (default ``../shared/data``).
        None means the built-in synthetic dataset.
    format : str
        ``auto``, ``sasrec``, ``user_lines``, ``movielens``, ``csv``, ``parquet`` or ``prepared`` (a folder
        written by ``seqrec data prepare``; ``auto`` recognises one).
    columns : (str, str, str or None)
        CSV/parquet column names of the user, the item and the timestamp (None: keep file order).
    delimiter : str or None
        CSV/TSV field separator, one character (``\\t`` for a tab); None: a tab for ``.tsv``, a comma otherwise.
    synthetic : SyntheticSpec
        Synthetic dataset parameters, used when ``path`` is None.
    max_len : int
        Most recent items a model sees per sequence.
    batch_size : int
        Sequences per training batch (per process under DDP).
    eval_batch_size : int
        Users per evaluation and prediction batch.
    num_negatives : int
        Negatives per position for sampled losses (uniform or popularity ones in ``mixed`` mode).
    negatives : str
        ``uniform`` over the catalogue, ``popularity`` (training counts to the power ``popularity_alpha``),
        ``in_batch`` (other sequences' targets), ``mixed`` (``num_negatives`` uniform plus ``num_in_batch``
        in-batch ones), or ``none``. Each batch carries the log-probability of every sampled item for logQ.
    num_in_batch : int
        In-batch negatives per position in ``mixed`` mode.
    negative_pool : int
        With ``K > 0``, every position of a batch is scored against one shared pool instead of its own
        negatives: ``K`` items drawn by ``negatives`` (``uniform``: distinct, without replacement;
        ``popularity``: by count ** ``popularity_alpha``, duplicates merged), each with the log-probability
        that it is in the pool for logQ correction (loss ``sampled_softmax``). A pool item equal to a
        position's target is never its negative. K equal to (or above) the catalogue with uniform draws is the
        whole catalogue: exactly full CE.
    pool_in_batch : bool
        Join the batch's own targets to the pool (mixed negative sampling, Yang et al. 2020).
    pool_mask_history : bool
        Mask, for each row, the pool items in that user's training history.
    shared_negatives : bool
        Draw one set of negatives per sequence, shared by its positions, instead of one per position.
    exclude_seen : bool
        Uniform and popularity negatives avoid everything the user interacted with in training.
    popularity_alpha : float
        Smoothing exponent of popularity sampling (0 is uniform, 1 is proportional to counts).
    length_bucketing : bool
        Group sequences of similar length into a batch and pad each batch only to its longest sequence
        (False pads every batch to ``max_len``, as the original SASRec).
    batch_tokens : int or None
        With length bucketing, a batch holds as many sequences as fit in this many padded positions, so
        every step trains on about as many targets (None: ``batch_size`` times the mean targets per
        sequence, which keeps the steps per epoch of fixed batches; 0: always ``batch_size`` sequences).
    window_stride : int
        With ``w > 0``, a history longer than ``max_len`` also trains as windows ending every ``w`` items
        back from its end (``w <= max_len`` covers every transition); 0 keeps only the most recent window.
    prefetch : int
        Batches the engine builds ahead of the model.
    task : str
        Batches for ``sasrec`` (next item) or ``bert4rec`` (cloze); the CLI sets it from the model.
    mask_prob : float
        BERT4Rec: probability that a position is masked (at least one per sequence is).
    sampled_eval : str
        Also compute the sampled protocol: ``none``, ``uniform`` or ``popularity`` candidates.
    num_sampled : int
        Negatives per user in the sampled protocol (papers use 100).
    item_features : str or None
        Item features keyed by raw item id (``seqrec.data.item_table.load_item_features``): a CSV or parquet
        with one row per item and typed columns (string: categorical, ``|`` between several values; number:
        numeric, normalised with statistics kept in the checkpoint; list of floats: a precomputed vector), or
        the attribute layouts (``{"item": [attributes]}`` JSON, rows of ``item_id, attribute``). Items
        without a row are allowed (the summary counts them). ``$SEQREC_DATA_DIR`` expands as in ``path``.
    cold_items : float
        The cold-start protocol: this fraction of the catalogue (seeded by ``seed``) is withheld from
        training entirely: their interactions leave the training sequences, while they stay validation and
        test targets and inputs of the histories evaluated. Validation and test then also report every metric
        on ``warm/`` and ``cold/`` targets apart. A model scores cold items from their features
        (``model.feature_sides both``); their ID embeddings are never trained, and no training loss draws
        them as negatives (as new listings, they do not exist yet while the model trains).
    withhold_cold : bool
        False: the ``cold_items`` are chosen and reported apart as usual but stay in training, which gives
        the reference a cold-start result is compared with (the same targets, trained with their IDs).
    timestamps : str or None
        For text formats without times: a ``user t1 t2 ...`` file aligned with a one-user-per-line file.
    time_features : bool
        Feed SASRec the bucketed time gap since the user's previous interaction (needs timestamps).
    split : str
        ``leave_one_out`` (each user's last item is the test target, the one before validation) or ``time``:
        a global time split at ``split_times`` (needs timestamps).
    split_times : (float, float)
        Validation and test cut-offs of the time split: unix times, or quantiles of all interaction times
        when both lie in [0, 1]. Training uses what happened before the first; users active on both sides of
        a cut-off are evaluated on their first interaction after it.
    predict_users : str or None
        ``seqrec predict``: a text file of raw user ids, one per line, to recommend for (None: every user).
        Their whole history is the input, and what they saw is excluded.
    seed : int
        Fixes data order and sampling.
    """

    def __init__(
        self,
        path: str | None = None,
        format: Literal["auto", "sasrec", "user_lines", "movielens", "csv", "parquet", "prepared"] = "auto",
        columns: tuple[str, str, str | None] = ("user_id", "item_id", "timestamp"),
        delimiter: str | None = None,
        synthetic: SyntheticSpec = SyntheticSpec(),
        max_len: int = 50,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_negatives: int = 1,
        negatives: Literal["uniform", "popularity", "in_batch", "mixed", "none"] = "uniform",
        num_in_batch: int = 0,
        negative_pool: int = 0,
        pool_in_batch: bool = False,
        pool_mask_history: bool = False,
        shared_negatives: bool = False,
        exclude_seen: bool = True,
        popularity_alpha: float = 1.0,
        length_bucketing: bool = True,
        batch_tokens: int | None = None,
        window_stride: int = 0,
        prefetch: int = 8,
        task: Literal["sasrec", "bert4rec"] = "sasrec",
        mask_prob: float = 0.2,
        sampled_eval: Literal["none", "uniform", "popularity"] = "none",
        num_sampled: int = 100,
        item_features: str | None = None,
        cold_items: float = 0.0,
        withhold_cold: bool = True,
        timestamps: str | None = None,
        time_features: bool = False,
        predict_users: str | None = None,
        split: Literal["leave_one_out", "time"] = "leave_one_out",
        split_times: tuple[float, float] = (0.9, 0.95),
        seed: int = 42,
    ):
        super().__init__()
        for name, value in (("max_len", max_len), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                            ("num_sampled", num_sampled), ("prefetch", prefetch)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if batch_tokens is not None and batch_tokens < 0:
            raise ValueError(f"batch_tokens must be >= 0 or None, got {batch_tokens}")
        for name, value in (("num_negatives", num_negatives), ("num_in_batch", num_in_batch),
                            ("window_stride", window_stride), ("negative_pool", negative_pool)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        # The engine checks every size it is given, under its own argument names; these two reach it renamed.
        for name, value, limit in (("num_sampled", num_sampled, LIMITS["num_negatives"]),
                                   ("batch_tokens", batch_tokens or 0, LIMITS["batch_cells"])):
            if value > limit:
                raise ValueError(f"data.{name}: {value} is above the limit of {limit}")
        self.path = path
        self.format = format
        self.columns = tuple(columns)
        self.delimiter = delimiter
        self.synthetic = synthetic
        self.max_len = max_len
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_negatives = num_negatives
        self.negatives = negatives
        self.num_in_batch = num_in_batch
        self.negative_pool = negative_pool
        self.pool_in_batch = pool_in_batch
        self.pool_mask_history = pool_mask_history
        if (negative_pool or pool_in_batch) and negatives not in ("uniform", "popularity"):
            raise ValueError(f"data.negative_pool draws 'uniform' or 'popularity' negatives, got negatives={negatives!r}")
        self.shared_negatives = shared_negatives
        self.exclude_seen = exclude_seen
        self.popularity_alpha = popularity_alpha
        self.length_bucketing = length_bucketing
        self.batch_tokens = batch_tokens
        self.window_stride = window_stride
        self.prefetch = prefetch
        self.sampled_eval = sampled_eval
        self.num_sampled = num_sampled
        self.seed = seed
        self.task = task
        self.mask_prob = mask_prob
        self.item_features = item_features
        if not 0.0 <= cold_items < 1.0:
            raise ValueError(f"data.cold_items is a fraction of the catalogue in [0, 1), got {cold_items}")
        if cold_items and time_features:
            raise ValueError("data.cold_items with data.time_features is not supported: training sequences "
                             "without the cold items no longer line up with the interactions' times")
        self.cold_items = cold_items
        self.withhold_cold = withhold_cold
        self.timestamps = timestamps
        self.time_features = time_features
        self.predict_users = predict_users
        self.interactions = self._load()
        self.attributes: ItemAttributes | None = None
        self.feature_table: ItemFeatureTable | None = None
        if item_features is not None:
            self.feature_table = load_item_features(resolve_data_path(item_features),
                                                    self.interactions.raw_item_ids)
            if self.feature_table.num_attributes:
                self.attributes = self.feature_table.as_item_attributes()
        self._time_buckets: np.ndarray | None = None
        if time_features:
            if task != "sasrec":
                raise ValueError("time_features are for SASRec batches (task 'sasrec')")
            self._time_buckets = time_gap_buckets(self.interactions)
        if split not in ("leave_one_out", "time"):
            raise ValueError(f"split must be 'leave_one_out' or 'time', got {split!r}")
        self.split_name = split
        self.split_times = tuple(split_times)
        self.split: LeaveOneOut | TimeSplit = (
            LeaveOneOut.from_interactions(self.interactions) if split == "leave_one_out"
            else TimeSplit.from_interactions(self.interactions, *self.split_times)
        )
        self.cold: np.ndarray = self._choose_cold_items()
        self._eval_batches: dict[str, list[dict[str, torch.Tensor]]] = {}
        self._info: DatasetInfo | None = None
        self._builder: BatchBuilder | None = None
        self.train_batches: TrainBatches | None = None

    def _load(self) -> Interactions:
        return load_source(self.source())

    def _choose_cold_items(self) -> np.ndarray:
        """Dense ids withheld from training (``cold_items``), sorted; the same for a seed and a catalogue."""
        n = int(round(self.cold_items * self.num_items))
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rng = np.random.default_rng(derive_seed(self.seed, 3))
        return np.sort(rng.choice(np.arange(1, self.num_items + 1), size=n, replace=False)).astype(np.int64)

    def training_sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (offsets, items) the model trains on: the split's training part, without the cold items."""
        offsets, items = self.split.train_offsets, self.split.train_items
        if self.cold.size == 0 or not self.withhold_cold:
            return offsets, items
        keep = ~np.isin(items, self.cold)
        users = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
        kept = np.zeros_like(offsets)
        np.cumsum(np.bincount(users[keep], minlength=offsets.size - 1), out=kept[1:])
        return kept, items[keep]

    def train_item_counts(self) -> np.ndarray:
        """Training interactions per item, (num_items + 1,): the popularity baseline's scores (0 when cold)."""
        items = self.training_sequences()[1]
        return np.bincount(items, minlength=self.num_items + 1).astype(np.int64)

    @property
    def num_items(self) -> int:
        return self.interactions.num_items

    def source(self) -> dict[str, Any]:
        """What reloads the same interactions (kept in checkpoints so recommendations can find histories).

        Paths are expanded and absolute, as resolved now: a checkpoint then finds its data from any working
        directory, and a file moved since says so by name.
        """
        return {
            "path": absolute_data_path(self.path),
            "format": self.format,
            "columns": list(self.columns),
            "delimiter": self.delimiter,
            "synthetic": asdict(self.synthetic),
            "timestamps": absolute_data_path(self.timestamps),
        }

    # Arguments a checkpoint does not keep: the users to predict for are chosen at predict time, and the task
    # follows model.architecture (the CLI links it).
    NOT_STORED = ("predict_users", "task")

    def hyperparameters(self) -> dict[str, Any]:
        """The arguments of this data module (paths absolute, plain types), except ``NOT_STORED``: what a
        checkpoint keeps, so that ``seqrec test|predict --ckpt_path`` alone builds the same data module."""
        out: dict[str, Any] = {}
        for name in inspect.signature(SeqRecDataModule.__init__).parameters:
            if name == "self" or name in self.NOT_STORED:
                continue
            value = getattr(self, "split_name" if name == "split" else name)
            if name in ("path", "timestamps", "item_features"):
                value = absolute_data_path(value)
            elif name == "synthetic":
                value = asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @property
    def num_attributes(self) -> int:
        """Distinct item attributes (0 without ``item_features``); linked to the model by the CLI."""
        return 0 if self.attributes is None else self.attributes.num_attributes

    @property
    def max_attributes(self) -> int:
        return 0 if self.attributes is None else self.attributes.max_attributes

    @property
    def num_numeric(self) -> int:
        """Numeric item features (0 without them); linked to the model by the CLI."""
        return 0 if self.feature_table is None else self.feature_table.num_numeric

    @property
    def vector_dim(self) -> int:
        """Width of the precomputed item vectors (0 without them); linked to the model by the CLI."""
        return 0 if self.feature_table is None else self.feature_table.vector_dim

    @property
    def num_time_buckets(self) -> int:
        return NUM_TIME_BUCKETS if self.time_features else 0

    def time_inputs(
        self, users: np.ndarray, ends: np.ndarray, inputs: np.ndarray, shift: int
    ) -> np.ndarray:
        """(B, W) time-gap buckets aligned with left-padded ``inputs`` (see ``features.gather_prefix``)."""
        assert self._time_buckets is not None
        return gather_prefix(self._time_buckets, self.interactions.offsets, users, ends, inputs.shape[1], shift, inputs)

    def _train_extra(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Next-item inputs stop one interaction before the segment's end (that one is the last target).
        return {"time_inputs": self.time_inputs(batch["users"], batch["ends"], batch["inputs"], shift=1)}

    @property
    def dataset_name(self) -> str:
        return "synthetic" if self.path is None else Path(self.path).name

    @property
    def info(self) -> DatasetInfo:
        """The frozen description of this dataset that the model receives (built once)."""
        if self._info is None:
            self._info = DatasetInfo(
                name=self.dataset_name,
                split=self.split_name,
                num_items=self.num_items,
                raw_item_ids=self.interactions.raw_item_ids,
                raw_user_ids=self.interactions.raw_user_ids,
                source=self.source(),
                train_item_counts=self.train_item_counts(),
                attributes=None if self.attributes is None else self.attributes.table,
                sampled_eval=self.sampled_eval,
                num_sampled=self.num_sampled,
                hyperparameters=self.hyperparameters(),
                extra=self._info_extra(),
            )
        return self._info

    def _info_extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.cold.size and self.withhold_cold:
            extra["cold_items"] = self.cold.tolist()  # IDs never trained: the model scores them from features
        if self.feature_table is not None:
            extra["item_features"] = self.feature_table.to_state()  # vocab and statistics for new items
        return extra

    def item_popularity(self) -> torch.Tensor:
        """Training interactions per item, (num_items + 1,): the popularity baseline's scores."""
        return torch.from_numpy(self.train_item_counts())

    def stats(self) -> dict[str, Any]:
        out = self.split.stats()
        if self.feature_table is not None:
            f = self.feature_table.summary()
            out.update(items_with_features=f["items_with_features"], items_without_features=f["items_without_features"],
                       feature_rows_not_in_catalogue=f["unknown_items"])
        if self.cold.size:
            out["cold_items"] = int(self.cold.size)
        return out

    # training -------------------------------------------------------------------------------------------

    def batch_builder(self) -> BatchBuilder:
        """The native builder of training batches over the training split (built once)."""
        if self._builder is None:
            store = SequenceStore(*self.training_sequences(), self.num_items)
            self._builder = BatchBuilder(
                store,
                self.max_len,
                task=self.task,
                negatives=self.negatives,
                num_negatives=self.num_negatives,
                num_in_batch=self.num_in_batch,
                shared_negatives=self.shared_negatives,
                exclude_seen=self.exclude_seen,
                alpha=self.popularity_alpha,
                pad_to_max=not self.length_bucketing,
                mask_prob=self.mask_prob,
                pool_size=self.negative_pool,
                pool_in_batch=self.pool_in_batch,
                pool_mask_history=self.pool_mask_history,
            )
        return self._builder

    def train_dataloader(self) -> DataLoader:
        builder = self.batch_builder()
        rank, world = self._rank_world()
        all_users = np.arange(self.interactions.num_users, dtype=np.int64)
        users, ends = builder.segments(all_users, self.window_stride)
        max_tokens = self.batch_tokens
        if max_tokens is None:
            filled = np.minimum(ends - 1 if self.task == "sasrec" else ends, self.max_len)
            max_tokens = int(round(self.batch_size * filled.mean())) if self.length_bucketing and filled.size else 0
        dataset = self.train_batches = TrainBatches(
            builder, users, ends, self.batch_size, self.seed, self._epoch, self.length_bucketing, self.prefetch,
            max_tokens=max(max_tokens, 0), extra=self._train_extra if self.time_features else None, rank=rank, world=world,
        )
        return DataLoader(dataset, batch_size=None, num_workers=0)

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    # evaluation -----------------------------------------------------------------------------------------

    def eval_batches(self, stage: str) -> list[dict[str, torch.Tensor]]:
        """Fixed evaluation batches of ``stage`` ("val" or "test"), built once and cached.

        Each holds the users, their left-padded history (inputs), the target, the (row, item) pairs of
        everything they saw before the target (excluded from full ranking), and for the sampled protocol
        the candidate negatives, drawn once from items the user never interacted with (seeded).
        """
        if stage in self._eval_batches:
            return self._eval_batches[stage]
        split = self.split
        offsets, items = split.history(stage)
        rank, world = self._rank_world()
        # Data-parallel: each rank evaluates every world-th user, so each user counts exactly once when the
        # module sums the ranks' metric totals.
        users = split.users(stage)[rank::world]
        targets = split.targets(stage)[rank::world]
        candidates = self._sampled_candidates(stage, split.users(stage))
        if candidates is not None:
            candidates = candidates[rank::world]
        batches = history_batches(offsets, items, users, self.max_len, self.eval_batch_size, self._time_buckets,
                                  self.interactions.offsets)
        for start, batch in zip(range(0, users.size, self.eval_batch_size), batches):
            sl = slice(start, start + self.eval_batch_size)
            batch["targets"] = torch.from_numpy(targets[sl])
            if self.cold.size:
                batch["cold_targets"] = torch.from_numpy(np.isin(targets[sl], self.cold))
            if candidates is not None:
                batch["candidates"] = torch.from_numpy(candidates[sl])
        self._eval_batches[stage] = batches
        return batches

    def _sampled_candidates(self, stage: str, users: np.ndarray) -> np.ndarray | None:
        if self.sampled_eval == "none":
            return None
        full = self.interactions
        seed = derive_seed(self.seed, 1 if stage == "val" else 2)
        store = SequenceStore(full.offsets, full.items, full.num_items)
        if self.sampled_eval == "uniform":
            return store.uniform_negatives(users, self.num_sampled, seed)
        # Popularity over the whole dataset, as in the BERT4Rec paper's protocol.
        return store.popularity_negatives(users, self.num_sampled, seed)

    # Evaluation and prediction batches go to Lightning as they are, without a DataLoader: they are built
    # already (nothing to collate, no worker to run), and Lightning adds no sampler to a plain iterable.
    def val_dataloader(self) -> FixedBatches:
        return FixedBatches(self.eval_batches("val"))

    def users_to_predict(self) -> np.ndarray:
        """Dense indices of the users in ``predict_users`` (every user when None)."""
        data = self.interactions
        if self.predict_users is None:
            return np.arange(data.num_users, dtype=np.int64)
        path = Path(self.predict_users)
        index = {str(raw): u for u, raw in enumerate(data.raw_user_ids.tolist())}
        users = []
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            raw = line.strip()
            if not raw:
                continue
            if raw not in index:
                raise ValueError(f"{path}:{lineno}: unknown user {raw!r} (not in {data.source})")
            users.append(index[raw])
        if not users:
            raise ValueError(f"{path}: no user ids")
        return np.asarray(users, dtype=np.int64)

    def predict_users_of_rank(self) -> np.ndarray:
        """This process's share of ``users_to_predict``: a contiguous block, so that the ranks' outputs joined
        in rank order are the users in their original order (``seqrec.serve.predictions`` joins them)."""
        users = self.users_to_predict()
        rank, world = self._rank_world()
        if users.size < world:
            raise ValueError(f"predict: {users.size} users for {world} processes; every process needs one "
                             f"(use fewer --trainer.devices)")
        return np.array_split(users, world)[rank]

    def predict_dataloader(self) -> UserBatches:
        data = self.interactions

        def build(users: np.ndarray) -> dict[str, torch.Tensor]:
            return history_batches(data.offsets, data.items, users, self.max_len, users.size, self._time_buckets)[0]

        # Built batch by batch as the predict loop asks for them: only one batch of inputs is held at a time,
        # however many users.
        return UserBatches(self.predict_users_of_rank(), self.eval_batch_size, build)

    def test_dataloader(self) -> FixedBatches:
        return FixedBatches(self.eval_batches("test"))
