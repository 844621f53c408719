"""What every SynthProg progression law provides: a subject's hidden state and its rendering.

A law (geographic atrophy, MS lesions, Fisher–KPP tumour) draws a :class:`SubjectState` (anatomy
fields, scalar parameters, events such as lesion births) and renders it, deterministically, at any
times. Everything a law needs to render is in the state, so futures can be re-rendered without the
background files; :meth:`ProgressionLaw.redraw_future` replaces the randomness that is not yet
observed at a time (for the true predictive distribution).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
from sciflow_domains.medical.synthprog.config import SynthProgConfig


@dataclass
class SubjectState:
    """The hidden truth of one pseudo-subject.

    Attributes:
        fields: name → (H, W) float32 map (``"background"`` always; law-specific others).
        params: name → float scalar parameter (growth rate, diffusivity, slice index, …).
        events: column → (L, ...) array, one row per event (MS lesions); empty for other laws.
    """

    fields: dict[str, np.ndarray]
    params: dict[str, float]
    events: dict[str, np.ndarray] = field(default_factory=dict)


class ProgressionLaw(ABC):
    """Draws and renders subjects of one kind; constructed from the generator config."""

    #: Which visible labels the masks use, e.g. ``{1: "atrophy"}``.
    labels: dict[int, str] = {}

    def __init__(self, config: SynthProgConfig):
        self.config = config
        self.params = config.law
        self.resolution = config.resolution
        self.px = config.px_scale

    @abstractmethod
    def draw(self, rng: np.random.Generator, times: np.ndarray) -> SubjectState:
        """Draw a subject whose visits are at ``times`` (K,) months (loads the background)."""

    @abstractmethod
    def render(self, state: SubjectState, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noise-free images (K, H, W) float32 in [0, 1] and label masks (K, H, W) uint8 at
        ``times`` (K,) months, non-decreasing and ≥ 0."""

    def redraw_future(
        self, state: SubjectState, t_obs: float, t_end: float, rng: np.random.Generator
    ) -> SubjectState:
        """A copy of ``state`` whose randomness after ``t_obs`` (up to ``t_end``) is redrawn.

        The default: nothing random happens after the first visit besides acquisition noise.
        """
        return state
