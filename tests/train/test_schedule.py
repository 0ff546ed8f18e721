"""Learning-rate warmup and decay, and weight decay kept off embeddings, norms and biases."""

import math

import pytest
import pytorch_lightning as pl
import torch
from seqrec.train.module import SeqRecModule, lr_factor


def test_lr_factor_warms_up_then_decays_to_zero() -> None:
    f = lr_factor(4, "linear", 14)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(9) == pytest.approx(0.5) and f(14) == 0.0 and f(100) == 0.0
    c = lr_factor(0, "cosine", 10)
    assert c(0) == 1.0 and c(5) == pytest.approx(0.5) and c(10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(3, "constant", 0)(1000) == 1.0


def test_the_optimiser_follows_the_schedule_step_by_step() -> None:
    module = SeqRecModule(num_items=20, hidden_size=8, lr=0.01, warmup_steps=2, lr_schedule="cosine",
                          lr_decay_steps=6)
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    seen = []
    for _ in range(7):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.005, 0.01] + [0.01 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]  # ends at step 6
    assert seen == pytest.approx(expected, abs=1e-12)
    assert isinstance(SeqRecModule(num_items=20).configure_optimizers(), torch.optim.Adam)  # no schedule: none


def test_a_decay_without_a_known_length_is_refused_by_name() -> None:
    module = SeqRecModule(num_items=20, lr_schedule="linear")
    trainer = pl.Trainer(max_epochs=-1, max_time="00:00:01:00", logger=False)
    module.trainer = trainer
    with pytest.raises(ValueError, match="needs the run's length: set model.lr_decay_steps"):
        module.configure_optimizers()


@pytest.mark.parametrize("sparse", [False, True])
def test_matrices_scope_decays_linear_weights_only(sparse: bool) -> None:
    module = SeqRecModule(num_items=20, hidden_size=8, weight_decay=0.1, weight_decay_scope="matrices",
                          loss="sampled_softmax", sparse_embeddings=sparse)
    opt = module.configure_optimizers()
    decayed, plain = opt.param_groups
    names = {id(p): n for n, p in module.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {names[id(p)] for p in decayed["params"]} == {n for n, m in module.named_modules()
                                                         if isinstance(m, torch.nn.Linear) for n in [n + ".weight"]}
    plain_names = {names[id(p)] for p in plain["params"]}
    assert "model.encoder.item_emb.weight" in plain_names and "model.encoder.pos_emb.weight" in plain_names
    assert any("norm" in n for n in plain_names) and any(n.endswith(".bias") for n in plain_names)
    assert len(decayed["params"]) + len(plain["params"]) == len(list(module.parameters()))
    assert len(SeqRecModule(num_items=20).configure_optimizers().param_groups) == 1  # scope 'all': one group


def test_bad_schedule_options_name_themselves() -> None:
    with pytest.raises(ValueError, match="lr_schedule must be"):
        SeqRecModule(num_items=5, lr_schedule="step")
    with pytest.raises(ValueError, match="weight_decay_scope must be"):
        SeqRecModule(num_items=5, weight_decay_scope="embeddings")
    with pytest.raises(ValueError, match="warmup_steps, lr_decay_steps and ffn_mult must be >= 0"):
        SeqRecModule(num_items=5, warmup_steps=-1)
    with pytest.raises(ValueError, match="embedding_dropout must lie in"):
        SeqRecModule(num_items=5, embedding_dropout=1.5)


def test_lightning_cli_offers_no_second_optimiser_mechanism(tiny: list[str], tmp_path) -> None:
    from conftest import ROOT
    from seqrec.cli import run

    base = ["fit", "--config", str(ROOT / "configs/sasrec_synthetic.yaml"), *tiny, f"--trainer.default_root_dir={tmp_path}"]
    with pytest.raises(SystemExit):
        run([*base, "--optimizer=torch.optim.SGD", "--optimizer.lr=0.1", "--trainer.fast_dev_run=true"])
