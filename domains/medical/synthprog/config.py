"""Parameters of the SynthProg generator (``docs/methods/medical.md`` §3.4), spec defaults.

Units: time in months; lengths in pixels *at H = 64* unless a name says ``mm`` (pixel lengths are
scaled by ``resolution / 64``); tumour diffusivities in mm²/day and proliferation rates per day
(converted with ``medical.data.DAYS_PER_MONTH``). A ``(low, high)`` pair is a uniform range.

The defaults here are the embedded default of the medical domain; ``configs/medical/synthprog.yaml``
repeats them as a file to copy and edit, read with :meth:`SynthProgConfig.from_yaml`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = ("ga", "ms", "tumour")
BACKGROUNDS = ("auto", "real", "builtin")
#: Pixel lengths in the parameters are given at this resolution.
REFERENCE_RESOLUTION = 64

Range = tuple[float, float]


@dataclass(frozen=True)
class VisitParams:
    """Visit schedule: ``K = min(min_visits + Poisson(extra_mean), max_visits)`` visits,
    ``t_1 = 0`` and gaps ``Gamma(shape, mean / shape) + offset`` months (the mean is per kind)."""

    min_visits: int = 3
    extra_mean: float = 2.0
    max_visits: int = 8
    gap_shape: float = 2.0
    gap_offset: float = 0.5


@dataclass(frozen=True)
class NuisanceParams:
    """Per-visit acquisition nuisances, applied after rendering (masks move with the image).

    ``registered=True`` removes the rigid jitter (rotation and shift) and keeps the intensity
    nuisances; ``bias_amplitude`` is the largest relative change of the 2nd-order polynomial bias
    field."""

    registered: bool = False
    rotation_sd_deg: float = 1.0
    shift_sd_px: float = 0.8
    gain: Range = (0.92, 1.08)
    gamma: Range = (0.93, 1.07)
    bias_amplitude: float = 0.05
    noise_sd: float = 0.02


@dataclass(frozen=True)
class AtrophyParams:
    """Geographic atrophy on the fundus photograph: ``R(t) = R0 + g·t`` grows through a lesion
    field φ; soft mask ``σ((R − φ)/edge_px)``, image ``B·(1 − c·m) + rim_gain·B·exp(−(φ−R)²/2)``."""

    gap_mean: float = 6.0
    crop_px: Range = (500.0, 800.0)
    crop_jitter: float = 0.03
    rotation_deg: float = 15.0
    intensity: Range = (0.15, 0.9)
    gamma: Range = (0.8, 1.25)
    max_seeds: int = 3
    seed_sd_frac: float = 0.1
    axis_ratio: Range = (0.7, 1.4)
    seed_offset_px: Range = (2.0, 6.0)
    noise_sigma_px: float = 3.0
    noise_amplitude_px: Range = (3.0, 6.0)
    r0_px: Range = (2.0, 7.0)
    growth_median: float = 0.27
    growth_log_sd: float = 0.5
    edge_px: float = 0.7
    contrast: Range = (0.5, 0.8)
    rim_gain: float = 0.1


@dataclass(frozen=True)
class MSParams:
    """MS lesions on an MNI axial slice: births are a Poisson process of rate λ per year from
    ``history_months`` before the first visit; each lesion is an ellipse whose scale follows
    ``s(a) = (1 − e^{−a/τ})·(residual + (1 − residual)·e^{−a/τ_s})`` at age a (grows to about
    its full size, then shrinks to ``residual`` of it), adding ``intensity`` to the FLAIR-like map
    ``0.6·GM + 0.45·WM + 0.05·CSF``."""

    gap_mean: float = 12.0
    slice_z: tuple[int, int] = (60, 120)
    rate_per_year: Range = (0.5, 2.0)
    history_months: float = 24.0
    wm_threshold: float = 0.9
    csf_margin_px: float = 1.0
    semi_axis_px: Range = (1.5, 5.0)
    tau_grow: Range = (1.0, 3.0)
    tau_shrink: Range = (6.0, 12.0)
    residual: float = 0.7
    intensity: Range = (0.3, 0.5)
    edge_px: float = 0.5


@dataclass(frozen=True)
class TumourParams:
    """Fisher–KPP tumour ``∂u/∂t = ∇·(D∇u) + ρu(1−u)`` with ``D = white_to_grey·D_g·WM + D_g·GM``,
    zero flux out of the tissue, seeded by a Gaussian blob in white matter. Visible: edema for
    ``edema < u ≤ core`` (hyperintense), enhancing core for ``u > core``, necrosis ``u > necrosis``.
    ``stability`` is the fraction of the explicit limit ``h²/(4·max D)`` used as time step."""

    gap_mean: float = 12.0
    slice_z: tuple[int, int] = (60, 120)
    d_grey: Range = (0.01, 0.05)
    white_to_grey: float = 10.0
    rho: Range = (0.005, 0.03)
    seed_sigma_mm: Range = (2.0, 5.0)
    seed_amplitude: float = 0.9
    wm_threshold: float = 0.9
    edema: float = 0.15
    core: float = 0.6
    necrosis: float = 0.95
    edema_gain: float = 0.3
    core_intensity: float = 0.85
    necrosis_intensity: float = 0.2
    edge: float = 0.02
    stability: float = 0.25


@dataclass(frozen=True)
class SynthProgConfig:
    """Everything the generator needs besides the seed.

    Attributes:
        kind: ``"ga"`` (retina), ``"ms"`` (brain lesions) or ``"tumour"`` (brain, Fisher–KPP).
        n_subjects: number of pseudo-subjects S.
        resolution: image side H in pixels.
        split: train/val/test fractions of the subjects (split by subject).
        background: ``"real"`` (files under ``$SCIFLOW_DATA_DIR/medical/backgrounds``),
            ``"builtin"`` (code-generated phantoms) or ``"auto"`` (real when present).
    """

    kind: str = "ga"
    n_subjects: int = 200
    resolution: int = 64
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    background: str = "auto"
    visits: VisitParams = field(default_factory=VisitParams)
    nuisance: NuisanceParams = field(default_factory=NuisanceParams)
    ga: AtrophyParams = field(default_factory=AtrophyParams)
    ms: MSParams = field(default_factory=MSParams)
    tumour: TumourParams = field(default_factory=TumourParams)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind: expected one of {KINDS}, got {self.kind!r}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"background: expected one of {BACKGROUNDS}, got {self.background!r}")
        if not isinstance(self.n_subjects, int) or self.n_subjects < 1:
            raise ValueError(f"n_subjects: expected a positive int, got {self.n_subjects!r}")
        if not isinstance(self.resolution, int) or self.resolution < 16:
            raise ValueError(f"resolution: expected an int >= 16, got {self.resolution!r}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(
                f"split: expected three non-negative fractions summing to 1, got {self.split!r}"
            )
        if not 1 <= self.visits.min_visits <= self.visits.max_visits:
            raise ValueError(
                "visits: expected 1 <= min_visits <= max_visits, got "
                f"{self.visits.min_visits} and {self.visits.max_visits}"
            )

    @property
    def law(self) -> AtrophyParams | MSParams | TumourParams:
        """The parameters of ``kind``."""
        return getattr(self, self.kind)

    @property
    def px_scale(self) -> float:
        """Factor from pixel lengths at H = 64 to pixels at ``resolution``."""
        return self.resolution / REFERENCE_RESOLUTION

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists), the inverse of :meth:`from_dict`."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthProgConfig:
        """Build from a nested dict; unknown keys raise ValueError naming them."""
        return _build(cls, values, "config")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> SynthProgConfig:
        """Read a YAML file of :meth:`to_dict` form (missing keys keep their defaults), then
        replace top-level fields with ``overrides`` (e.g. ``kind="ms", n_subjects=20``)."""
        values = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(values)}")
        return cls.from_dict({**values, **overrides})


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        nested = _NESTED.get(name) if cls is SynthProgConfig else None
        if nested is not None:
            kwargs[name] = _build(nested, value, f"{where}.{name}")
        elif isinstance(fields[name].default, tuple):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


_NESTED = {
    "visits": VisitParams,
    "nuisance": NuisanceParams,
    "ga": AtrophyParams,
    "ms": MSParams,
    "tumour": TumourParams,
}
