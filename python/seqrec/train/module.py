"""The LightningModule: losses, evaluation protocols and optimiser around a sequence encoder."""

from __future__ import annotations

import math
from typing import Any, Callable, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn

from seqrec.data.description import DatasetInfo, catalogue_from_checkpoint
from seqrec.evaluate.cold_baselines import feature_matrix, feature_popularity, recent_item_knn
from seqrec.evaluate.ranking import batch_metrics, chunked_batch_metrics, masked_top_k
from seqrec.evaluate.totals import MetricTotals
from seqrec.models import BERT4Rec, ModelConfig, SASRec
from seqrec.train.losses import (
    bce_sampled,
    chunked_cross_entropy,
    full_cross_entropy,
    gbce,
    pool_softmax,
    sampled_softmax,
)
from seqrec.train.optim import LazyAdam

SAMPLED_LOSSES = ("bce", "sampled_softmax", "gbce")
LOSSES = (*SAMPLED_LOSSES, "ce")
# Baselines whose scores never change: validation computes them once and reuses them every epoch.
BASELINE_PREFIXES = ("popularity/", "feature_popularity/", "feature_knn/")


class SeqRecModule(pl.LightningModule):
    """A SASRec or BERT4Rec model, its loss and optimiser, evaluated by full ranking (and optionally sampled).

    Parameters
    ----------
    architecture : str
        ``sasrec`` (causal, next item) or ``bert4rec`` (bidirectional, cloze); the CLI passes it on to the
        data module, whose engine builds the matching batches.
    num_items : int
        Catalogue size; linked from the data module by the CLI.
    max_len : int
        Longest input sequence; linked from the data module.
    hidden_size : int
        Embedding and transformer width.
    num_blocks : int
        Transformer blocks.
    num_heads : int
        Attention heads (``hidden_size`` must divide by it).
    dropout : float
        Dropout in the blocks (attention and feed-forward) and, unless ``embedding_dropout``, on the embeddings.
    norm_first : bool
        Pre-LN blocks (True) or the original post-LN blocks (False).
    block : str
        ``transformer``: SASRec's / BERT4Rec's block (``norm_first`` picks pre- or post-LN); ``ligr``: eSASRec's
        LiGR layer (pre-norm, sigmoid-gated residual branches, SwiGLU feed-forward; needs ``norm_first``).
    ffn_mult : int
        Feed-forward width as a multiple of ``hidden_size``; 0: the architecture's own (SASRec 1, BERT4Rec 4,
        LiGR 4).
    embedding_dropout : float or None
        Dropout on the input embeddings; None: the same as ``dropout``.
    separate_output : bool
        Score with an output item table of its own (gSASRec) instead of the input embeddings.
    loss : str
        ``bce``: binary cross-entropy with the batch's sampled negatives (the SASRec paper);
        ``sampled_softmax``: softmax over the positive and its negatives, with logQ correction;
        ``gbce``: gSASRec's generalised BCE with calibration ``gbce_t``;
        ``ce``: softmax cross-entropy over the whole catalogue.
    gbce_t : float
        gBCE calibration in [0, 1] (0 is plain BCE).
    logq_correction : bool
        Subtract the sampler's log-probabilities in ``sampled_softmax``.
    optimizer : str
        ``adam`` or ``adamw``.
    lr : float
        Learning rate (the peak one with ``warmup_steps`` or a decaying ``lr_schedule``).
    weight_decay : float
        L2 penalty (``adam``) or decoupled weight decay (``adamw``).
    betas : (float, float)
        Adam's moment decay rates.
    weight_decay_scope : str
        ``all``: decay every parameter; ``matrices``: only the weight matrices of linear layers, never the item
        and position embeddings, norms or biases (what BERT and most published SASRec code do).
    warmup_steps : int
        Steps of linear learning-rate warmup from 0 (0: none).
    lr_schedule : str
        After warmup: ``constant``, or ``linear`` / ``cosine`` decay to 0 over ``lr_decay_steps``.
    lr_decay_steps : int
        Length of the decay in optimiser steps, warmup included; 0: the trainer's estimate of the whole
        run (needs ``trainer.max_steps``, or ``max_epochs`` with a known epoch length).
    ks : list of int
        Cut-offs of HR@k, NDCG@k and MRR@k.
    exclude_seen : bool
        Exclude items the user already interacted with from the full ranking (the usual protocol).
    num_attributes : int
        Distinct item attributes, embedded as extra inputs (mean of the item's attribute embeddings); linked
        from the data module's ``item_features`` by the CLI (0: none).
    max_attributes : int
        Most attributes of one item (the width of the attribute table); linked from the data module.
    feature_sides : str
        ``both``: every item is ``ItemEncoder``'s vector, its ID embedding plus a sum of projections of its
        features, on the input and the scoring side, so items never trained on are scored from features
        (cold-start split, new items); ``input``: the attributes' mean embedding is only added to the input.
    id_dropout : float
        With ``feature_sides both``: training-time probability that an item occurrence drops its ID
        embedding and uses its features alone (so the feature path learns to stand alone).
    unknown_id : str
        With ``feature_sides both``: what stands in for the ID embedding of an item without one (never
        trained, added at inference, or dropped by ``id_dropout``): ``zero``, or ``learned``, one vector shared
        by all such items, so that they are placed among the known items rather than below them.
    feature_loss : float
        With ``feature_sides both``: weight of a second training loss in which the targets and negatives are
        scored from their features alone (as items never trained on are), added to the main loss; 0: none.
    new_item_boost : float
        With ``feature_sides both``: added at inference (evaluation, recommendations, export) to the score of
        every item without a trained ID, withheld by the cold-start split or added later; how much exposure
        new items get among the known ones. ``seqrec.evaluate.boost`` reads the trade-off off validation.
    num_numeric : int
        Numeric features per item (``data.item_features``); linked from the data module.
    vector_dim : int
        Width of the precomputed item vectors (``data.item_features``); linked from the data module.
    num_time_buckets : int
        Time-gap buckets as an extra input embedding (SASRec only); linked from ``data.time_features``.
    eval_chunk : int
        Catalogues of more items than this are ranked in chunks of this many items at evaluation, so memory
        stays at eval_batch_size x eval_chunk scores however large the catalogue.
    ce_chunk : int
        ``ce`` over catalogues of more items than this is computed this many items at a time (a chunked
        softmax whose backward recomputes each chunk), so no (targets x catalogue) tensor is ever held.
    predict_k : int
        Recommendations per user in ``predict`` (``seqrec predict --predict_k K`` sets it).
    sparse_embeddings : bool
        Item tables get row-sparse gradients and the optimiser (``seqrec.train.optim.LazyAdam``) updates only the
        rows a batch touched: a step then costs the batch's items, not the catalogue. For sampled losses
        (with a full softmax every row is touched each step, so it is refused there).
    """

    def __init__(
        self,
        architecture: Literal["sasrec", "bert4rec"] = "sasrec",
        num_items: int = 0,
        max_len: int = 50,
        hidden_size: int = 64,
        num_blocks: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        norm_first: bool = True,
        block: Literal["transformer", "ligr"] = "transformer",
        ffn_mult: int = 0,
        embedding_dropout: float | None = None,
        separate_output: bool = False,
        loss: Literal["bce", "sampled_softmax", "gbce", "ce"] = "ce",
        gbce_t: float = 0.75,
        logq_correction: bool = True,
        optimizer: Literal["adam", "adamw"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
        weight_decay_scope: Literal["all", "matrices"] = "all",
        warmup_steps: int = 0,
        lr_schedule: Literal["constant", "linear", "cosine"] = "constant",
        lr_decay_steps: int = 0,
        ks: list[int] = [10],  # noqa: B006 (jsonargparse needs a literal default)
        exclude_seen: bool = True,
        num_attributes: int = 0,
        max_attributes: int = 0,
        feature_sides: Literal["input", "both"] = "input",
        id_dropout: float = 0.0,
        unknown_id: Literal["zero", "learned"] = "zero",
        feature_loss: float = 0.0,
        new_item_boost: float = 0.0,
        num_numeric: int = 0,
        vector_dim: int = 0,
        num_time_buckets: int = 0,
        eval_chunk: int = 262_144,
        ce_chunk: int = 65_536,
        sparse_embeddings: bool = False,
        predict_k: int = 10,
    ):
        super().__init__()
        self.save_hyperparameters()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if architecture not in ("sasrec", "bert4rec"):
            raise ValueError(f"architecture must be 'sasrec' or 'bert4rec', got {architecture!r}")
        if num_time_buckets and architecture == "bert4rec":
            raise ValueError("time features are for SASRec: BERT4Rec's appended mask has no time to embed")
        if eval_chunk < 1 or ce_chunk < 1:
            raise ValueError(f"eval_chunk and ce_chunk must be positive, got {eval_chunk} and {ce_chunk}")
        if sparse_embeddings and loss == "ce":
            raise ValueError("sparse_embeddings: the full softmax (loss 'ce') touches every item row each step, "
                             "so sparse updates only add cost; use a sampled loss (sampled_softmax with "
                             "data.negative_pool) or turn sparse_embeddings off")
        if predict_k < 1:
            raise ValueError(f"predict_k must be positive, got {predict_k}")
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {ks}")
        if weight_decay_scope not in ("all", "matrices"):
            raise ValueError(f"weight_decay_scope must be 'all' or 'matrices', got {weight_decay_scope!r}")
        if lr_schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant', 'linear' or 'cosine', got {lr_schedule!r}")
        if warmup_steps < 0 or lr_decay_steps < 0 or ffn_mult < 0:
            raise ValueError(f"warmup_steps, lr_decay_steps and ffn_mult must be >= 0, got {warmup_steps}, "
                             f"{lr_decay_steps} and {ffn_mult}")
        if feature_loss < 0 or (feature_loss and feature_sides != "both"):
            raise ValueError(f"model.feature_loss {feature_loss}: must be >= 0, and > 0 needs model.feature_sides "
                             "both (the item encoder scores items from their features)")
        if new_item_boost and feature_sides != "both":
            raise ValueError(f"model.new_item_boost {new_item_boost}: lifts items scored from their features, which "
                             "needs model.feature_sides both")
        if embedding_dropout is not None and not 0 <= embedding_dropout < 1:
            raise ValueError(f"embedding_dropout must lie in [0, 1), got {embedding_dropout}")
        config = ModelConfig(
            num_items=num_items,
            max_len=max_len,
            hidden_size=hidden_size,
            num_blocks=num_blocks,
            num_heads=num_heads,
            dropout=dropout,
            norm_first=norm_first,
            block=block,
            ffn_mult=ffn_mult,
            embedding_dropout=embedding_dropout,
            separate_output=separate_output,
            num_attributes=num_attributes,
            max_attributes=max_attributes,
            num_time_buckets=num_time_buckets,
            sparse_embeddings=sparse_embeddings,
            feature_sides=feature_sides,
            num_numeric=num_numeric,
            vector_dim=vector_dim,
            id_dropout=id_dropout,
            unknown_id=unknown_id,
            new_item_boost=new_item_boost,
        )
        self.model = BERT4Rec(config) if architecture == "bert4rec" else SASRec(config)
        self.loss_name = loss
        self.ks = list(ks)
        self.exclude_seen = exclude_seen
        self.register_buffer("popularity", torch.zeros(num_items + 1), persistent=False)
        # Items withheld from training (cold-start split): they do not exist while the model trains, so no
        # training loss uses them as negatives either; otherwise their feature-only vectors are only ever
        # pushed down, and the model learns that an item without an ID is never the answer.
        self.register_buffer("untrained", torch.zeros(num_items + 1, dtype=torch.bool), persistent=False)
        self.dataset: DatasetInfo | None = None  # what the data module describes (attach_dataset)
        self.catalogue: dict[str, Any] | None = None  # the stored description of a loaded checkpoint
        self.item_rules: torch.Tensor | None = None  # (N + 1,) bool, True: never predicted (set_item_rules)
        self._totals = MetricTotals()
        self._cold_baselines: dict[str, torch.Tensor] = {}  # prefix -> scores or feature table (cold split)
        self._baseline: dict[str, dict[str, float]] = {}  # popularity metrics of a stage, once computed
        self.evaluated: dict[str, int] = {}  # users evaluated in the last pass of each stage, all ranks
        self.results: dict[str, dict[str, float]] = {}

    # training -------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        # The one place the model meets the data module: its frozen description, once per stage.
        info = getattr(getattr(self.trainer, "datamodule", None), "info", None)
        if isinstance(info, DatasetInfo):
            self.attach_dataset(info, set_attributes=stage == "fit")

    def attach_dataset(self, info: DatasetInfo, set_attributes: bool = True) -> None:
        """Takes what the model needs of the dataset: the catalogue, popularity, and the attribute table."""
        if info.num_items != self.hparams.num_items:
            raise ValueError(f"the data has {info.num_items} items, the model {self.hparams.num_items}")
        self.dataset = info
        self.popularity.copy_(torch.as_tensor(info.train_item_counts).to(self.popularity))
        if info.attributes is not None and self.hparams.num_attributes and set_attributes:
            self.model.set_item_attributes(torch.from_numpy(info.attributes))
        encoder = self.model.item_encoder
        if encoder is not None and set_attributes:
            f = info.extra.get("item_features")
            if f is not None:
                encoder.set_features(numeric_values=f["numeric"] if encoder.numeric is not None else None,
                                     numeric_present=f["numeric_present"] if encoder.numeric is not None else None,
                                     vectors=f["vectors"] if encoder.vector is not None else None)
            cold = info.extra.get("cold_items")
            if cold is not None and len(cold):
                encoder.set_unknown_ids(torch.as_tensor(cold, dtype=torch.long))
        self.untrained.zero_()
        if info.extra.get("cold_items"):
            self.untrained[torch.as_tensor(info.extra["cold_items"], dtype=torch.long)] = True
        self._cold_baselines = {}
        f = info.extra.get("item_features")
        if info.extra.get("cold_items") and f is not None:
            # Baselines that can score the withheld items: popularity gives them nothing.
            counts = torch.as_tensor(info.train_item_counts)
            self._cold_baselines["feature_popularity/"] = feature_popularity(torch.as_tensor(f["attributes"]), counts)
            table = feature_matrix(f)
            if table is not None:
                self._cold_baselines["feature_knn/"] = table

    def forward(self, inputs: torch.Tensor, time_inputs: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(inputs, time_inputs)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch["inputs"], batch["targets"]
        hidden = self.model(inputs, batch.get("time_inputs"))  # (B, L, D)
        mask = targets != 0  # (B, L)
        loss = self._loss(batch, hidden, mask)
        if self.hparams.feature_loss:
            # The same targets and negatives scored from their features alone (the histories keep their IDs):
            # the path that new and withheld items have, trained on every target rather than on the
            # id_dropout share of them.
            with self.model.item_encoder.features_only():
                loss = loss + self.hparams.feature_loss * self._loss(batch, hidden, mask)
        # Sum over positions times a constant, not a per-batch mean: batches grouped by length hold very
        # different numbers of targets, and a per-batch mean would weigh a target in a batch of short
        # sequences far above one in a batch of long ones. The constant (one over the targets of an average
        # batch) keeps every target's weight what it is with randomly mixed batches.
        targets_in_batch = mask.sum().clamp(min=1)
        per_target = loss.detach() / targets_in_batch  # what the curves show: comparable across batch sizes
        loss = loss * batch["loss_scale"] if "loss_scale" in batch else loss / targets_in_batch
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at global step {self.global_step}; stopping")
        self.log("train/loss", per_target, prog_bar=True, batch_size=inputs.shape[0])
        return loss

    def _loss(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The training loss summed over the target positions ``mask`` of ``hidden`` (B, L, D)."""
        targets = batch["targets"]
        if "pool" in batch:
            loss = self._pool_loss(batch, hidden, mask)
        elif self.loss_name in SAMPLED_LOSSES:
            if "negatives" not in batch:
                raise ValueError(f"loss {self.loss_name!r} needs sampled negatives: set data.negatives")
            negatives = batch["negatives"]  # (B, L, K), or (B, 1, K) when shared across the sequence
            pos = self.model.score_items(hidden, targets)  # (B, L)
            neg = self.model.score_items(hidden, negatives)  # (B, L, K)
            # In-batch and popularity negatives can hit the target itself: such a draw is no negative.
            valid = (negatives != targets.unsqueeze(-1)) & ~self.untrained[negatives]
            if self.loss_name == "bce":
                loss = bce_sampled(pos, neg, mask, valid, reduction="sum")
            elif self.loss_name == "gbce":
                loss = gbce(pos, neg, mask, self.hparams.num_items, self.hparams.gbce_t, valid, reduction="sum")
            else:
                logq = self.hparams.logq_correction
                loss = sampled_softmax(
                    pos, neg, mask,
                    batch["targets_logq"] if logq else None,
                    batch["negatives_logq"] if logq else None,
                    valid, reduction="sum",
                )
        elif self.hparams.num_items + 1 > self.hparams.ce_chunk:
            table, tgt = self.model.item_embeddings, targets[mask]
            if self.untrained.any():  # the softmax over the items that exist in training
                trained = ~self.untrained
                table, tgt = table[trained], (torch.cumsum(trained, 0) - 1)[tgt]
            loss = chunked_cross_entropy(hidden[mask], table, tgt, self.hparams.ce_chunk, reduction="sum")
        else:
            logits = self.model.score_all(hidden[mask])  # (T, N + 1)
            logits = logits.masked_fill(self.untrained[: logits.shape[-1]], float("-inf"))
            loss = full_cross_entropy(logits, targets[mask], reduction="sum")
        return loss

    def _pool_loss(self, batch: dict[str, torch.Tensor], hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sampled softmax of every target position against the batch's one candidate pool."""
        if self.loss_name != "sampled_softmax":
            raise ValueError(f"data.negative_pool trains loss 'sampled_softmax', not {self.loss_name!r}")
        h, targets = hidden[mask], batch["targets"][mask]  # (T, D), (T,)
        pos = (h * self.model.embed_items(targets)).sum(-1)  # (T,)
        pool_logits = h @ self.model.embed_items(batch["pool"]).T  # (T, P): one product for the whole batch
        masked = None
        if batch["pool_hit_rows"].numel():  # pool items in each row's history, spread to its positions
            rows_hit = torch.zeros(mask.shape[0], pool_logits.shape[1], dtype=torch.bool, device=h.device)
            rows_hit[batch["pool_hit_rows"], batch["pool_hit_cols"]] = True
            masked = rows_hit[torch.nonzero(mask)[:, 0]]
        absent = self.untrained[batch["pool"]]  # (P,): withheld items drawn into the pool
        if absent.any():
            masked = absent.expand_as(pool_logits) if masked is None else masked | absent
        logq = self.hparams.logq_correction
        return pool_softmax(
            pos, pool_logits,
            batch["targets_logq"][mask] if logq else None,
            batch["pool_logq"] if logq else None,
            batch["targets_pool"][mask], masked, reduction="sum",
        )

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = self._parameter_groups()
        if hp.sparse_embeddings:
            optimizer: torch.optim.Optimizer = LazyAdam(groups, lr=hp.lr, betas=tuple(hp.betas),
                                                        weight_decay=hp.weight_decay, decoupled=hp.optimizer == "adamw")
        else:
            cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
            optimizer = cls(groups, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        if not hp.warmup_steps and hp.lr_schedule == "constant":
            return optimizer
        factor = lr_factor(hp.warmup_steps, hp.lr_schedule, self._decay_steps())
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _parameter_groups(self) -> list[dict[str, Any]]:
        """One group, or with ``weight_decay_scope='matrices'`` a second without decay: embeddings, norms, biases."""
        if self.hparams.weight_decay_scope == "all":
            return [{"params": list(self.parameters())}]
        decayed = {id(m.weight) for m in self.modules() if isinstance(m, torch.nn.Linear)}
        params = list(self.parameters())
        return [{"params": [p for p in params if id(p) in decayed]},
                {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]

    def _decay_steps(self) -> int:
        hp = self.hparams
        if hp.lr_schedule == "constant" or hp.lr_decay_steps:
            return int(hp.lr_decay_steps)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else float("inf")
        if not math.isfinite(total):
            raise ValueError(f"lr_schedule {hp.lr_schedule!r} needs the run's length: set model.lr_decay_steps "
                             "(or trainer.max_steps)")
        return int(total)

    # evaluation -----------------------------------------------------------------------------------------

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor] | None:
        """Adds the batch's metrics to the totals; for test batches scored whole, returns per-user rows."""
        b, columns = batch["inputs"].shape[0], self.hparams.num_items + 1
        # The baseline's scores never change: validation computes them once and reuses them every epoch.
        baseline = stage not in self._baseline
        rows = None
        if columns <= self.hparams.eval_chunk:
            scores = self._scores(batch)
            per_user = batch_metrics(scores, batch, self.ks, self.exclude_seen)
            self._add(per_user, batch)
            if baseline:
                pop = self.popularity.unsqueeze(0).expand_as(scores)  # (B, N + 1)
                pop_per_user = batch_metrics(pop, batch, self.ks, self.exclude_seen)
                self._add(pop_per_user, batch, "popularity/")
                cold_per_user = self._cold_baseline_metrics(batch, scores.shape)
                if stage == "test":
                    rows = self._per_user_rows(batch, scores, pop, per_user, pop_per_user)
                    rows.update({f"{prefix}{name}": v.cpu() for prefix, m in cold_per_user.items()
                                 for name, v in m.items()})
                    if "cold_targets" in batch:
                        rows["cold_target"] = batch["cold_targets"].cpu()
        else:  # a catalogue too large for (B, N + 1) scores: rank it eval_chunk items at a time
            hidden = self._query(batch)
            table = self.model.item_embeddings

            def model_chunk(lo: int, hi: int) -> torch.Tensor:
                return hidden @ table[lo:hi].T

            def pop_chunk(lo: int, hi: int) -> torch.Tensor:
                return self.popularity[lo:hi].expand(b, -1).clone()

            chunk = self.hparams.eval_chunk
            self._add(chunked_batch_metrics(model_chunk, columns, batch, self.ks, self.exclude_seen, chunk), batch)
            if baseline:
                self._add(chunked_batch_metrics(pop_chunk, columns, batch, self.ks, self.exclude_seen, chunk), batch,
                          "popularity/")
        self._totals.add_users(b)
        return rows

    def _per_user_rows(self, batch: dict[str, torch.Tensor], scores: torch.Tensor, pop: torch.Tensor,
                       per_user: dict[str, torch.Tensor], pop_per_user: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each test user's metrics and both top-k lists (what ``seqrec.evaluate.test_report`` writes)."""
        k = min(max(self.ks), self.hparams.num_items)
        tops = []
        for s in (scores, pop):
            best = masked_top_k(s.clone(), batch, k, self.exclude_seen)
            # Slots the user could not fill (everything else seen) hold 0, not an excluded item.
            tops.append(torch.where(torch.isfinite(best.values), best.indices, 0).cpu())
        return {
            "user_index": batch["users"].cpu(),
            "history_length": torch.bincount(batch["history_rows"].cpu(), minlength=scores.shape[0]),
            "target": batch["targets"].cpu(),
            "top_model": tops[0],
            "top_popularity": tops[1],
            **{name: v.cpu() for name, v in per_user.items()},
            **{f"popularity/{name}": v.cpu() for name, v in pop_per_user.items()},
        }

    def _cold_baseline_metrics(self, batch: dict[str, torch.Tensor], shape: torch.Size) -> dict[str, dict[str, torch.Tensor]]:
        """The cold-start baselines' metrics (``seqrec.evaluate.cold_baselines``), with their warm and cold
        slices, added to the totals; returns their per-user values by prefix."""
        out = {}
        for prefix, table in self._cold_baselines.items():
            if table.device != self.device:  # moved once, not per batch
                table = self._cold_baselines[prefix] = table.to(self.device)
            if prefix == "feature_knn/":
                scores = recent_item_knn(batch["inputs"], table)
            else:
                scores = table.unsqueeze(0).expand(shape)
            out[prefix] = batch_metrics(scores, batch, self.ks, self.exclude_seen)
            self._add(out[prefix], batch, prefix)
        return out

    def _add(self, per_user: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], prefix: str = "") -> None:
        """Adds per-user metrics to the totals, and with a cold-start split also their warm and cold slices
        (sums over the slice's users, divided by the slice's share of users in ``_eval_end``)."""
        self._totals.add(per_user, prefix)
        cold = batch.get("cold_targets")
        if cold is None:
            return
        for name, mask in (("cold", cold), ("warm", ~cold)):
            self._totals.add({f"{name}/{m}": v * mask for m, v in per_user.items()}, prefix)
            self._totals.add({f"{name}/users": mask.double()}, prefix)

    def _query(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D) what scores each user's next item (the model's own ``query``)."""
        return self.model.query(batch["inputs"], batch.get("time_inputs"))

    def _scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, N + 1) scores of every item for the users of an evaluation batch."""
        return self.model.score_all(self._query(batch)).float()

    def _eval_start(self) -> None:
        self._totals = MetricTotals()

    def _eval_end(self, stage: str) -> dict[str, float]:
        distributed = self._trainer is not None and self.trainer.world_size > 1
        # Each rank evaluated its own users: the totals and counts are summed over ranks, then divided.
        reduce = (lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")) if distributed else None
        results, count = self._totals.means(reduce, self.device)
        self.evaluated[stage] = count
        if count == 0:
            return {}
        for name in [n for n in results if n.split("/")[-2:-1] in (["cold"], ["warm"]) and not n.endswith("/users")]:
            share = results[name.rsplit("/", 1)[0] + "/users"]  # the slice's share of the users
            results[name] = results[name] / share if share > 0 else float("nan")
        if stage in self._baseline:
            results.update(self._baseline[stage])
        elif stage == "val" and not self.trainer.sanity_checking:
            self._baseline[stage] = {n: v for n, v in results.items() if n.startswith(BASELINE_PREFIXES)}
        for name, value in results.items():
            # The same on every rank already (summed above); sync_dist then averages equal values.
            self.log(f"{stage}/{name}", value, prog_bar=name == f"ndcg@{self.ks[0]}", sync_dist=distributed)
        self.results[stage] = results
        return results

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor] | None:
        # Per-user rows go to whoever reports (seqrec.evaluate.test_report.TestReport reads them as outputs).
        return self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # checkpoints and recommendations ----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Raw item ids and where the data came from: a checkpoint alone then recommends in raw ids.
        if self.dataset is not None:
            checkpoint["seqrec_dataset"] = self.dataset.to_checkpoint()
        elif self.catalogue is not None:  # a loaded checkpoint saved again keeps what it had
            checkpoint["seqrec_dataset"] = self.catalogue
        # Dropout draws from torch's generator; batches depend only on (seed, epoch). With the generator's
        # state saved, a run resumed from this checkpoint continues exactly as the uninterrupted one.
        checkpoint["seqrec_rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["seqrec_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.catalogue = catalogue_from_checkpoint(checkpoint)
        if self._trainer is not None and self.trainer.state.fn != TrainerFn.FITTING:
            # Validating, testing or predicting from a checkpoint restores no training callbacks: their states
            # (best-checkpoint bookkeeping, early-stopping patience) mean nothing there, and restoring them
            # warned of callbacks missing from the command line and of checkpoint folders that "changed".
            checkpoint.pop("callbacks", None)
        if self.dataset is not None:
            # Before the weights are loaded: a different catalogue would otherwise end in load_state_dict's
            # page of "size mismatch for model.encoder.item_emb.weight".
            if self.catalogue is not None:
                self._check_catalogue(self.catalogue, self.dataset)
            stored = checkpoint.get("hyper_parameters", {}).get("num_items")
            if stored is not None and stored != self.hparams.num_items:
                raise ValueError(f"the checkpoint's model has {stored} items and the data {self.hparams.num_items} "
                                 f"({self.dataset.name}): use the data it was trained on")
        rng = checkpoint.get("seqrec_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"].cpu())
            if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])

    @staticmethod
    def _check_catalogue(stored: dict[str, Any], info: DatasetInfo) -> None:
        """The checkpoint's items must be the data's, id for id: equal counts alone would score wrong items."""
        mine = [str(x) for x in stored.get("raw_item_ids", [])[1:]]
        theirs = [str(x) for x in np.asarray(info.raw_item_ids)[1:].tolist()]
        if mine != theirs:
            where = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
            a = mine[where] if where < len(mine) else "none"
            b = theirs[where] if where < len(theirs) else "none"
            source = stored.get("source") or {}
            origin = source.get("path") or ("synthetic" if source else stored.get("name", "?"))
            # One line, both sizes and both origins: the whole source dict made it unreadable.
            raise ValueError(f"the checkpoint's catalogue has {len(mine)} items (trained on {origin}), the data "
                             f"{len(theirs)} ({info.name}): dense item {where + 1} is raw id {a!r} in the "
                             f"checkpoint and {b!r} in the data; use the data the model was trained on")

    def top_k(self, batch: dict[str, torch.Tensor], k: int, exclude_seen: bool = True,
              blocked: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, items), each (B, k): the best items for the histories of ``batch`` (dense ids).

        ``exclude_seen`` drops the items in ``history_rows`` / ``history_items``, ``blocked`` ((N + 1,) bool)
        the items product rules forbid; padding never comes out. Slots nothing is left for score ``-inf``.
        """
        return masked_top_k(self._scores(batch), batch, min(k, self.hparams.num_items), exclude_seen, blocked)

    def set_item_rules(self, blocked: np.ndarray | torch.Tensor | None) -> None:
        """What ``predict`` never recommends: (N + 1,) bool, True for a forbidden item (``seqrec.serve.rules``
        builds it from allow-list and exclusion files); None lifts the rules."""
        if blocked is not None:
            blocked = torch.as_tensor(blocked, dtype=torch.bool)
            rows = self.model.score_ids().numel()  # items added at inference included
            if blocked.shape != (rows,):
                raise ValueError(f"item rules must be a mask of {rows} entries (padding and "
                                 f"the {rows - 1} items), got shape {tuple(blocked.shape)}")
        self.item_rules = blocked

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        scores, items = self.top_k(batch, self.hparams.predict_k, self.exclude_seen, self.item_rules)
        return {"users": batch["users"], "items": items, "scores": scores}

    def metric_names(self, stage: str) -> set[str]:
        """The names this module logs at the end of a ``stage`` ("val" or "test") pass."""
        names = {f"{m}@{k}" for m in ("hr", "ndcg", "mrr") for k in self.ks}
        sampled = self.dataset is not None and self.dataset.sampled_eval != "none"
        prefixes = ["", "popularity/"] + (["sampled/", "popularity/sampled/"] if sampled else [])
        return {f"{stage}/{p}{n}" for p in prefixes for n in names}

    def describe_eval(self) -> dict[str, Any]:
        """The protocol of the last test pass, for the results table."""
        info = self.dataset
        return {
            "dataset": info.name if info else "?",
            "split": info.split if info else "leave_one_out",
            "users": self.evaluated.get("test", 0),
            "items": self.hparams.num_items,
            "exclude_seen": self.exclude_seen,
            "sampled": info.sampled_eval if info else "none",
            "num_sampled": info.num_sampled if info else 0,
        }


def lr_factor(warmup_steps: int, schedule: str, decay_steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier of optimiser step ``step``: linear warmup, then constant or a decay to 0 that
    ends at ``decay_steps`` (counted from step 0, warmup included)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        span = max(decay_steps - warmup_steps, 1)
        progress = min((step - warmup_steps) / span, 1.0)
        return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor

