"""Checkpoint files written atomically in their own folder."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from seqrec.files import write_atomically


def unreadable(path: Any, error: BaseException) -> ValueError:
    """The error for a checkpoint that cannot be read: the path and the first line of the cause (torch's
    unpickling errors run to a page of advice that says nothing about which file)."""
    if isinstance(error, pickle.UnpicklingError):  # torch's text here advises weights_only=False: never
        return ValueError(f"{path}: not a readable checkpoint (damaged, not a checkpoint, or holding objects "
                          "other than tensors and plain data, which seqrec refuses to unpickle)")
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return ValueError(f"{path}: not a readable checkpoint ({type(error).__name__}: {first})")


def load_checkpoint_file(path: Any, map_location: Any = "cpu") -> dict[str, Any]:
    """``torch.load`` of a checkpoint as data only (``weights_only``), with errors that name the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # unpickling fails as many types (RuntimeError, UnpicklingError, EOFError, ...)
        raise unreadable(path, e) from None


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

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().load_checkpoint(path, *args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise unreadable(path, e) from None
