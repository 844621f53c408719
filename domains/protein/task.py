"""The protein training task: a `GenerativeTask` whose checkpoints are marked as protein, so
that ``sciflow.load_sampler`` returns a `ProteinSampler` (lengths in, PDB files out)."""

from __future__ import annotations

from sciflow.training import GenerativeTask


class ProteinTask(GenerativeTask):
    """`GenerativeTask` for protein backbones (same arguments); see the configs in
    ``configs/protein/`` for the QFlow, ReQFlow and matrix-baseline settings."""

    domain = "protein"
