"""Generate satellite tiles from climate, land cover, month and place; roll out time series;
sweep one climate variable with the noise held fixed.

    sampler = sciflow.load_sampler("runs/satellite/conditional/checkpoints/last.ckpt")
    res = sampler.sample(climate=[[18.0, 2.5, 20.0]], landcover="Croplands", month=7,
                         location=[[48.25, 26.36]], num_samples=4, guidance_scale=2.0, seed=0)
    res.images                  # (4, 3, H, W) in [-1, 1]
    res.write_png("out/")       # and res.write_geotiff("out/") (UTM footprint, see io.py)
    sampler.what_if(field="precipitation", values=[0, 4, 8], climate=..., seed=0)  # (V, B, 3, H, W)
    sampler.rollout(first_image, "2019-01", months=12, location=(lat, lon))      # xarray Dataset

Conditions are in physical units (see :mod:`.sampler_conditions`); any omitted field takes
its learned null embedding. Guidance: ``v = v_null + w · (v_cond − v_null)`` with
``guidance_scale`` w (1: the plain conditional model; 0: exactly the unconditional one, all
fields null; > 1: stronger conditioning). The previous frame of the time-series model is a
control input and enters both terms.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from PIL import Image
from sciflow_domains.satellite.climate import FIELDS as CLIMATE_FIELDS
from sciflow_domains.satellite.data import ClimateNormalizer
from sciflow_domains.satellite.io import series_to_xarray, to_uint8, write_geotiff
from sciflow_domains.satellite.nets import IMAGE_KEY
from sciflow_domains.satellite.nets_conditioning import guided
from sciflow_domains.satellite.sampler_conditions import model_conditions

from sciflow.api import Sampler, SampleResult
from sciflow.atomic import atomic_write

DEFAULT_STEPS = 25
DEFAULT_SOLVER = "euler"


@dataclass
class SatelliteSamples(SampleResult):
    """Generated tiles. ``samples["image"]`` (B, 3, H, W) clipped to [-1, 1]; ``noise`` the
    prior draws they started from; ``conditions`` the given conditions in physical units, B rows
    each (``lat``/``lon`` for the location); ``gsd_m`` the training tiles' metres per pixel
    (None if unknown)."""

    conditions: dict[str, np.ndarray] = field(default_factory=dict)
    gsd_m: float | None = None

    @property
    def images(self) -> torch.Tensor:
        """(B, 3, H, W) float in [-1, 1]."""
        return self.samples[IMAGE_KEY]

    def to_uint8(self) -> np.ndarray:
        """(B, H, W, 3) uint8 RGB."""
        return np.stack([to_uint8(image).transpose(1, 2, 0) for image in self.images])

    def write_png(self, out_dir: str | os.PathLike, prefix: str = "sample") -> list[Path]:
        """``{prefix}_{i:04d}.png`` per tile in ``out_dir`` (written atomically)."""
        paths = []
        for i, pixels in enumerate(self.to_uint8()):
            path = Path(out_dir) / f"{prefix}_{i:04d}.png"
            with atomic_write(path, "wb") as handle:
                Image.fromarray(pixels).save(handle, format="PNG")
            paths.append(path)
        return paths

    def write_geotiff(
        self,
        out_dir: str | os.PathLike,
        lat=None,
        lon=None,
        gsd_m: float | None = None,
        prefix: str = "sample",
    ) -> list[Path]:
        """``{prefix}_{i:04d}.tif`` per tile: uint8 RGB GeoTIFF on the UTM footprint centred at
        (lat, lon) degrees with ``gsd_m`` m pixels (see :func:`.io.write_geotiff`).

        lat, lon: scalars or (B,) arrays; default the sampled location. gsd_m: default the
        training tiles' GSD."""
        batch = len(self.images)
        lat = self.conditions.get("lat") if lat is None else lat
        lon = self.conditions.get("lon") if lon is None else lon
        gsd_m = self.gsd_m if gsd_m is None else gsd_m
        if lat is None or lon is None or gsd_m is None:
            raise ValueError(
                "lat, lon, gsd_m: a GeoTIFF needs the tile centre and pixel size; pass them "
                "(the samples were drawn without a location or without a known GSD)"
            )
        lats = np.broadcast_to(np.asarray(lat, np.float64), (batch,))
        lons = np.broadcast_to(np.asarray(lon, np.float64), (batch,))
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, image in enumerate(self.images):
            path = out / f"{prefix}_{i:04d}.tif"
            partial = out / f".{path.name}.partial"
            try:  # rasterio writes by file name: write beside, then rename over the target
                tags = {
                    k: _tag(v[i]) for k, v in self.conditions.items() if k not in ("lat", "lon")
                }
                write_geotiff(partial, image, float(lats[i]), float(lons[i]), float(gsd_m), tags)
                os.replace(partial, path)
            finally:
                partial.unlink(missing_ok=True)
            paths.append(path)
        return paths

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """``samples.npz``, one PNG per tile and, with a known location, one GeoTIFF per tile."""
        paths = [*super().write(out_dir), *self.write_png(out_dir)]
        if "lat" in self.conditions and self.gsd_m is not None:
            paths += self.write_geotiff(out_dir)
        return paths


def _tag(value) -> str:
    array = np.asarray(value)
    return str(array.tolist()) if array.ndim else str(array.item())


def _add_months(date: str, months: int) -> str:
    """``"YYYY-MM"`` plus ``months`` → ``"YYYY-MM"``."""
    try:
        year, month = int(date[:4]), int(date[5:7])
    except (TypeError, ValueError) as err:
        raise ValueError(f"first_date: expected 'YYYY-MM', got {date!r}") from err
    if len(date) < 7 or date[4] != "-" or not 1 <= month <= 12:
        raise ValueError(f"first_date: expected 'YYYY-MM', got {date!r}")
    index = year * 12 + month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


class SatelliteSampler(Sampler):
    """Sampler of the satellite models; see the module docstring."""

    @property
    def model_kind(self) -> str:
        """``"conditional"``, ``"unconditional"``, ``"climate_map"`` or ``"timeseries"``."""
        return self.network.model_kind

    @property
    def info(self) -> dict:
        """The training data description (``SatelliteTask.data_info``), or {} when absent."""
        return getattr(self.task, "data_info", None) or {}

    @property
    def normalizer(self) -> ClimateNormalizer | None:
        state = self.info.get("normalizer")
        return ClimateNormalizer.from_dict(state) if state else None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.network.image_shape

    def conditions(self, num_samples: int | None = None, **given) -> tuple[dict, dict, int]:
        """``(cond, raw, B)`` of :func:`.sampler_conditions.model_conditions` on the device."""
        cond, raw, batch = model_conditions(
            self.normalizer, self.network.num_landcover, self.image_shape, num_samples, **given
        )
        return {k: v.to(self.device) for k, v in cond.items()}, raw, batch

    def _check_kind(self, cond: dict) -> None:
        kind = self.model_kind
        if kind == "timeseries" and "previous" not in cond:
            raise ValueError("previous: the time-series model needs the earlier frame (B, 3, H, W)")
        if kind != "timeseries" and ("previous" in cond or "lag" in cond):
            raise ValueError(f"previous, lag: only the time-series model reads them (this: {kind})")
        if kind != "climate_map" and "climate_map" in cond:
            raise ValueError(f"climate_map: only the climate-map model reads it (this: {kind})")

    def _solve(
        self,
        cond: dict,
        noise: torch.Tensor,
        guidance_scale: float,
        num_steps: int,
        solver: str,
        progress: bool,
    ):
        """Integrate from ``noise`` (B, 3, H, W) under ``cond`` with guidance."""
        self._check_kind(cond)
        network = self.network
        if any(name in cond for name in (*self.network.fields, "climate_map")):
            network = guided(self.network, guidance_scale)  # without conditions: one term
        with torch.no_grad():
            return self.engine.sample(
                network,
                noise.shape[0],
                context={"cond": cond},
                num_steps=num_steps,
                solver=solver,
                device=self.device,
                progress=progress,
                x0={IMAGE_KEY: noise},
            )

    def _images(self, solution) -> torch.Tensor:
        """The solution's tiles on CPU, clipped to the data range [-1, 1]."""
        return solution.x[IMAGE_KEY].detach().cpu().clamp(-1.0, 1.0)

    def noise(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Prior draws (B, 3, H, W) from ``generator``."""
        return self.engine.prior(batch, {}, generator, device=self.device)[IMAGE_KEY]

    def sample(
        self,
        climate=None,
        landcover=None,
        month=None,
        location=None,
        *,
        previous=None,
        lag=None,
        climate_map=None,
        num_samples: int | None = None,
        guidance_scale: float = 2.0,
        num_steps: int | None = DEFAULT_STEPS,
        solver: str | None = DEFAULT_SOLVER,
        seed: int | None = None,
        progress: bool = False,
    ) -> SatelliteSamples:
        """Draw tiles under the given conditions (module docstring; shapes in
        :mod:`.sampler_conditions`). ``seed`` fixes the noise (same seed, same tiles)."""
        num_steps = num_steps or DEFAULT_STEPS
        solver = solver or DEFAULT_SOLVER
        cond, raw, batch = self.conditions(
            num_samples,
            climate=climate,
            landcover=landcover,
            month=month,
            location=location,
            previous=previous,
            lag=lag,
            climate_map=climate_map,
        )
        noise = self.noise(batch, self.generator(seed))
        solution = self._solve(cond, noise, guidance_scale, num_steps, solver, progress)
        return SatelliteSamples(
            samples={IMAGE_KEY: self._images(solution)},
            times=solution.times.cpu(),
            num_function_evals=solution.num_function_evals,
            metadata={
                "domain": self.task.domain,
                "model_kind": self.model_kind,
                "solver": solver,
                "num_steps": num_steps,
                "seed": seed,
                "guidance_scale": guidance_scale,
            },
            noise={IMAGE_KEY: noise.cpu()},
            context={k: v.cpu() for k, v in cond.items()},
            conditions={k: v for k, v in raw.items() if k not in ("previous", "climate_map")},
            gsd_m=self.info.get("gsd_m"),
        )

    def what_if(
        self,
        field: str,
        values,
        climate,
        landcover=None,
        month=None,
        location=None,
        *,
        previous=None,
        lag=None,
        climate_map=None,
        num_samples: int | None = None,
        guidance_scale: float = 2.0,
        num_steps: int = DEFAULT_STEPS,
        solver: str = DEFAULT_SOLVER,
        seed: int | None = 0,
        progress: bool = False,
    ) -> torch.Tensor:
        """Tiles (V, B, 3, H, W) in [-1, 1] with one climate variable set to each of ``values``
        (V, in its physical unit) and everything else — the other conditions, the previous
        frame and the noise — held fixed. ``field``: ``"temperature"``, ``"precipitation"`` or
        ``"radiation"``; ``climate`` (B, 3) the base climate. A given ``climate_map`` has that
        channel set to the value everywhere."""
        if field not in CLIMATE_FIELDS:
            raise ValueError(f"field: expected one of {list(CLIMATE_FIELDS)}, got {field!r}")
        if climate is None:
            raise ValueError("climate: the what-if sweep needs the base climate (B, 3)")
        sweep = np.asarray(values, dtype=np.float64).reshape(-1)
        if not len(sweep) or not np.isfinite(sweep).all():
            raise ValueError(f"values: expected finite numbers, got {values!r}")
        column = CLIMATE_FIELDS.index(field)
        given = dict(landcover=landcover, month=month, location=location, previous=previous)
        given |= dict(lag=lag, climate=climate, climate_map=climate_map)
        _, raw, batch = self.conditions(num_samples, **given)
        noise = self.noise(batch, self.generator(seed))
        frames = []
        for value in sweep:
            changed = raw["climate"].copy()
            changed[:, column] = value
            swept = {**given, "climate": changed}
            if climate_map is not None:
                maps = raw["climate_map"].copy()
                maps[:, column] = value
                swept["climate_map"] = maps
            cond, _, _ = self.conditions(batch, **swept)
            solution = self._solve(cond, noise, guidance_scale, num_steps, solver, progress)
            frames.append(self._images(solution))
        return torch.stack(frames)

    def rollout(
        self,
        first_image,
        first_date: str,
        months: int = 12,
        location=None,
        climate=None,
        landcover=None,
        *,
        reference=None,
        guidance_scale: float = 2.0,
        num_steps: int = DEFAULT_STEPS,
        solver: str = DEFAULT_SOLVER,
        seed: int | None = 0,
        gsd_m: float | None = None,
        progress: bool = False,
    ) -> xr.Dataset:
        """Generate the ``months`` months after ``first_date``, each from the frame before it.

        Args:
            first_image: (3, H, W) in [-1, 1], the real tile of ``first_date`` ("YYYY-MM").
            location: (lat, lon) degrees of the tile centre (conditions and georeferences).
            climate: (months, 3) T, P, R of each generated month (NaN rows: null climate);
                None: no climate. landcover: id or IGBP name (None: null).
            reference: (months, 3, H, W) real tiles of the generated months; when given, each
                month is generated from the real frame before it (one-step forecasts) instead
                of the last generated one.
            seed: the noise of all months (same seed, same series).
            gsd_m: pixel size for the coordinates (default: the training tiles').

        Returns the Dataset of :func:`.io.series_to_xarray`: ``image`` (time, y, x, band) uint8
        with ``months`` times, the climate variables when given, and the sampler settings in
        ``attrs``.
        """
        if self.model_kind != "timeseries":
            raise ValueError(f"rollout: needs the time-series model, this one is {self.model_kind}")
        if not isinstance(months, int) or isinstance(months, bool) or months < 1:
            raise ValueError(f"months: expected a positive int, got {months!r}")
        if location is None:
            raise ValueError("location: the roll-out needs the tile centre (lat, lon) in degrees")
        gsd_m = gsd_m if gsd_m is not None else self.info.get("gsd_m")
        if gsd_m is None:
            raise ValueError("gsd_m: unknown for this checkpoint; pass the metres per pixel")
        dates = [_add_months(first_date, k) for k in range(1, months + 1)]
        climate_rows = None
        if climate is not None:
            climate_rows = np.asarray(climate, dtype=np.float64)
            if climate_rows.shape != (months, 3):
                raise ValueError(
                    f"climate: expected ({months}, 3) T, P, R, got {climate_rows.shape}"
                )
        real = None
        if reference is not None:
            real = torch.as_tensor(np.asarray(reference, dtype=np.float32))
            if tuple(real.shape) != (months, *self.image_shape):
                raise ValueError(
                    f"reference: expected ({months}, {self.image_shape}), got {tuple(real.shape)}"
                )
        previous = torch.as_tensor(np.asarray(first_image, dtype=np.float32))
        generator = self.generator(seed)
        frames = []
        for k, date in enumerate(dates):
            cond, _, _ = self.conditions(
                1,
                climate=None if climate_rows is None else climate_rows[k],
                landcover=landcover,
                month=int(date[5:7]),
                location=location,
                previous=previous,
                lag=1,
            )
            noise = self.noise(1, generator)
            solution = self._solve(cond, noise, guidance_scale, num_steps, solver, progress)
            frames.append(self._images(solution)[0])
            previous = frames[-1] if real is None else real[k]
        lat, lon = (float(v) for v in np.asarray(location, dtype=np.float64).reshape(2))
        ds = series_to_xarray(torch.stack(frames), dates, lat, lon, float(gsd_m), climate_rows)
        ds.attrs.update(
            first_date=first_date,
            model_kind=self.model_kind,
            guidance_scale=guidance_scale,
            num_steps=num_steps,
            solver=solver,
            seed=-1 if seed is None else seed,
            previous_frames="real" if real is not None else "generated",
        )
        return ds
