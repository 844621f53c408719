"""Forecast future visits with a trained medical model.

    sampler = sciflow.load_sampler("runs/medical/imageflownet_synthprog/checkpoints/last.ckpt")
    out = sampler.forecast(images, dt, num_samples=1, seed=0)   # images (B, C, R, R), dt months
    out.images                       # (B, S, C, R, R) in [0, 1]
    out.write_panels("panels/", truths=x1)    # input | predicted | truth | difference PNGs
    out.write_nifti("nifti/", affine=affine)  # one NIfTI per item (and sample)
    path = sampler.trajectory(images, torch.tensor([0.0, 6.0, 12.0, 24.0]))   # (B, T, C, R, R)

Deterministic models (ImageFlowNet-ODE, the UNet, latent FM without source noise) compute one
forecast and repeat it ``num_samples`` times; stochastic ones (ImageFlowNet-SDE, latent FM with
source noise) draw ``num_samples`` independent futures, reproducible by ``seed``. ``nfe`` counts
network evaluations per forecast (the encoder–decoder or UNet pass is one, each latent field
evaluation one more).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sciflow_domains.medical.io import check_affine, write_nifti, write_panel

from sciflow.api import Sampler

PathLike = str | os.PathLike


@dataclass
class Forecast:
    """Forecasts of B inputs, S samples each.

    Attributes:
        images: (B, S, C, R, R) float32 in [0, 1], on CPU.
        dt: (B,) months ahead.
        nfe: network evaluations per forecast.
        inputs: (B, C, R, R) the images forecast from.
        model_kind: the model's kind (``sampler.model_kind``).
        metadata: seed, num_steps.
    """

    images: torch.Tensor
    dt: torch.Tensor
    nfe: int
    inputs: torch.Tensor
    model_kind: str
    metadata: dict = field(default_factory=dict)

    def write_panels(
        self,
        out_dir: PathLike,
        inputs: torch.Tensor | np.ndarray | None = None,
        truths: torch.Tensor | np.ndarray | None = None,
        sample: int = 0,
    ) -> list[Path]:
        """One PNG per item, ``panel_{b:03d}.png``: input, predicted (sample ``sample``), truth
        and the signed difference predicted − truth. Without ``truths`` the third panel repeats
        the input and the difference is predicted − input (the predicted change).

        inputs, truths: (B, C, R, R) in [0, 1] (``inputs`` defaults to the forecast's own);
        multi-channel images show their first channel.
        """
        b, s = self.images.shape[:2]
        if not 0 <= sample < s:
            raise ValueError(f"sample: expected an index in [0, {s}), got {sample}")
        shown_inputs = _batch_array(self.inputs if inputs is None else inputs, "inputs", b)
        titles = ("input", "predicted", "truth", "predicted - truth")
        if truths is None:
            shown_truths = shown_inputs
            titles = ("input", "predicted", "input (no truth)", "predicted - input")
        else:
            shown_truths = _batch_array(truths, "truths", b)
        predicted = self.images[:, sample].numpy()
        paths = []
        for k in range(b):
            target = Path(out_dir) / f"panel_{k:03d}.png"
            with _atomic_target(target) as tmp:
                write_panel(
                    tmp, shown_inputs[k, 0], predicted[k, 0], shown_truths[k, 0], titles=titles
                )
            paths.append(target)
        return paths

    def write_nifti(
        self, out_dir: PathLike, affine: np.ndarray | torch.Tensor | None = None
    ) -> list[Path]:
        """One NIfTI per item, ``forecast_{b:03d}.nii.gz``, holding the (R, R) image of a single
        channel and sample, else (R, R, 1, S·C) (samples outer, channels inner on the 4th axis).

        affine: (4, 4) for every item, (B, 4, 4) one per item, or None (identity); it is
        written unchanged, e.g. the affine of the input slice.
        """
        b, s, c = self.images.shape[:3]
        affines = _affines(affine, b)
        paths = []
        for k in range(b):
            stack = self.images[k].reshape(s * c, *self.images.shape[3:]).numpy()  # (S·C, R, R)
            data = stack[0] if s * c == 1 else np.moveaxis(stack, 0, -1)[:, :, None]
            target = Path(out_dir) / f"forecast_{k:03d}.nii.gz"
            with _atomic_target(target) as tmp:
                write_nifti(tmp, data, affines[k])
            paths.append(target)
        return paths


@dataclass
class ForecastTrajectory:
    """Forecasts of B inputs at T horizons (one sample path).

    Attributes:
        images: (B, T, C, R, R) float32 in [0, 1], on CPU.
        dt: (T,) months ahead, non-decreasing.
        nfe: network evaluations for the whole trajectory.
        inputs: (B, C, R, R).
    """

    images: torch.Tensor
    dt: torch.Tensor
    nfe: int
    inputs: torch.Tensor


class MedicalSampler(Sampler):
    """Forecasts with a trained :class:`~.task.ForecastTask` (EMA weights unless ``use_ema``
    is False). See the module docstring."""

    def __init__(self, task, use_ema: bool = True):
        super().__init__(task, use_ema=use_ema)
        self.data_info = getattr(task, "data_info", None)

    @property
    def model_kind(self) -> str:
        """``"imageflownet_ode"``, ``"imageflownet_sde"``, ``"latent_fm"`` or ``"unet"``."""
        return self.network.kind

    def sample(self, *args, **kwargs):
        raise TypeError(
            "medical models forecast from images: use sampler.forecast(images, dt, ...) or "
            "sampler.trajectory(images, dt_grid)"
        )

    @torch.no_grad()
    def forecast(
        self,
        images: torch.Tensor | np.ndarray,
        dt: torch.Tensor | Sequence[float] | float,
        *,
        num_steps: int | None = None,
        num_samples: int = 1,
        seed: int | None = None,
    ) -> Forecast:
        """Forecast each image ``dt`` months ahead.

        Args:
            images: (B, C, R, R) in [0, 1], the last observed visit of each item.
            dt: (B,) months ahead (>= 0), or one number for all.
            num_steps: solver steps (default: the model's).
            num_samples: futures per item, S (deterministic models repeat the one forecast).
            seed: the randomness of stochastic models (None: a random seed).
        """
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
        x = self._images(images)
        gaps = self._gaps(dt, x.shape[0])
        generator = self.generator(seed)
        repeats = num_samples if self.network.stochastic else 1
        out, nfe = self.network.forecast(
            x.repeat_interleave(repeats, 0), gaps.repeat_interleave(repeats), num_steps, generator
        )
        out = out.clamp(0, 1).reshape(x.shape[0], repeats, *x.shape[1:])
        out = out.expand(-1, num_samples, -1, -1, -1)
        return Forecast(
            images=out.float().cpu().contiguous(),
            dt=gaps.cpu(),
            nfe=nfe,
            inputs=x.cpu(),
            model_kind=self.model_kind,
            metadata={"seed": seed, "num_steps": num_steps},
        )

    @torch.no_grad()
    def trajectory(
        self,
        images: torch.Tensor | np.ndarray,
        dt_grid: torch.Tensor | Sequence[float],
        *,
        num_steps: int | None = None,
        seed: int | None = None,
    ) -> ForecastTrajectory:
        """Forecasts of every image at each horizon of ``dt_grid`` (T,) months, non-decreasing
        and >= 0. Flow models continue one path through the horizons (coherent SDE paths)."""
        x = self._images(images)
        grid = torch.as_tensor(dt_grid, dtype=x.dtype, device=x.device)
        if grid.dim() != 1 or len(grid) < 1 or (grid < 0).any() or (grid.diff() < 0).any():
            raise ValueError(
                f"dt_grid: expected a 1-D non-decreasing sequence of months >= 0, got {dt_grid!r}"
            )
        out, nfe = self.network.trajectory(x, grid, num_steps, self.generator(seed))
        return ForecastTrajectory(
            images=out.clamp(0, 1).float().cpu(), dt=grid.cpu(), nfe=nfe, inputs=x.cpu()
        )

    def _images(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(B, C, R, R) in [0, 1] as a float tensor on the model's device."""
        x = torch.as_tensor(images, dtype=torch.float32).to(self.device)
        net = self.network
        c, r = net.in_channels, net.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, r, r):
            raise ValueError(
                f"images: expected (B, {c}, {r}, {r}) (the model's channels and size), got "
                f"{tuple(x.shape)}"
            )
        if not torch.isfinite(x).all() or x.min() < -1e-6 or x.max() > 1 + 1e-6:
            raise ValueError("images: expected finite intensities in [0, 1]")
        return x

    def _gaps(self, dt: torch.Tensor | Sequence[float] | float, batch: int) -> torch.Tensor:
        """dt as a (B,) float tensor of months >= 0 on the model's device."""
        gaps = torch.as_tensor(dt, dtype=torch.float32).to(self.device)
        if gaps.dim() == 0:
            gaps = gaps.expand(batch)
        if gaps.shape != (batch,):
            raise ValueError(
                f"dt: expected ({batch},) months or one number, got {tuple(gaps.shape)}"
            )
        if not torch.isfinite(gaps).all() or (gaps < 0).any():
            raise ValueError(f"dt: expected finite months >= 0, got {gaps.tolist()}")
        return gaps


def _batch_array(values: torch.Tensor | np.ndarray, name: str, batch: int) -> np.ndarray:
    """(B, C, R, R) as a float numpy array; raise naming ``name`` on another batch size."""
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else values
    array = np.asarray(array, dtype=np.float32)
    if array.ndim != 4 or array.shape[0] != batch:
        raise ValueError(f"{name}: expected ({batch}, C, R, R), got {array.shape}")
    return array


def _affines(affine: np.ndarray | torch.Tensor | None, batch: int) -> list[np.ndarray]:
    """One checked (4, 4) affine per item from None, (4, 4) or (B, 4, 4)."""
    if affine is None:
        return [np.eye(4)] * batch
    array = np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine, np.float64)
    if array.shape == (4, 4):
        return [check_affine(array)] * batch
    if array.shape != (batch, 4, 4):
        raise ValueError(f"affine: expected (4, 4) or ({batch}, 4, 4), got {array.shape}")
    return [check_affine(a, name=f"affine[{k}]") for k, a in enumerate(array)]


@contextlib.contextmanager
def _atomic_target(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` with its suffixes (so writers pick the format);
    rename it over ``target`` on success, delete it on error."""
    suffix = "".join(target.suffixes)
    stem = target.name[: len(target.name) - len(suffix)]
    tmp = target.with_name(f".{stem}.{os.getpid()}.tmp{suffix}")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
