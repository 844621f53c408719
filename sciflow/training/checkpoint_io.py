"""Checkpoints written atomically: a crash mid-write never leaves a truncated ``last.ckpt``."""

from __future__ import annotations

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from sciflow.atomic import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to a temporary file in the target folder, then renames it over the target."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        with atomic_write(path, "wb") as handle:
            torch.save(checkpoint, handle)
