"""Tumour growth by the 2-D Fisher–KPP equation on a brain slice.

``∂u/∂t = ∇·(D∇u) + ρ·u·(1 − u)`` with ``D = 10·D_g·WM + D_g·GM`` (mm²/day), zero flux out of the
tissue (GM + WM > 0.1) and a Gaussian seed in white matter. In a homogeneous medium the front
travels at ``2·√(D·ρ)`` once the grid resolves its width ``√(D/ρ)``. Rendering: edema
``edema < u ≤ core`` is hyperintense, the enhancing core ``u > core`` is bright and necrosis
``u > necrosis`` dark; labels 1 = edema, 2 = enhancing core, 3 = necrosis.
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.medical.data import DAYS_PER_MONTH
from sciflow_domains.medical.synthprog.backgrounds import load_brain
from sciflow_domains.medical.synthprog.brain import draw_brain_slice, white_matter_sites
from sciflow_domains.medical.synthprog.law import ProgressionLaw, SubjectState

#: Tissue probability (GM + WM) above which a pixel belongs to the simulation domain.
TISSUE_THRESHOLD = 0.1


def solve_fisher_kpp(
    u0: np.ndarray,
    diffusivity: np.ndarray,
    rho: float,
    spacing: float,
    times: np.ndarray,
    domain: np.ndarray | None = None,
    stability: float = 0.9,
) -> np.ndarray:
    """Explicit finite-difference solution of Fisher–KPP, zero flux at the domain's boundary.

    Args:
        u0: (H, W) initial density in [0, 1].
        diffusivity: (H, W) D ≥ 0 (length²/time); a face between two cells uses their mean.
        rho: proliferation rate (1/time).
        spacing: grid spacing h (length).
        times: (K,) non-decreasing output times ≥ 0 (same time unit).
        domain: (H, W) bool cells that take part (default all); no flux crosses its edge.
        stability: time step as a fraction of the explicit limit h²/(4·max D), in (0, 1].

    Returns:
        (K, H, W) float64 density at ``times``.
    """
    u = np.array(u0, dtype=np.float64)
    d = np.asarray(diffusivity, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if u.ndim != 2 or d.shape != u.shape:
        raise ValueError(f"u0, diffusivity: expected equal (H, W) shapes, got {u.shape}, {d.shape}")
    if times.ndim != 1 or np.any(np.diff(times) < 0) or (times.size and times[0] < 0):
        raise ValueError(f"times: expected non-decreasing values >= 0, got {times}")
    if not (0 < stability <= 1) or spacing <= 0 or rho < 0 or np.any(d < 0):
        raise ValueError(
            "expected 0 < stability <= 1, spacing > 0, rho >= 0 and diffusivity >= 0, got "
            f"{stability}, {spacing}, {rho}, min D {d.min()}"
        )
    inside = np.ones(u.shape, bool) if domain is None else np.asarray(domain, bool)
    u = np.where(inside, u, 0.0)
    face_rows = np.where(inside[1:] & inside[:-1], 0.5 * (d[1:] + d[:-1]), 0.0) / spacing**2
    face_cols = np.where(inside[:, 1:] & inside[:, :-1], 0.5 * (d[:, 1:] + d[:, :-1]), 0.0)
    face_cols = face_cols / spacing**2
    d_max = max(float(face_rows.max(initial=0)), float(face_cols.max(initial=0)))
    dt_max = stability / (4 * d_max) if d_max > 0 else np.inf
    out, now = np.empty((len(times), *u.shape)), 0.0
    for k, target in enumerate(times):
        span = target - now
        steps = int(np.ceil(span / dt_max)) if np.isfinite(dt_max) else 1
        dt = span / max(steps, 1)
        for _ in range(steps if span > 0 else 0):
            flux_rows = face_rows * (u[1:] - u[:-1])
            flux_cols = face_cols * (u[:, 1:] - u[:, :-1])
            change = rho * u * (1.0 - u)
            change[:-1] += flux_rows
            change[1:] -= flux_rows
            change[:, :-1] += flux_cols
            change[:, 1:] -= flux_cols
            u += dt * change
        now = target
        out[k] = u
    return out


class TumourLaw(ProgressionLaw):
    """SynthProg-tumour. Fields: ``background``, ``brain``, ``gm``, ``wm``. Params: ``d_grey``
    (mm²/day), ``rho`` (1/day), ``seed_row``, ``seed_col`` (px), ``seed_sigma`` (mm), ``slice_z``,
    ``flip``, ``mm_per_px``."""

    labels = {1: "edema", 2: "enhancing core", 3: "necrosis"}

    def draw(self, rng: np.random.Generator, times: np.ndarray) -> SubjectState:
        p = self.params
        fields, params = draw_brain_slice(
            load_brain(self.config.background), rng, self.resolution, p.slice_z
        )
        sites = white_matter_sites(fields, p.wm_threshold, 0.0)
        seed = sites[rng.integers(0, len(sites))] + rng.uniform(-0.5, 0.5, 2)
        params.update(
            d_grey=rng.uniform(*p.d_grey),
            rho=rng.uniform(*p.rho),
            seed_row=float(seed[0]),
            seed_col=float(seed[1]),
            seed_sigma=rng.uniform(*p.seed_sigma_mm),
        )
        return SubjectState(fields=fields, params=params)

    def density(self, state: SubjectState, times: np.ndarray) -> np.ndarray:
        """Tumour density u at ``times`` (K,) months: (K, H, W) float64 in [0, 1]."""
        p, f, q = self.params, state.fields, state.params
        h = self.resolution
        rows, cols = np.mgrid[0:h, 0:h].astype(np.float64)
        distance2 = ((rows - q["seed_row"]) ** 2 + (cols - q["seed_col"]) ** 2) * q[
            "mm_per_px"
        ] ** 2
        u0 = p.seed_amplitude * np.exp(-distance2 / (2 * q["seed_sigma"] ** 2))
        diffusivity = q["d_grey"] * (p.white_to_grey * f["wm"] + f["gm"]).astype(np.float64)
        domain = (f["gm"] + f["wm"]) > TISSUE_THRESHOLD
        days = np.asarray(times, dtype=np.float64) * DAYS_PER_MONTH
        return solve_fisher_kpp(
            u0, diffusivity, q["rho"], q["mm_per_px"], days, domain, p.stability
        )

    def render(self, state: SubjectState, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        u = self.density(state, times)
        base = state.fields["background"].astype(np.float64)[None]

        def step(level: float) -> np.ndarray:
            return 1.0 / (1.0 + np.exp(-np.clip((u - level) / p.edge, -60, 60)))

        edema, core, necrosis = step(p.edema), step(p.core), step(p.necrosis)
        lesion = (1 - necrosis) * p.core_intensity + necrosis * p.necrosis_intensity
        images = (1 - core) * (base + p.edema_gain * edema * (base > 0)) + core * lesion
        labels = (u > p.edema).astype(np.uint8) + (u > p.core) + (u > p.necrosis)
        return np.clip(images, 0.0, 1.0).astype(np.float32), labels.astype(np.uint8)
