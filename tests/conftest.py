import importlib
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from seqrec.data.synthetic import make_synthetic

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parents[1]

# The tiny synthetic settings every end-to-end CLI test trains with (seconds on one CPU thread).
TINY_ARGS = [
    "--data.synthetic.num_users=300",
    "--data.synthetic.num_items=120",
    "--data.synthetic.num_clusters=6",
    "--data.synthetic.mean_length=12",
    "--data.eval_batch_size=128",
    "--model.hidden_size=16",
]


# CI sets this (.ci/run): a test extra that fails to import fails the run instead of skipping its tests.
REQUIRE_EXTRAS = "SEQREC_REQUIRE_EXTRAS"


def require(module: str) -> ModuleType:
    """``pytest.importorskip(module)``, except that with ``SEQREC_REQUIRE_EXTRAS=1`` a module that does not
    import fails instead of skipping. Every module asked for this way comes with ``pip install -e ".[test]"``
    (hypothesis; onnxruntime and onnxscript of ``export``; faiss of ``ann``), so CI must never lose those
    tests silently; a quick local loop without the extras still skips them."""
    if os.environ.get(REQUIRE_EXTRAS) == "1":
        try:
            return importlib.import_module(module)
        except ImportError as e:
            pytest.fail(f"{module} does not import ({e}) and {REQUIRE_EXTRAS}=1: install the test extras "
                        f'(pip install -e ".[test]")', pytrace=False)
    return pytest.importorskip(module)


def csv_logger(save_dir: Path) -> str:
    """The configs' logger list replaced by a CSV logger under ``save_dir`` (W&B has its own test)."""
    return '--trainer.logger=[{"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}]' % save_dir


def common(tmp_path: Path, epochs: int = 2) -> list[str]:
    return [
        f"--trainer.max_epochs={epochs}",
        f"--trainer.default_root_dir={tmp_path}",
        csv_logger(tmp_path),
        "--trainer.enable_progress_bar=false",
    ]


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """Command-line overrides that shrink configs/sasrec_synthetic.yaml to a tiny run."""
    return list(TINY_ARGS)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def small_synthetic():
    """A small synthetic dataset shared by tests that only read it."""
    return make_synthetic(num_users=400, num_items=150, num_clusters=6, mean_length=12.0, seed=3)


@pytest.fixture(scope="module")
def data():
    """The engine tests' synthetic dataset: 300 users over 90 items (small enough to reason about by hand)."""
    return make_synthetic(num_users=300, num_items=90, num_clusters=5, mean_length=14.0, seed=8)


@pytest.fixture(scope="module")
def store(data):
    """``data`` as the native engine's sequence store."""
    from seqrec._core import SequenceStore

    return SequenceStore(data.offsets, data.items, data.num_items)


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
