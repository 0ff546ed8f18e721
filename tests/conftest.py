import os
from pathlib import Path

import numpy as np
import torch
import pytest

from seqrec.data.synthetic import make_synthetic

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def small_synthetic():
    """A small synthetic dataset shared by tests that only read it."""
    return make_synthetic(num_users=400, num_items=150, num_clusters=6, mean_length=12.0, seed=3)


@pytest.fixture()
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch):
    # Tests must never need an account or a network; each test's W&B run (even a disabled one) ends with it.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    yield
    import wandb

    if wandb.run is not None:
        wandb.finish()


@pytest.fixture(autouse=True)
def _plain_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    # LightningCLI warns when given args while sys.argv holds pytest's own arguments.
    monkeypatch.setattr("sys.argv", ["seqrec"])


# Tiny models run fastest on one thread, and a shared CI machine must not be oversubscribed by OpenMP.
torch.set_num_threads(1)
