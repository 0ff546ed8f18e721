"""Checkpoint files written atomically in their own folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from seqrec.files import write_atomically


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves each checkpoint to ``<name>.partial`` beside it, then renames it into place.

    Lightning's own writer stages the file in the system's temporary folder and moves it, which across
    filesystems is a copy: a disk that fills during the copy leaves a truncated checkpoint under its final
    name. A rename within one folder is atomic: a reader, or a resume after a crash, sees the old file or the
    whole new one. (Local paths only; remote URLs go through Lightning's writer unchanged.)
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        write_atomically(Path(path), lambda tmp: torch.save(checkpoint, tmp))
