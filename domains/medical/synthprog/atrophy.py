"""Geographic atrophy (GA) on the fundus photograph: a front R(t) = R0 + g·t through a lesion field.

The lesion field φ (pixels) is the smallest of 1–3 area-preserving anisotropic distances to seeds
near the fovea, plus smooth noise; the atrophy at time t is ``{φ < R(t)}``. Without noise and with
one seed its area is exactly π·R(t)², so √(area/π) grows linearly at g px/month (clinical GA grows
linearly in √area, ≈ 0.3 mm/year). Image: ``I = B·(1 − c·m) + rim·B·exp(−((φ − R)/s)²/2)`` with the
soft mask ``m = σ((R − φ)/edge)`` (hypo-autofluorescent lesion, optional hyper-fluorescent rim).
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.medical.synthprog.backgrounds import RETINA_SIDE_PX, load_retina
from sciflow_domains.medical.synthprog.law import ProgressionLaw, SubjectState
from scipy import ndimage


class AtrophyLaw(ProgressionLaw):
    """SynthProg-GA. Fields: ``background`` B, ``phi`` φ. Params: ``r0``, ``growth`` (px and
    px/month at this resolution), ``contrast`` c, and the crop (``crop_px``, ``angle_deg``,
    ``flip``, ``gamma``, ``fovea_row``, ``fovea_col``, ``n_seeds``)."""

    labels = {1: "atrophy"}

    def draw(self, rng: np.random.Generator, times: np.ndarray) -> SubjectState:
        p, h = self.params, self.resolution
        background, anatomy = self._background(rng)
        fovea = np.array([anatomy["fovea_row"], anatomy["fovea_col"]])
        n_seeds = int(rng.integers(1, p.max_seeds + 1))
        first = fovea + rng.normal(0.0, p.seed_sd_frac * h, size=2)
        seeds = [first]
        for _ in range(n_seeds - 1):
            angle = rng.uniform(0, 2 * np.pi)
            offset = rng.uniform(*p.seed_offset_px) * self.px
            seeds.append(first + offset * np.array([np.sin(angle), np.cos(angle)]))
        rows, cols = np.mgrid[0:h, 0:h].astype(np.float64)
        phi = np.full((h, h), np.inf)
        for seed in seeds:
            ratio, angle = rng.uniform(*p.axis_ratio), rng.uniform(0, np.pi)
            du, dv = rows - seed[0], cols - seed[1]
            u = du * np.cos(angle) + dv * np.sin(angle)
            v = -du * np.sin(angle) + dv * np.cos(angle)
            phi = np.minimum(phi, np.sqrt(ratio * u**2 + v**2 / ratio))
        amplitude = rng.uniform(*p.noise_amplitude_px) * self.px
        phi += amplitude * _unit_smooth_noise(rng, (h, h), p.noise_sigma_px * self.px)
        params = {
            **anatomy,
            "n_seeds": float(n_seeds),
            "noise_amplitude": amplitude,
            "r0": rng.uniform(*p.r0_px) * self.px,
            "growth": rng.lognormal(np.log(p.growth_median), p.growth_log_sd) * self.px,
            "contrast": rng.uniform(*p.contrast),
        }
        fields = {"background": background, "phi": phi.astype(np.float32)}
        return SubjectState(fields=fields, params=params)

    def render(self, state: SubjectState, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.params
        b, phi = state.fields["background"], state.fields["phi"].astype(np.float64)
        radius = state.params["r0"] + state.params["growth"] * np.asarray(times)[:, None, None]
        soft = 1.0 / (1.0 + np.exp(-np.clip((radius - phi) / (p.edge_px * self.px), -60, 60)))
        rim = p.rim_gain * b * np.exp(-0.5 * ((phi - radius) / self.px) ** 2)
        images = np.clip(b * (1.0 - state.params["contrast"] * soft) + rim, 0.0, 1.0)
        return images.astype(np.float32), (phi < radius).astype(np.uint8)

    def _background(self, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float]]:
        """A pseudo-subject crop of the fundus: (H, H) float32 in ``intensity`` and its params."""
        p, h = self.params, self.resolution
        retina = load_retina(self.config.background)
        crop = rng.uniform(*p.crop_px) * min(retina.green.shape) / RETINA_SIDE_PX
        angle = np.deg2rad(rng.uniform(-p.rotation_deg, p.rotation_deg))
        flip = bool(rng.integers(0, 2))
        gamma = rng.uniform(*p.gamma)
        centre = np.asarray(retina.fovea) + rng.normal(0.0, p.crop_jitter * crop, size=2)
        # output pixel q (centred) -> source point centre + M q, M = rotation · flip · scale
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        mirror = np.diag([1.0, -1.0 if flip else 1.0])
        m = rotation @ mirror * (crop / h)
        factor = max(1, int(crop // h))  # block-average to about one source pixel per output
        source = retina.reduced(factor)
        q = np.stack(np.mgrid[0:h, 0:h], axis=-1).reshape(-1, 2) - (h - 1) / 2
        points = (centre + q @ m.T - (factor - 1) / 2) / factor
        sample = ndimage.map_coordinates(source, points.T, order=1, mode="nearest")
        b = sample.reshape(h, h)
        b = (b - b.min()) / max(b.max() - b.min(), 1e-12)
        low, high = p.intensity
        background = (low + (high - low) * b**gamma).astype(np.float32)
        fovea = np.linalg.solve(m, np.asarray(retina.fovea) - centre) + (h - 1) / 2
        anatomy = {
            "crop_px": float(crop),
            "angle_deg": float(np.rad2deg(angle)),
            "flip": float(flip),
            "gamma": float(gamma),
            "fovea_row": float(fovea[0]),
            "fovea_col": float(fovea[1]),
        }
        return background, anatomy


def _unit_smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float):
    """Gaussian-filtered white noise rescaled to unit standard deviation."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return noise / max(noise.std(), 1e-12)
