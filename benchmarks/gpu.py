"""GPU smoke test and throughput: the extension, a short fit on the GPU, then SASRec on a large synthetic set
(BCE, full CE and the batch-wide pool with sparse item updates).

Records non-padding tokens/s, peak GPU memory and the data-wait fraction; finishes in a few minutes on one
GPU. Without CUDA it prints a skip message and exits 0 (``--device cpu`` runs the same path on the CPU, for
tests). ``benchmarks/gpu.sh`` wraps it.

    python -m benchmarks.gpu --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, machine

# The recipes measured: the paper's BCE, full CE (chunked above model.ce_chunk items), and the catalogue-scale
# path (one batch-wide pool of 8,192 uniform items plus the batch's targets, row-sparse item table).
RECIPES: dict[str, tuple[str, dict, dict]] = {
    "bce": ("bce", {"negatives": "uniform"}, {}),
    "ce": ("ce", {"negatives": "none"}, {}),
    "pool": ("sampled_softmax", {"negatives": "uniform", "negative_pool": 8192, "pool_in_batch": True},
             {"sparse_embeddings": True}),
}


def fit(device: str, users: int, items: int, epochs: int, batch_size: int, recipe: str, minutes: float) -> dict:
    import pytorch_lightning as pl
    from seqrec.data.datamodule import SeqRecDataModule
    from seqrec.data.source import SyntheticSpec
    from seqrec.train.callbacks import ThroughputMonitor
    from seqrec.train.module import SeqRecModule

    start = time.perf_counter()
    spec = SyntheticSpec(num_users=users, num_items=items, num_clusters=max(items // 100, 2), mean_length=20, seed=0)
    loss, data_args, model_args = RECIPES[recipe]
    if "negative_pool" in data_args:
        data_args = {**data_args, "negative_pool": min(data_args["negative_pool"], items // 2)}
    dm = SeqRecDataModule(synthetic=spec, max_len=200, batch_size=batch_size, eval_batch_size=2048, seed=0,
                          **data_args)
    built = time.perf_counter() - start
    model = SeqRecModule(num_items=dm.num_items, max_len=200, hidden_size=128, num_blocks=2, num_heads=2, loss=loss,
                         **model_args)
    monitor = ThroughputMonitor()
    hours, rest = divmod(int(minutes * 60), 3600)
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=epochs,
                         max_time=f"00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[monitor], num_sanity_val_steps=0, limit_val_batches=1.0,
                         precision="bf16-mixed" if device == "cuda" else "32-true")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, datamodule=dm)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    return {"users": users, "items": dm.num_items, "interactions": dm.interactions.num_interactions,
            "data_seconds": built, "epochs": int(trainer.current_epoch), "recipe": recipe, "loss": loss,
            "batch_size": batch_size,
            "throughput": monitor.summary, "peak_gpu_memory_gib": peak,
            "val_ndcg@10": model.results.get("val", {}).get("ndcg@10")}


def main(argv: list[str] | None = None) -> dict | None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--users", type=int, default=100_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--minutes", type=float, default=3.0, help="training budget of the throughput run")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: skipping the GPU benchmark")
        return None
    from seqrec._core import BatchBuilder, SequenceStore

    # Smoke: the extension builds a batch that moves to the device and back unchanged.
    offsets = np.array([0, 3, 5], dtype=np.int64)
    store = SequenceStore(offsets, np.array([1, 2, 3, 2, 4], dtype=np.int32), 4)
    batch = BatchBuilder(store, 4).build(np.array([0, 1], dtype=np.int64), seed=1)
    moved = torch.from_numpy(batch["inputs"]).to(args.device)
    assert torch.equal(moved.cpu(), torch.from_numpy(batch["inputs"])), "device round trip changed a batch"
    smoke = fit(args.device, 2000, 500, 1, 128, "bce", 1.0)
    print("smoke fit:", json.dumps(smoke["throughput"]))
    result = {"machine": machine(), "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "smoke": smoke}
    for recipe in RECIPES:
        result[f"sasrec_{recipe}"] = fit(args.device, args.users, args.items, args.epochs, args.batch_size, recipe,
                                         args.minutes / len(RECIPES))
        print(recipe, json.dumps(result[f"sasrec_{recipe}"]["throughput"]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
