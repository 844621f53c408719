"""SynthProg: a synthetic longitudinal benchmark drawn by explicit laws on real anatomy.

Geographic-atrophy growth on a fundus photograph (``kind="ga"``), MS lesion birth and resolution
(``"ms"``) and Fisher–KPP tumour growth (``"tumour"``) on MNI template slices, at irregular visit
times with registration jitter and intensity drift; the masks, parameters and hidden states are
stored, so Dice/HD are exact and :func:`sample_future` draws from the true predictive
distribution. Specification: ``docs/methods/medical.md`` §3.4.

    from sciflow_domains.medical.synthprog import SynthProgConfig, generate
    data = generate(SynthProgConfig(kind="ms", n_subjects=20), seed=0)
    dataset = data.to_longitudinal()           # -> LongitudinalDataset, split by subject
"""

from sciflow_domains.medical.synthprog.cohort import SynthProgData
from sciflow_domains.medical.synthprog.config import SynthProgConfig
from sciflow_domains.medical.synthprog.generator import generate, make_law
from sciflow_domains.medical.synthprog.predictive import FutureDraws, sample_future

__all__ = [
    "FutureDraws",
    "SynthProgConfig",
    "SynthProgData",
    "generate",
    "make_law",
    "sample_future",
]
