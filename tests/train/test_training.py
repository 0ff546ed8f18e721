"""SASRec must learn the synthetic dataset's sequential structure, which popularity cannot see."""

import numpy as np
import pytest
import pytorch_lightning as pl
from seqrec.data.datamodule import SeqRecDataModule
from seqrec.data.source import SyntheticSpec
from seqrec.train.module import SeqRecModule


def fit_and_test(tmp_path, loss: str, seed: int = 0, architecture: str = "sasrec", data_kwargs: dict | None = None,
                 model_kwargs: dict | None = None, callbacks: list | None = None) -> dict[str, float]:
    pl.seed_everything(seed, verbose=False)
    dm = SeqRecDataModule(
        synthetic=SyntheticSpec(num_users=1200, num_items=300, num_clusters=10, mean_length=15.0, seed=2),
        seed=seed,
        task=architecture,
        **{"max_len": 20, "batch_size": 64, "mask_prob": 0.3, **(data_kwargs or {})},
    )
    model = SeqRecModule(architecture=architecture, num_items=dm.num_items, max_len=20, hidden_size=32,
                         dropout=0.1, loss=loss, lr=3e-3, **(model_kwargs or {}))
    trainer = pl.Trainer(
        # BERT4Rec trains on the ~30% masked positions only, so it needs more passes than SASRec.
        max_epochs=15 if architecture == "bert4rec" else 6,
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks or [],
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    return model.results["test"]


@pytest.mark.slow
@pytest.mark.parametrize(("architecture", "loss"), [("sasrec", "ce"), ("sasrec", "bce"), ("sasrec", "sampled_softmax"),
                                                    ("sasrec", "gbce"), ("bert4rec", "ce")])
def test_models_beat_popularity_on_synthetic(tmp_path, architecture: str, loss: str) -> None:
    results = fit_and_test(tmp_path, loss, architecture=architecture)
    assert results["ndcg@10"] > 2.0 * results["popularity/ndcg@10"], results
    assert results["hr@10"] > 1.8 * results["popularity/hr@10"], results


@pytest.mark.slow
@pytest.mark.parametrize(("data_kwargs", "model_kwargs"), [
    ({"negative_pool": 64, "pool_in_batch": True}, {"sparse_embeddings": True}),
    ({"negative_pool": 64, "negatives": "popularity", "popularity_alpha": 0.5}, {}),
    ({"negative_pool": 0, "pool_in_batch": True, "pool_mask_history": True}, {"separate_output": True}),
])
def test_pool_recipes_beat_popularity_on_synthetic(tmp_path, data_kwargs: dict, model_kwargs: dict) -> None:
    """The catalogue-scale recipes (a batch-wide pool, sparse or tied tables) learn the sequential structure."""
    results = fit_and_test(tmp_path, "sampled_softmax", data_kwargs=data_kwargs, model_kwargs=model_kwargs)
    assert results["ndcg@10"] > 2.0 * results["popularity/ndcg@10"], results
    assert results["hr@10"] > 1.8 * results["popularity/hr@10"], results


@pytest.mark.slow
def test_training_clock_records_each_validation_without_evaluation_time(tmp_path) -> None:
    import time

    from seqrec.train.callbacks import TrainingClock

    class SlowValidation(pl.Callback):  # 0.3 s of evaluation that the clock must not count
        def on_validation_batch_end(self, *args, **kwargs) -> None:
            time.sleep(0.3)

    clock = TrainingClock()
    start = time.perf_counter()
    fit_and_test(tmp_path, "ce", callbacks=[clock, SlowValidation()])
    wall = time.perf_counter() - start
    assert [e for e, _, _ in clock.curve] == list(range(1, 7))  # one point per validated epoch
    seconds = [s for _, s, _ in clock.curve]
    assert all(b > a for a, b in zip(seconds, seconds[1:])) and seconds[-1] == pytest.approx(clock.seconds)
    validations = 6 * 3  # six validations of three batches (1,200 users / 512)
    assert clock.seconds < wall - 0.3 * validations
    assert clock.curve[-1][2] > clock.curve[0][2]  # validation NDCG@10 improved


@pytest.mark.slow
def test_same_seed_same_metrics(tmp_path) -> None:
    a = fit_and_test(tmp_path / "a", "bce", seed=3)
    b = fit_and_test(tmp_path / "b", "bce", seed=3)
    assert a["ndcg@10"] == pytest.approx(b["ndcg@10"], abs=1e-9)


@pytest.mark.slow
def test_chunked_evaluation_gives_the_same_metrics_in_training(tmp_path) -> None:
    from seqrec.cli import run

    common = ["--config", "configs/sasrec_synthetic.yaml", "--data.synthetic.num_users=300",
              "--data.synthetic.num_items=120", "--data.synthetic.num_clusters=6", "--data.synthetic.mean_length=12",
              "--model.hidden_size=16", "--trainer.max_epochs=1", "--trainer.logger=false",
              "--trainer.enable_progress_bar=false", "--data.sampled_eval=uniform"]
    whole = run(["fit", *common, f"--trainer.default_root_dir={tmp_path / 'a'}"])
    parts = run(["fit", *common, f"--trainer.default_root_dir={tmp_path / 'b'}", "--model.eval_chunk=17"])
    for stage in ("val", "test"):
        assert parts.model.results[stage] == pytest.approx(whole.model.results[stage], abs=1e-6)


@pytest.mark.slow
def test_every_epoch_trains_all_its_batches_and_validates_when_batch_counts_vary(tmp_path) -> None:
    """With length bucketing under a token budget the number of batches differs from epoch to epoch. Each
    epoch must still run exactly its own batches, and validation must follow every epoch (a fixed length
    taken from epoch 0 made Lightning drop batches or skip validations)."""
    from seqrec.train.callbacks import TrainingClock

    data_kwargs = {"batch_tokens": 60, "batch_size": 4}
    dm = SeqRecDataModule(synthetic=SyntheticSpec(num_users=1200, num_items=300, num_clusters=10, mean_length=15.0,
                                                  seed=2), max_len=20, seed=0, **data_kwargs)
    builder = dm.batch_builder()
    users, ends = builder.segments(np.arange(dm.interactions.num_users, dtype=np.int64), 0)
    counts = [builder.num_batches(users, ends, 4, 0, e, bucket=True, max_tokens=60) for e in range(6)]
    assert len(set(counts)) > 1, counts  # the case this test is about
    clock = TrainingClock()
    fit_and_test(tmp_path, "ce", data_kwargs=data_kwargs, callbacks=[clock])
    assert [e for e, _, _ in clock.curve] == [1, 2, 3, 4, 5, 6]
    assert clock.steps == counts
