"""The SynthProg generator: pseudo-subjects, irregular visits, rendering and nuisances.

Subject s of ``generate(config, seed)`` draws from its own random streams, seeded by
``(seed, kind, s)``: its visits, its anatomy and law, and its acquisition nuisances. So a subject
is the same whatever ``n_subjects`` is, and changing the nuisance parameters (e.g.
``registered=True``) leaves its anatomy, law and visit times unchanged.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from sciflow_domains.medical.synthprog.atrophy import AtrophyLaw
from sciflow_domains.medical.synthprog.backgrounds import load_brain, load_retina
from sciflow_domains.medical.synthprog.cohort import SynthProgData
from sciflow_domains.medical.synthprog.config import KINDS, SynthProgConfig, VisitParams
from sciflow_domains.medical.synthprog.law import ProgressionLaw
from sciflow_domains.medical.synthprog.ms_lesions import MSLesionLaw
from sciflow_domains.medical.synthprog.nuisance import NUISANCE_KEYS, apply_nuisance
from sciflow_domains.medical.synthprog.tumour import TumourLaw

log = logging.getLogger(__name__)

LAWS: dict[str, type[ProgressionLaw]] = {"ga": AtrophyLaw, "ms": MSLesionLaw, "tumour": TumourLaw}
_STREAMS = ("visits", "law", "nuisance")


def make_law(config: SynthProgConfig) -> ProgressionLaw:
    """The progression law of ``config.kind``."""
    return LAWS[config.kind](config)


def subject_rngs(seed: int, kind: str, subject: int) -> dict[str, np.random.Generator]:
    """Independent generators ``visits``, ``law``, ``nuisance`` of one subject."""
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed: expected an int >= 0, got {seed!r}")
    children = np.random.SeedSequence([int(seed), KINDS.index(kind), int(subject)]).spawn(3)
    return {name: np.random.default_rng(c) for name, c in zip(_STREAMS, children, strict=True)}


def draw_visit_times(rng: np.random.Generator, params: VisitParams, gap_mean: float) -> np.ndarray:
    """(K,) months: t_1 = 0, gaps ``Gamma(shape, gap_mean / shape) + offset``,
    ``K = min(min_visits + Poisson(extra_mean), max_visits)``."""
    count = min(params.min_visits + int(rng.poisson(params.extra_mean)), params.max_visits)
    gaps = rng.gamma(params.gap_shape, gap_mean / params.gap_shape, size=count - 1)
    return np.concatenate([[0.0], np.cumsum(gaps + params.gap_offset)])


def split_subjects(n: int, fractions: tuple[float, float, float], seed: int) -> np.ndarray:
    """(n,) split names: a seeded permutation cut into ``round(f·n)`` train and val subjects,
    the rest test."""
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 7919])).permutation(n)
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    split = np.empty(n, dtype="<U5")
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "val"
    split[order[n_train + n_val :]] = "test"
    return split


def generate(config: SynthProgConfig | None = None, seed: int = 0) -> SynthProgData:
    """Generate a SynthProg cohort; deterministic in (config, seed, background files).

    Returns a :class:`SynthProgData`: images (S, K_max, H, W) float32 in [0, 1], label masks,
    visit times in months (NaN-padded), the hidden states and the per-visit nuisances.
    """
    config = config or SynthProgConfig()
    law = make_law(config)
    start = time.perf_counter()
    subjects = []
    for s in range(config.n_subjects):
        rngs = subject_rngs(seed, config.kind, s)
        times = draw_visit_times(rngs["visits"], config.visits, law.params.gap_mean)
        state = law.draw(rngs["law"], times)
        clean, labels = law.render(state, times)
        visits = [
            apply_nuisance(clean[k], labels[k], rngs["nuisance"], config.nuisance, law.px)
            for k in range(len(times))
        ]
        subjects.append((times, state, visits))
    data = SynthProgData.stack(
        config=config,
        seed=seed,
        background=_origin(config),
        subjects=subjects,
        nuisance_keys=NUISANCE_KEYS,
        split=split_subjects(config.n_subjects, config.split, seed),
    )
    log.info(
        "SynthProg-%s: %d subjects, %d visits in %.1f s",
        config.kind,
        config.n_subjects,
        int(data.n_visits.sum()),
        time.perf_counter() - start,
    )
    return data


def _origin(config: SynthProgConfig) -> str:
    """Which background was used (``real``/``builtin``), as the laws resolved it."""
    loader = load_retina if config.kind == "ga" else load_brain
    return loader(config.background).origin
