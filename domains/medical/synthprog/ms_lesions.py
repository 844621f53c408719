"""MS white-matter lesions: a Poisson process of births, each lesion an ellipse that grows and
partly resolves, on a FLAIR-like brain slice.

Births: rate λ ~ U(rate_per_year)/year on (−history, t_last]; each lesion is placed in deep white
matter (away from the ventricles) with semi-axes (a, b), angle θ and, at age α = t − t0 ≥ 0, scale

    s(α) = (1 − e^{−α/τ}) · (residual + (1 − residual)·e^{−α/τ_s}),

so it swells to about full size within τ (1–3 months) and shrinks towards ``residual`` = 0.7 of it
with τ_s (6–12 months): its area is π·a·b·s(α)². It adds ``intensity`` (0.3–0.5) to the image.
Births after an observation time are the unobserved randomness of :meth:`MSLesionLaw.redraw_future`.
"""

from __future__ import annotations

import numpy as np
from sciflow_domains.medical.synthprog.backgrounds import load_brain
from sciflow_domains.medical.synthprog.brain import draw_brain_slice, white_matter_sites
from sciflow_domains.medical.synthprog.law import ProgressionLaw, SubjectState

#: Columns of the lesion table (``SubjectState.events``), one row per lesion.
LESION_COLUMNS = (
    "birth",
    "row",
    "col",
    "semi_a",
    "semi_b",
    "angle",
    "tau",
    "tau_shrink",
    "intensity",
)


def lesion_scale(age: np.ndarray, tau: float, tau_shrink: float, residual: float) -> np.ndarray:
    """s(α) of the module docstring; 0 before birth (α ≤ 0). ``age``: any shape, months."""
    age = np.asarray(age, dtype=np.float64)
    positive = np.maximum(age, 0.0)
    grow = 1.0 - np.exp(-positive / tau)
    return np.where(age > 0, grow * (residual + (1 - residual) * np.exp(-positive / tau_shrink)), 0)


class MSLesionLaw(ProgressionLaw):
    """SynthProg-MS. Fields: ``background``, ``brain``, ``gm``, ``wm``. Params: ``rate``
    (births per month), ``slice_z``, ``flip``, ``mm_per_px``. Events: :data:`LESION_COLUMNS`."""

    labels = {1: "lesion"}

    def draw(self, rng: np.random.Generator, times: np.ndarray) -> SubjectState:
        p = self.params
        fields, params = draw_brain_slice(
            load_brain(self.config.background), rng, self.resolution, p.slice_z
        )
        params["rate"] = rng.uniform(*p.rate_per_year) / 12.0
        state = SubjectState(fields=fields, params=params, events=_empty_table())
        return self._add_births(state, -p.history_months, float(np.max(times)), rng)

    def redraw_future(
        self, state: SubjectState, t_obs: float, t_end: float, rng: np.random.Generator
    ) -> SubjectState:
        """Keep the lesions born by ``t_obs``; draw new births on (t_obs, t_end]."""
        keep = state.events["birth"] <= t_obs
        past = SubjectState(
            fields=state.fields,
            params=state.params,
            events={k: v[keep] for k, v in state.events.items()},
        )
        return self._add_births(past, t_obs, t_end, rng)

    def render(self, state: SubjectState, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p, h = self.params, self.resolution
        times = np.asarray(times, dtype=np.float64)
        base = state.fields["background"].astype(np.float64)
        rows, cols = np.mgrid[0:h, 0:h].astype(np.float64)
        added = np.zeros((len(times), h, h))
        labels = np.zeros((len(times), h, h), dtype=np.uint8)
        table = state.events
        for i in range(len(table["birth"])):
            scale = lesion_scale(
                times - table["birth"][i], table["tau"][i], table["tau_shrink"][i], p.residual
            )
            if not np.any(scale > 0):
                continue
            a, b, angle = table["semi_a"][i], table["semi_b"][i], table["angle"][i]
            du, dv = rows - table["row"][i], cols - table["col"][i]
            u = du * np.cos(angle) + dv * np.sin(angle)
            v = -du * np.sin(angle) + dv * np.cos(angle)
            radius = np.sqrt((u / a) ** 2 + (v / b) ** 2)  # elliptic radius, 1 on the full outline
            for k in np.flatnonzero(scale > 0):
                signed = (scale[k] - radius) * np.sqrt(a * b) / (p.edge_px * self.px)
                soft = 1.0 / (1.0 + np.exp(-np.clip(signed, -60, 60)))
                added[k] = np.maximum(added[k], table["intensity"][i] * soft)
                labels[k] |= (radius < scale[k]).astype(np.uint8)
        images = np.clip(base[None] + added, 0.0, 1.0).astype(np.float32)
        return images, labels

    def _add_births(
        self, state: SubjectState, start: float, end: float, rng: np.random.Generator
    ) -> SubjectState:
        """``state`` plus Poisson(rate·(end − start)) lesions born uniformly on (start, end]."""
        p = self.params
        count = int(rng.poisson(state.params["rate"] * max(end - start, 0.0)))
        sites = white_matter_sites(state.fields, p.wm_threshold, p.csf_margin_px * self.px)
        chosen = sites[rng.integers(0, len(sites), size=count)] + rng.uniform(-0.5, 0.5, (count, 2))
        new = {
            "birth": end - rng.uniform(0.0, 1.0, count) * (end - start),
            "row": chosen[:, 0],
            "col": chosen[:, 1],
            "semi_a": rng.uniform(*p.semi_axis_px, count) * self.px,
            "semi_b": rng.uniform(*p.semi_axis_px, count) * self.px,
            "angle": rng.uniform(0.0, np.pi, count),
            "tau": rng.uniform(*p.tau_grow, count),
            "tau_shrink": rng.uniform(*p.tau_shrink, count),
            "intensity": rng.uniform(*p.intensity, count),
        }
        events = {k: np.concatenate([state.events[k], new[k]]) for k in LESION_COLUMNS}
        order = np.argsort(events["birth"], kind="stable")
        return SubjectState(state.fields, state.params, {k: v[order] for k, v in events.items()})


def _empty_table() -> dict[str, np.ndarray]:
    return {k: np.zeros(0) for k in LESION_COLUMNS}
