"""The LightningModule: losses, evaluation protocols and optimiser around a sequence encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch

from seqrec.evaluation import batch_metrics, chunked_batch_metrics
from seqrec.losses import bce_sampled, chunked_cross_entropy, full_cross_entropy, gbce, pool_softmax, sampled_softmax
from seqrec.models import BERT4Rec, ModelConfig, SASRec
from seqrec.optim import LazyAdam

SAMPLED_LOSSES = ("bce", "sampled_softmax", "gbce")
LOSSES = (*SAMPLED_LOSSES, "ce")
from seqrec.analysis import format_summary, summarize, write_per_user
from seqrec.report import format_results


def masked_top_k(scores: torch.Tensor, batch: dict[str, torch.Tensor], k: int, exclude_seen: bool) -> Any:
    """Top-k of (B, N + 1) ``scores`` (modified in place) without padding and, with ``exclude_seen``, without
    the items in the batch's ``history_rows`` / ``history_items``."""
    scores[:, 0] = float("-inf")
    if exclude_seen and "history_rows" in batch:
        scores[batch["history_rows"], batch["history_items"]] = float("-inf")
    return scores.topk(k, dim=1)


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
    hidden_size, num_blocks, num_heads, dropout : int, int, int, float
        Transformer size.
    norm_first : bool
        Pre-LN blocks (True) or the original post-LN blocks (False).
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
    lr, weight_decay, betas : float, float, tuple
        Optimiser settings.
    ks : list of int
        Cut-offs of HR@k, NDCG@k and MRR@k.
    exclude_seen : bool
        Exclude items the user already interacted with from the full ranking (the usual protocol).
    num_attributes, max_attributes : int
        Item attributes as extra input embeddings (mean of the item's attribute embeddings); linked from
        the data module's ``item_features`` by the CLI (0: none).
    num_time_buckets : int
        Time-gap buckets as an extra input embedding (SASRec only); linked from ``data.time_features``.
    eval_chunk : int
        Catalogues of more items than this are ranked in chunks of this many items at evaluation, so memory
        stays at eval_batch_size x eval_chunk scores however large the catalogue.
    ce_chunk : int
        ``ce`` over catalogues of more items than this is computed this many items at a time (a chunked
        softmax whose backward recomputes each chunk), so no (targets x catalogue) tensor is ever held.
    sparse_embeddings : bool
        Item tables get row-sparse gradients and the optimiser (``seqrec.optim.LazyAdam``) updates only the
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
        separate_output: bool = False,
        loss: Literal["bce", "sampled_softmax", "gbce", "ce"] = "ce",
        gbce_t: float = 0.75,
        logq_correction: bool = True,
        optimizer: Literal["adam", "adamw"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.98),
        ks: list[int] = [10],  # noqa: B006 (jsonargparse needs a literal default)
        exclude_seen: bool = True,
        num_attributes: int = 0,
        max_attributes: int = 0,
        num_time_buckets: int = 0,
        eval_chunk: int = 262_144,
        ce_chunk: int = 65_536,
        sparse_embeddings: bool = False,
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
        if not ks or min(ks) < 1:
            raise ValueError(f"ks must be positive cut-offs, got {ks}")
        config = ModelConfig(
            num_items=num_items,
            max_len=max_len,
            hidden_size=hidden_size,
            num_blocks=num_blocks,
            num_heads=num_heads,
            dropout=dropout,
            norm_first=norm_first,
            separate_output=separate_output,
            num_attributes=num_attributes,
            max_attributes=max_attributes,
            num_time_buckets=num_time_buckets,
            sparse_embeddings=sparse_embeddings,
        )
        self.model = BERT4Rec(config) if architecture == "bert4rec" else SASRec(config)
        self.loss_name = loss
        self.ks = list(ks)
        self.exclude_seen = exclude_seen
        self.register_buffer("popularity", torch.zeros(num_items + 1), persistent=False)
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0
        self._per_user: list[dict[str, torch.Tensor]] = []
        self._baseline: dict[str, dict[str, float]] = {}  # popularity metrics of a stage, once computed
        self.evaluated: dict[str, int] = {}  # users evaluated in the last pass of each stage, all ranks
        self.results: dict[str, dict[str, float]] = {}

    # training -------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is not None and hasattr(dm, "item_popularity"):
            self.popularity.copy_(dm.item_popularity().to(self.popularity))
        attributes = getattr(dm, "attributes", None)
        if attributes is not None and self.hparams.num_attributes and stage == "fit":
            self.model.set_item_attributes(torch.from_numpy(attributes.table))

    def forward(self, inputs: torch.Tensor, time_inputs: torch.Tensor | None = None) -> torch.Tensor:
        return self.model(inputs, time_inputs)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch["inputs"], batch["targets"]
        hidden = self.model(inputs, batch.get("time_inputs"))  # (B, L, D)
        mask = targets != 0  # (B, L)
        if "pool" in batch:
            loss = self._pool_loss(batch, hidden, mask)
        elif self.loss_name in SAMPLED_LOSSES:
            if "negatives" not in batch:
                raise ValueError(f"loss {self.loss_name!r} needs sampled negatives: set data.negatives")
            negatives = batch["negatives"]  # (B, L, K), or (B, 1, K) when shared across the sequence
            pos = self.model.score_items(hidden, targets)  # (B, L)
            neg = self.model.score_items(hidden, negatives)  # (B, L, K)
            # In-batch and popularity negatives can hit the target itself: such a draw is no negative.
            valid = negatives != targets.unsqueeze(-1)
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
            loss = chunked_cross_entropy(hidden[mask], self.model.item_embeddings, targets[mask],
                                         self.hparams.ce_chunk, reduction="sum")
        else:
            logits = self.model.score_all(hidden[mask])  # (T, N + 1)
            loss = full_cross_entropy(logits, targets[mask], reduction="sum")
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
        logq = self.hparams.logq_correction
        return pool_softmax(
            pos, pool_logits,
            batch["targets_logq"][mask] if logq else None,
            batch["pool_logq"] if logq else None,
            batch["targets_pool"][mask], masked, reduction="sum",
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.sparse_embeddings:
            return LazyAdam(self.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay,
                            decoupled=hp.optimizer == "adamw")
        cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
        return cls(self.parameters(), lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)

    # evaluation -----------------------------------------------------------------------------------------

    def _accumulate(self, prefix: str, values: dict[str, torch.Tensor]) -> None:
        for name, v in values.items():
            key = f"{prefix}{name}"
            self._sums[key] = self._sums.get(key, 0.0) + v.sum().double()

    def _eval_step(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        b, columns = batch["inputs"].shape[0], self.hparams.num_items + 1
        # The baseline's scores never change: validation computes them once and reuses them every epoch.
        baseline = stage not in self._baseline
        if columns <= self.hparams.eval_chunk:
            scores = self._scores(batch)
            per_user = batch_metrics(scores, batch, self.ks, self.exclude_seen)
            self._accumulate("", per_user)
            if baseline:
                pop = self.popularity.unsqueeze(0).expand_as(scores)  # (B, N + 1)
                pop_per_user = batch_metrics(pop, batch, self.ks, self.exclude_seen)
                self._accumulate("popularity/", pop_per_user)
                if stage == "test":
                    self._keep_per_user(batch, scores, pop, per_user, pop_per_user)
        else:  # a catalogue too large for (B, N + 1) scores: rank it eval_chunk items at a time
            hidden = self._query(batch)
            table = self.model.item_embeddings

            def model_chunk(lo: int, hi: int) -> torch.Tensor:
                return hidden @ table[lo:hi].T

            def pop_chunk(lo: int, hi: int) -> torch.Tensor:
                return self.popularity[lo:hi].expand(b, -1).clone()

            chunk = self.hparams.eval_chunk
            self._accumulate("", chunked_batch_metrics(model_chunk, columns, batch, self.ks, self.exclude_seen, chunk))
            if baseline:
                self._accumulate("popularity/",
                                 chunked_batch_metrics(pop_chunk, columns, batch, self.ks, self.exclude_seen, chunk))
        self._count += b

    def _keep_per_user(self, batch: dict[str, torch.Tensor], scores: torch.Tensor, pop: torch.Tensor,
                       per_user: dict[str, torch.Tensor], pop_per_user: dict[str, torch.Tensor]) -> None:
        """Keeps each test user's metrics and both top-k lists (see ``seqrec.analysis``)."""
        k = min(max(self.ks), self.hparams.num_items)
        tops = []
        for s in (scores, pop):
            best = masked_top_k(s.clone(), batch, k, self.exclude_seen)
            # Slots the user could not fill (everything else seen) hold 0, not an excluded item.
            tops.append(torch.where(torch.isfinite(best.values), best.indices, 0).cpu())
        rows = {
            "user_index": batch["users"].cpu(),
            "history_length": torch.bincount(batch["history_rows"].cpu(), minlength=scores.shape[0]),
            "target": batch["targets"].cpu(),
            "top_model": tops[0],
            "top_popularity": tops[1],
            **{name: v.cpu() for name, v in per_user.items()},
            **{f"popularity/{name}": v.cpu() for name, v in pop_per_user.items()},
        }
        self._per_user.append(rows)

    def _query(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, D) the hidden state after each user's history: what scores the next item."""
        inputs = batch["inputs"]
        if isinstance(self.model, BERT4Rec):
            inputs = self.model.with_mask_appended(inputs)  # predict the item after the history
        return self.model(inputs, batch.get("time_inputs"))[:, -1]  # left padding puts the latest position last

    def _scores(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, N + 1) scores of every item for the users of an evaluation batch."""
        return self.model.score_all(self._query(batch)).float()

    def _eval_start(self) -> None:
        self._sums, self._count = {}, 0
        self._per_user: list[dict[str, torch.Tensor]] = []

    def _eval_end(self, stage: str) -> dict[str, float]:
        names = sorted(self._sums)
        totals = [float(self._sums[n]) for n in names]
        count = self._count
        distributed = self._trainer is not None and self.trainer.world_size > 1
        if distributed:
            # Each rank evaluated its own users: sum the totals and counts over ranks, then divide, so the
            # metrics equal one process's over all users.
            local = torch.tensor([*totals, count], dtype=torch.float64, device=self.device)
            summed = self.trainer.strategy.reduce(local, reduce_op="sum").tolist()
            totals, count = summed[:-1], int(round(summed[-1]))
        self.evaluated[stage] = count
        if count == 0:
            return {}
        results = {name: total / count for name, total in zip(names, totals)}
        if stage in self._baseline:
            results.update(self._baseline[stage])
        elif stage == "val" and not self.trainer.sanity_checking:
            self._baseline[stage] = {n: v for n, v in results.items() if n.startswith("popularity/")}
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

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._eval_step(batch, "test")
        if batch_idx == 0:
            self._sample_recommendations(batch)

    def on_test_epoch_end(self) -> None:
        results = self._eval_end("test")
        if results:
            self.print(format_results(results, self.ks, self._describe_eval()))
            if self.trainer.is_global_zero:  # machine-readable, beside the checkpoints
                root = Path(self.trainer.default_root_dir)
                root.mkdir(parents=True, exist_ok=True)
                record = {"users": self.evaluated["test"], "world_size": self.trainer.world_size, "metrics": results}
                summary = self._analyse(root)
                if summary is not None:
                    record.update(summary)
                    self.print(format_summary(summary, max(self.ks)))
                (root / "test_results.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
        self._log_recommendations()

    def _analyse(self, root: Path) -> dict[str, Any] | None:
        """Per-user rows to ``test_per_user.parquet``; intervals, beyond-accuracy metrics and slices from them.

        One process only (under DDP each rank holds its own users) and only when scores were whole (not
        chunked); otherwise None.
        """
        if not self._per_user or self.trainer.world_size > 1:
            return None
        rows = {name: torch.cat([part[name] for part in self._per_user]).numpy() for name in self._per_user[0]}
        dm = getattr(self.trainer, "datamodule", None)
        raw_users = getattr(getattr(dm, "interactions", None), "raw_user_ids", None)
        rows["user"] = raw_users[rows["user_index"]] if raw_users is not None else rows["user_index"]
        write_per_user(rows, root)
        counts = self.popularity.cpu().numpy()
        np.save(root / "train_item_counts.npy", counts.astype(np.int64))  # what the report's plots need
        summary = summarize(rows, counts, self.ks)
        for name, values in summary["beyond_accuracy"]["model"].items():
            self.log(f"test/{name}@{max(self.ks)}", float(values))
        return summary

    def _sample_recommendations(self, batch: dict[str, torch.Tensor], users: int = 8, k: int = 10) -> None:
        """Keeps the top-k (seen items excluded) of the first few test users, for a table in the logs."""
        part = {name: v[:users] for name, v in batch.items() if name not in ("history_rows", "history_items")}
        rows = batch["history_rows"] < users
        part["history_rows"], part["history_items"] = batch["history_rows"][rows], batch["history_items"][rows]
        top = self.top_k(part, k)[1]
        self._recommendations = (part["users"].cpu(), part["inputs"].cpu(), part["targets"].cpu(), top.cpu())

    def _log_recommendations(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        sample = getattr(self, "_recommendations", None)
        if sample is None or dm is None or not hasattr(dm, "interactions"):
            return
        raw_users, raw_items = dm.interactions.raw_user_ids, dm.interactions.raw_item_ids
        users, inputs, targets, top = sample
        rows = []
        for u, seq, target, rec in zip(users.tolist(), inputs.tolist(), targets.tolist(), top.tolist()):
            recent = [str(raw_items[i]) for i in seq if i != 0][-5:]
            rows.append([str(raw_users[u]), " ".join(recent), str(raw_items[target]), " ".join(str(raw_items[i]) for i in rec)])
        for logger in self.loggers:
            if hasattr(logger, "log_table"):
                logger.log_table("test/recommendations", columns=["user", "recent items", "next item", "top-10"], data=rows)

    # checkpoints and recommendations ----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Raw item ids and where the data came from: a checkpoint alone then recommends in raw ids.
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and hasattr(dm, "interactions"):
            checkpoint["seqrec"] = {"raw_item_ids": dm.interactions.raw_item_ids.tolist(), "source": dm.source()}
        # Dropout draws from torch's generator; batches depend only on (seed, epoch). With the generator's
        # state saved, a run resumed from this checkpoint continues exactly as the uninterrupted one.
        checkpoint["seqrec_rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["seqrec_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.catalogue = checkpoint.get("seqrec")
        rng = checkpoint.get("seqrec_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"].cpu())
            if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(rng["cuda"])

    def top_k(self, batch: dict[str, torch.Tensor], k: int, exclude_seen: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, items), each (B, k): the best items for the histories of ``batch`` (dense ids).

        ``exclude_seen`` drops the items in ``history_rows`` / ``history_items``; padding never comes out.
        """
        return masked_top_k(self._scores(batch), batch, min(k, self.hparams.num_items), exclude_seen)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        k = getattr(self, "predict_k", 10)  # set by seqrec.callbacks.RecommendationWriter
        scores, items = self.top_k(batch, k, self.exclude_seen)
        return {"users": batch["users"], "items": items, "scores": scores}

    def _describe_eval(self) -> dict[str, Any]:
        dm = getattr(self.trainer, "datamodule", None)
        return {
            "dataset": getattr(dm, "dataset_name", "?"),
            "split": getattr(dm, "split_name", "leave_one_out"),
            "users": self.evaluated.get("test", self._count),
            "items": self.hparams.num_items,
            "exclude_seen": self.exclude_seen,
            "sampled": getattr(dm, "sampled_eval", "none"),
            "num_sampled": getattr(dm, "num_sampled", 0),
        }
