"""A cheap quality score of sampled backbones, for filtering rectified-flow pairs.

ReQFlow keeps only good (noise, sample) pairs for rectification and finds the filtering
essential; its likely criterion, designability (scRMSD < 2 Å after ProteinMPNN + ESMFold), needs
a folding model that cannot run here. This score uses what is cheap and offline instead:

    score = (fraction of Cα–Cα within 3.8 ± 0.1 Å) − (Cα clash rate) − max(0, coil − 0.5),

higher is better: chain geometry, no self-intersection, and ReQFlow's own training-data rule of
at most 50 % coil (DSSP). It is a proxy, not designability.
"""

from __future__ import annotations

import torch
from sciflow_domains.protein.metrics import ca_ca_valid_fraction, ca_clash_rate, ss_fractions

#: ReQFlow trains on chains with at most this coil fraction.
MAX_COIL = 0.5


def backbone_quality(result) -> torch.Tensor:
    """Scores (B,) of a `ProteinSamples` batch (see the module docstring); higher is better."""
    scores = []
    for backbone in result.to_backbones():
        ca = backbone.coords[:, 1]
        coil = ss_fractions(backbone.coords)["coil"]
        scores.append(ca_ca_valid_fraction(ca) - ca_clash_rate(ca) - max(0.0, coil - MAX_COIL))
    return torch.tensor(scores, dtype=torch.float64)
