"""The true predictive distribution of SynthProg: futures drawn from the generator's own law.

Given a subject's hidden state at visit i (time t_i), a future at ``t_i + dt`` keeps everything
already realised (anatomy, law parameters, MS lesions born by t_i) and redraws what is not yet
observed: MS lesion births on (t_i, t_i + dt] and the acquisition nuisances of the new visit. GA
and tumour growth are deterministic given their parameters, so their futures differ only by
nuisances (``nuisance=False`` gives the noise-free render, identical across draws). This is the
oracle an SDE model is calibrated against (coverage of lesion area, CRPS, energy distance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sciflow_domains.medical.synthprog.cohort import SynthProgData
from sciflow_domains.medical.synthprog.generator import make_law
from sciflow_domains.medical.synthprog.nuisance import apply_nuisance


@dataclass(frozen=True)
class FutureDraws:
    """``n`` draws of one subject's visit at ``time`` months.

    Attributes:
        images: (n, H, W) float32 in [0, 1].
        masks: (n, H, W) uint8 labels.
        lesion_area: (n,) pixels with label > 0 before nuisances (the law's true area).
        time: t_i + dt, months.
    """

    images: np.ndarray
    masks: np.ndarray
    lesion_area: np.ndarray
    time: float


def sample_future(
    data: SynthProgData,
    subject: int,
    visit: int,
    dt: float,
    n: int,
    seed: int = 0,
    nuisance: bool = True,
) -> FutureDraws:
    """Draw ``n`` futures of ``subject`` at ``dt`` months after its visit ``visit``.

    Args:
        data: the cohort holding the subject's hidden state.
        subject: subject index s (0 ≤ s < S).
        visit: index i of the conditioning visit (0 ≤ i < n_visits[s]).
        dt: months ahead, > 0.
        n: number of draws, ≥ 1.
        seed: seed of the draws (same seed, same draws).
        nuisance: apply fresh acquisition nuisances (jitter unless registered, drift, noise).
    """
    if not 0 <= subject < len(data.n_visits):
        raise ValueError(f"subject: expected 0 <= subject < {len(data.n_visits)}, got {subject}")
    if not 0 <= visit < data.n_visits[subject]:
        raise ValueError(
            f"visit: expected 0 <= visit < {data.n_visits[subject]} for subject {subject}, "
            f"got {visit}"
        )
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt: expected a positive number of months, got {dt!r}")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    law = make_law(data.config)
    state = data.subject_state(subject)
    t_obs = float(data.times[subject, visit])
    target = np.array([t_obs + dt])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), subject, visit, 104729]))
    h = data.config.resolution
    images, masks = np.zeros((n, h, h), np.float32), np.zeros((n, h, h), np.uint8)
    area = np.zeros(n, np.int64)
    for k in range(n):
        future = law.redraw_future(state, t_obs, float(target[0]), rng)
        clean, labels = law.render(future, target)
        area[k] = int((labels[0] > 0).sum())
        if nuisance:
            images[k], masks[k], _ = apply_nuisance(
                clean[0], labels[0], rng, data.config.nuisance, law.px
            )
        else:
            images[k], masks[k] = clean[0], labels[0]
    return FutureDraws(images=images, masks=masks, lesion_area=area, time=float(target[0]))
