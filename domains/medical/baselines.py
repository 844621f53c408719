"""Forecasts without learning: copy-forward (the last visit) and linear extrapolation in image
space from the last two visits.

Both follow the sampler's convention (``MedicalSampler.forecast``): images ``(B, C, R, R)`` in
[0, 1] and gaps ``dt`` ``(B,)`` months in, a :class:`Forecast` whose ``images`` are
``(B, S, C, R, R)`` in [0, 1] out (S = ``num_samples`` identical copies; nothing is random), and
``nfe = 0`` network evaluations. They additionally take the visit before the input,
``previous`` ``(B, C, R, R)``, and its gap ``gap`` ``(B,)`` = t_last − t_prev months (NaN where
the input is a first visit); copy-forward ignores them.

Linear extrapolation continues the per-pixel change between the two last visits at its rate:
``x̂ = clip(x_last + (x_last − x_prev)·dt / gap, 0, 1)``; an item without a previous visit falls
back to copy-forward (as a pair has no rate).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Forecast:
    """Forecast images ``(B, S, C, R, R)`` in [0, 1] and the network evaluations spent."""

    images: torch.Tensor
    nfe: int = 0


def _check_images(images, name: str) -> torch.Tensor:
    images = torch.as_tensor(images, dtype=torch.float32)
    if images.ndim != 4:
        raise ValueError(f"{name}: expected (B, C, R, R) images, got shape {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if images.numel() and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
        raise ValueError(
            f"{name}: expected intensities in [0, 1], got [{images.min():.4g}, {images.max():.4g}]"
        )
    return images


def _check_gaps(values, name: str, batch: int, allow_nan: bool = False) -> torch.Tensor:
    values = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if values.shape != (batch,):
        raise ValueError(f"{name}: expected ({batch},) months, got shape {tuple(values.shape)}")
    present = ~torch.isnan(values) if allow_nan else torch.ones_like(values, dtype=torch.bool)
    bad = present & ~(torch.isfinite(values) & (values >= 0))
    if bad.any():
        raise ValueError(f"{name}: expected finite months >= 0, got {values[bad][:3].tolist()}")
    return values


def _repeat(images: torch.Tensor, num_samples: int) -> torch.Tensor:
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
    return images[:, None].expand(-1, num_samples, -1, -1, -1).clone()


class CopyForward:
    """The identity forecast: the future equals the last visit."""

    model_kind = "copy_forward"
    uses_history = False

    def forecast(
        self,
        images,
        dt,
        *,
        num_steps: int | None = None,
        num_samples: int = 1,
        seed: int | None = None,
        previous=None,
        gap=None,
    ) -> Forecast:
        """``images`` (B, C, R, R), ``dt`` (B,) → ``Forecast.images`` (B, S, C, R, R) copies."""
        images = _check_images(images, "images")
        _check_gaps(dt, "dt", len(images))
        return Forecast(_repeat(images, num_samples))


class LinearExtrapolation:
    """Per-pixel linear extrapolation from the last two visits (module docstring)."""

    model_kind = "linear"
    uses_history = True

    def forecast(
        self,
        images,
        dt,
        *,
        num_steps: int | None = None,
        num_samples: int = 1,
        seed: int | None = None,
        previous=None,
        gap=None,
    ) -> Forecast:
        """``images`` (B, C, R, R) last visits, ``dt`` (B,) months ahead, ``previous``
        (B, C, R, R) the visits before and ``gap`` (B,) their distance to the last visit
        (NaN: no previous visit; both None: every item falls back to copy-forward)."""
        images = _check_images(images, "images")
        dt = _check_gaps(dt, "dt", len(images))
        if previous is None and gap is None:
            return Forecast(_repeat(images, num_samples))
        if previous is None or gap is None:
            raise ValueError("previous, gap: give both (or neither, for copy-forward)")
        previous = _check_images(previous, "previous")
        if previous.shape != images.shape:
            raise ValueError(
                f"previous: expected the shape of images {tuple(images.shape)}, "
                f"got {tuple(previous.shape)}"
            )
        gap = _check_gaps(gap, "gap", len(images), allow_nan=True)
        has_rate = ~torch.isnan(gap)
        if (gap[has_rate] <= 0).any():
            raise ValueError(f"gap: expected > 0 months where given, got {gap[has_rate].tolist()}")
        ratio = torch.where(has_rate, dt / torch.where(has_rate, gap, 1.0), 0.0)
        step = torch.where(has_rate.view(-1, 1, 1, 1), images - previous, 0.0)
        forecast = (images + step * ratio.view(-1, 1, 1, 1)).clamp(0.0, 1.0)
        return Forecast(_repeat(forecast, num_samples))


#: Baselines by name, as the benchmark spec names them.
BASELINES = {"copy_forward": CopyForward, "linear": LinearExtrapolation}
