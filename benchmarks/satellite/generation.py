"""Climate-conditioned satellite tiles (issue #7): unconditional vs conditional vs climate-map vs
time-series model on the held-out months (Decembers of the EcoMapper example set, 32 px).

For every held-out (place, month, crop) each model generates one tile from that condition (the
time-series model from the latest earlier real month of the same crop) and is scored against
the real tile (:mod:`sciflow_domains.satellite.metrics`):

* paired: SSIM (EcoMapper settings), PSNR, colour-moment and texture distances;
* distributional: FD-landcover / KID-landcover on the features of the land-cover classifier
  trained here on the real training tiles (cached), with the real-vs-real floor (a subsample of
  real training tiles vs the real held-out tiles) and the noise ceiling; true FID/KID only with
  ``fid_weights``;
* conditioning: land-cover accuracy of generated tiles (with shuffled-label, real and chance
  references), the vegetation index of generated vs real tiles and its correlation with P and T;
* reference rows scored like a model: "persistence" (the latest earlier real month of the same
  crop) and Gaussian noise.

Then, on one model: guidance scales and solver steps; a climate what-if per land cover (one
field swept, same noise) checked against the directions of the real training tiles; and a
12-month roll-out of the time-series model on a location never trained on, against the real
months. Models whose checkpoint is missing are skipped with a message. CPU times are
``time.process_time`` (training: ``train_seconds`` in the checkpoint).
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sciflow_domains.satellite.classifier import ClassifierSettings, load_or_train
from sciflow_domains.satellite.data import SatelliteDataModule
from sciflow_domains.satellite.datasets import LANDCOVER_CLASSES
from sciflow_domains.satellite.metrics_conditioning import (
    direction_check,
    index_correlations,
    landcover_accuracy,
    response_directions,
    what_if_summary,
)
from sciflow_domains.satellite.metrics_features import (
    ExternalFeatureNetwork,
    extract_features,
    feature_distances,
    noise_images,
)
from sciflow_domains.satellite.metrics_paired import paired_metrics, summarise_paired
from sciflow_domains.satellite.metrics_series import consecutive_ssim, rollout_errors

from sciflow import api
from sciflow.evaluation.bench import Report


def _helper(name: str):
    """Import a sibling helper file (benchmark scripts are loaded by path, not as a package)."""
    module_name = f"sciflow_bench_satellite_{name}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            module_name, Path(__file__).with_name(f"{name}.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


tiles_lib = _helper("tiles")
figures = _helper("figures")
report = _helper("report")
IMAGE_KINDS = ("conditional", "unconditional", "climate_map", "timeseries")


# -- data, classifier, references -------------------------------------------------------------
def _datamodule(params: dict) -> SatelliteDataModule:
    args = {}
    if params.get("data_config"):
        config = yaml.safe_load(Path(params["data_config"]).read_text())
        args.update(config["data"]["init_args"])
    args.update(params.get("data") or {})
    args["previous"] = False  # previous frames are looked up here (tiles.previous_frames)
    module = SatelliteDataModule(**args)
    module.setup()
    return module


class Context:
    """What every scoring call shares: held-out tiles, classifier, extractors, real features."""

    def __init__(self, params: dict, module: SatelliteDataModule):
        self.params, self.module = params, module
        self.seed = int(params.get("seed", 0))
        self.index = params.get("index", "gli")
        self.kid = dict(
            kid_subset_size=params["kid"]["subset_size"],
            kid_subsets=params["kid"]["subsets"],
            seed=self.seed,
        )
        self.held = tiles_lib.split_tiles(module, "test")
        self.train = tiles_lib.split_tiles(module, "train")
        self.previous, self.lags = tiles_lib.previous_frames(module, self.held, params["max_lag"])
        settings = ClassifierSettings(
            **{k: v for k, v in params["classifier"].items() if k != "cache_dir"}
        )
        self.classifier, self.classifier_info = load_or_train(
            self.train.images,
            self.train.landcover,
            settings,
            params["classifier"].get("cache_dir"),
            progress=True,
        )
        self.classifier_info["heldout_accuracy"] = self.classifier.accuracy(
            self.held.images, self.held.landcover
        )
        self.extractors = {"landcover": self.classifier.features}
        self.fid_status = "not computed: no `fid_weights` given (no Inception weights offline)"
        if params.get("fid_weights"):
            fid = params.get("fid") or {}
            self.extractors["inception"] = ExternalFeatureNetwork(params["fid_weights"], **fid)
            self.fid_status = f"computed with {params['fid_weights']}"
        self.real_features = {
            name: extract_features(fn, self.held.images) for name, fn in self.extractors.items()
        }

    def score(self, generated, rows: np.ndarray | None = None) -> dict:
        """All metrics of generated tiles (n, 3, S, S) against the held-out tiles ``rows``."""
        rows = np.arange(len(self.held)) if rows is None else rows
        real = self.held.subset(rows)
        features = {
            name: feature_distances(
                extract_features(fn, generated), self.real_features[name][rows], **self.kid
            )
            for name, fn in self.extractors.items()
        }
        return {
            "num_tiles": len(rows),
            "paired": summarise_paired(paired_metrics(generated, real.images)),
            "features": features,
            "landcover": landcover_accuracy(
                self.classifier, generated, real.landcover, seed=self.seed
            ),
            "index": index_correlations(generated, real.images, real.climate, self.index),
        }

    def references(self) -> dict:
        """The rows every model is read against: real-vs-real floor, persistence, noise."""
        n = len(self.held)
        rng = np.random.default_rng(self.seed)
        train_rows = np.sort(
            rng.choice(len(self.train), size=min(n, len(self.train)), replace=False)
        )
        floor = {
            name: feature_distances(
                extract_features(fn, self.train.images[train_rows]),
                self.real_features[name],
                **self.kid,
            )
            for name, fn in self.extractors.items()
        }
        out = {
            "real_vs_real": {
                "features": floor,
                "landcover": {"generated": self.classifier_info["heldout_accuracy"]},
                "num_tiles": n,
            },
            "noise": self.score(noise_images(self.held.images, n, self.seed)),
        }
        with_previous = np.flatnonzero(self.lags > 0)
        if len(with_previous) >= 2:
            out["persistence"] = self.score(self.previous[with_previous], with_previous)
        return out


# -- sampling ---------------------------------------------------------------------------------
def _chunks(n: int, size: int) -> list[np.ndarray]:
    return [np.arange(i, min(i + size, n)) for i in range(0, n, size)]


def _condition_kwargs(kind: str, tiles, rows: np.ndarray, previous=None) -> dict:
    if kind == "unconditional":
        return {"num_samples": len(rows)}
    kwargs = {k: v[rows] for k, v in tiles.conditions().items()}
    if kind == "climate_map":  # the tile's climate broadcast over the tile, as in training
        size = tiles.images.shape[-1]
        kwargs["climate_map"] = np.repeat(kwargs["climate"][:, :, None, None], size, 2).repeat(
            size, 3
        )
    if kind == "timeseries":
        frames, lags = previous
        kwargs["previous"] = frames[rows].astype(np.float32) / 127.5 - 1.0
        kwargs["lag"] = lags[rows]
    return kwargs


def generate(sampler, tiles, params: dict, num_steps: int, guidance: float, previous=None):
    """One tile per row of ``tiles`` → ((n, 3, S, S) float in [-1, 1], CPU seconds per tile)."""
    kind = sampler.model_kind
    images, started = [], time.process_time()
    for k, rows in enumerate(_chunks(len(tiles), params["batch_size"])):
        res = sampler.sample(
            **_condition_kwargs(kind, tiles, rows, previous),
            num_steps=num_steps,
            guidance_scale=guidance,
            seed=params["seed"] + k,
        )
        images.append(res.images.float().clamp(-1, 1))
    return torch.cat(images), (time.process_time() - started) / len(tiles)


# -- the parts of the benchmark ----------------------------------------------------------------
def _evaluate_model(sampler, ctx: Context, params: dict, num_steps: int, guidance: float):
    """(score, generated tiles, rows of the held-out set) of one model at one setting."""
    rows = np.arange(len(ctx.held))
    previous = None
    if sampler.model_kind == "timeseries":
        rows = np.flatnonzero(ctx.lags > 0)
        previous = (ctx.previous[rows], ctx.lags[rows])
    tiles = ctx.held.subset(rows)
    images, seconds = generate(sampler, tiles, params, num_steps, guidance, previous)
    score = ctx.score(images, rows)
    score["cpu_seconds_per_tile"] = seconds
    score["num_steps"], score["guidance_scale"] = num_steps, guidance
    return score, images, rows


def _sweeps(sampler, ctx: Context, params: dict, default: dict) -> dict:
    """Land cover, index, FD, SSIM and speed over guidance scales and over solver steps."""
    out = {"guidance": [], "steps": []}
    steps0, w0 = params["num_steps"], params["guidance_scale"]
    for w in params["guidance_scales"]:
        score = default if w == w0 else _evaluate_model(sampler, ctx, params, steps0, w)[0]
        out["guidance"].append(score)
        print(f"  guidance {w}: land cover {score['landcover']['generated']:.3f}", flush=True)
    for steps in params["steps"]:
        score = default if steps == steps0 else _evaluate_model(sampler, ctx, params, steps, w0)[0]
        out["steps"].append(score)
        print(f"  {steps} steps: land cover {score['landcover']['generated']:.3f}", flush=True)
    return out


def _what_if(sampler, ctx: Context, params: dict) -> dict:
    """Per swept field: the summary per land cover, and example tiles (one per class)."""
    cfg = params["whatif"]
    rng = np.random.default_rng(ctx.seed)
    count = min(cfg["max_conditions"], len(ctx.held))
    rows = np.sort(rng.choice(len(ctx.held), size=count, replace=False))
    tiles = ctx.held.subset(rows)
    kind = sampler.model_kind
    out = {}
    for field, (low, high) in cfg["fields"].items():
        values = np.linspace(low, high, cfg["num_values"])
        print(f"what-if {field}: {len(values)} values x {len(tiles)} conditions", flush=True)
        frames = []
        for k, chunk in enumerate(_chunks(len(tiles), params["batch_size"])):
            kwargs = _condition_kwargs(kind, tiles, chunk)
            frames.append(
                sampler.what_if(
                    field,
                    values,
                    **kwargs,
                    guidance_scale=params["guidance_scale"],
                    num_steps=params["num_steps"],
                    seed=ctx.seed + k,
                )
            )
        images = torch.cat(frames, dim=1).clamp(-1, 1)
        summary = what_if_summary(images, values, tiles.landcover, ctx.index)
        first = {c: int(np.flatnonzero(tiles.landcover == c)[0]) for c in summary["per_class"]}
        summary["examples"] = {c: images[:, i].numpy() for c, i in first.items()}
        out[field] = summary
    return out


def _series(sampler, ctx: Context, params: dict) -> dict:
    """Roll-out (from generated frames), one-step (from real frames) and persistence errors."""
    cfg = params["series"]
    try:
        real = ctx.module.series(str(cfg["location"]))
    except FileNotFoundError as err:
        return {"skipped": str(err)}
    dates = real["dates"]
    if cfg["first_date"] not in dates[:-1]:
        return {
            "skipped": f"series.first_date {cfg['first_date']} is not a month of location "
            f"{cfg['location']} with a month after it ({dates[0]} … {dates[-1]})"
        }
    start = dates.index(cfg["first_date"])
    months = min(int(cfg["months"]), len(dates) - start - 1)
    first = real["image"][start]
    target = real["image"][start + 1 : start + 1 + months]
    landcover = int(real["cond"]["landcover"][0])
    seen = landcover in ctx.classifier.classes  # classes of the training tiles
    climate = real["climate_raw"][start + 1 : start + 1 + months].numpy()
    common = dict(
        location=(real["lat"], real["lon"]),
        landcover=landcover if seen else None,
        climate=None if np.isnan(climate).all() else climate,
        guidance_scale=params["guidance_scale"],
        num_steps=params["num_steps"],
        seed=ctx.seed,
    )
    started = time.process_time()
    free = sampler.rollout(first, cfg["first_date"], months, **common)
    seconds = (time.process_time() - started) / months
    one_step = sampler.rollout(first, cfg["first_date"], months, reference=target, **common)
    frames = {
        "roll-out": free["image"].values.transpose(0, 3, 1, 2),
        "one-step": one_step["image"].values.transpose(0, 3, 1, 2),
        "persistence": np.repeat(first[None].numpy(), months, axis=0),
    }
    errors = {
        name: {k: v.tolist() for k, v in rollout_errors(x, target).items()}
        for name, x in frames.items()
    }
    with_first = {name: np.concatenate([_uint8(first[None]), x]) for name, x in frames.items()}
    window = slice(start + 1, start + 1 + months)
    clear = (real["cloud"][window] <= ctx.module.max_cloud).numpy() & (
        real["nodata"][window] <= ctx.module.max_nodata
    ).numpy()
    return {
        "location": str(cfg["location"]),
        "landcover": LANDCOVER_CLASSES[landcover],
        "landcover_conditioned": seen,
        "first_date": cfg["first_date"],
        "dates": dates[window],
        "cloud": real["cloud"][window].tolist(),
        "clear": clear.tolist(),
        "errors": errors,
        "mean_ssim_clear": {
            name: float(np.mean(np.asarray(e["ssim"])[clear])) if clear.any() else None
            for name, e in errors.items()
        },
        "consecutive_ssim": {
            "real": consecutive_ssim(
                np.concatenate([_uint8(first[None]), _uint8(target)])
            ).tolist(),
            "roll-out": consecutive_ssim(with_first["roll-out"]).tolist(),
        },
        "cpu_seconds_per_tile": seconds,
        "frames": {"real": _uint8(target), **frames, "first": _uint8(first[None])[0]},
    }


def _uint8(images) -> np.ndarray:
    array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.dtype == np.uint8:
        return array
    return np.round((np.clip(array, -1, 1) + 1) * 127.5).astype(np.uint8)


def _targets(params: dict, models: dict, whatif: dict | None, directions: dict) -> list[dict]:
    """The issue's targets with their values and pass/fail (None: the model did not run)."""
    cfg = params["targets"]
    score = models.get(cfg["model"], {}).get("score")
    accuracy = score["landcover"]["generated"] if score else None
    index_r = score["index"]["r_real_generated"] if score else None
    rows = [
        {
            "target": f"land-cover accuracy of generated tiles ({cfg['model']})",
            "value": accuracy,
            "threshold": f">= {cfg['landcover_accuracy']}",
            "passed": None if accuracy is None else accuracy >= cfg["landcover_accuracy"],
        },
        {
            "target": f"{params['index'].upper()} r(real, generated) ({cfg['model']})",
            "value": index_r,
            "threshold": f">= {cfg['index_r']}",
            "passed": None if index_r is None or math.isnan(index_r) else index_r >= cfg["index_r"],
        },
    ]
    checks = (
        (
            "snow with cold: brightness falls as T rises (snowy classes)",
            "temperature",
            "brightness",
            -1,
        ),
        ("greening with rain: index rises with P (greening classes)", "precipitation", "index", 1),
    )
    min_r, min_delta = params["whatif"]["min_abs_r"], params["whatif"]["min_delta"]
    for label, field, quantity, sign in checks:
        if whatif is None or field not in whatif:
            rows.append({"target": label, "value": None, "threshold": "", "passed": None})
            continue
        check = direction_check(directions, whatif[field], field, quantity, sign, min_r, min_delta)
        bound = f"< -{min_delta}" if sign < 0 else f"> {min_delta}"
        real = f"<= -{min_r}" if sign < 0 else f">= {min_r}"
        rows.append(
            {
                "target": label,
                "value": check["mean_generated_delta"],
                "check": check,
                "threshold": f"{bound} (mean Δ over classes with real r {real})",
                "passed": check["passed"],
            }
        )
    return rows


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run(params: dict, out_dir: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    out_dir.mkdir(parents=True, exist_ok=True)
    module = _datamodule(params)
    ctx = Context(params, module)
    print(
        f"classifier: held-out accuracy {ctx.classifier_info['heldout_accuracy']:.3f} "
        f"({'cached' if ctx.classifier_info['cached'] else 'trained'})",
        flush=True,
    )
    references = ctx.references()
    directions = response_directions(
        ctx.train.images, ctx.train.climate, ctx.train.landcover, ctx.index
    )
    models, samplers, skipped, generated = {}, {}, {}, {}
    for name, spec in params["models"].items():
        path = Path(spec["checkpoint"])
        if not path.is_file():
            skipped[name] = f"no checkpoint at {path}" + (
                f" (train it: sciflow fit --config {spec['config']})" if spec.get("config") else ""
            )
            print(f"{name}: skipped, {skipped[name]}", flush=True)
            continue
        sampler = api.load_sampler(path)
        if sampler.model_kind not in IMAGE_KINDS:
            raise ValueError(f"models.{name}: unknown model_kind {sampler.model_kind!r}")
        samplers[name] = sampler
        score, images, rows = _evaluate_model(
            sampler, ctx, params, params["num_steps"], params["guidance_scale"]
        )
        generated[name] = (images, rows)
        train_seconds = getattr(sampler.task, "train_seconds", 0.0) or None
        models[name] = {
            "kind": sampler.model_kind,
            "checkpoint": str(path),
            "score": score,
            "train_minutes": None if train_seconds is None else train_seconds / 60,
        }
        print(
            f"{name}: land cover {score['landcover']['generated']:.3f}, "
            f"{params['index']} r {score['index']['r_real_generated']:.3f}",
            flush=True,
        )
    sweeps = whatif = series = None
    if params["sweep_model"] in samplers:
        sweeps = _sweeps(
            samplers[params["sweep_model"]], ctx, params, models[params["sweep_model"]]["score"]
        )
    chosen = samplers.get(params["whatif"]["model"])
    if chosen is not None and chosen.model_kind != "timeseries":
        whatif = _what_if(chosen, ctx, params)
    chosen = samplers.get(params["series"]["model"])
    if chosen is not None:
        series = (
            _series(chosen, ctx, params)
            if chosen.model_kind == "timeseries"
            else {"skipped": f"series.model {params['series']['model']} is not a time-series model"}
        )
    targets = _targets(params, models, whatif, directions)
    plots = figures_for(out_dir, params, ctx, samplers, generated, sweeps, whatif, series)
    results = {
        "data": report.data_summary(ctx),
        "classifier": ctx.classifier_info,
        "fid": ctx.fid_status,
        "references": references,
        "models": models,
        "skipped": skipped,
        "sweeps": sweeps,
        "what_if": None
        if whatif is None
        else {f: {k: v for k, v in s.items() if k != "examples"} for f, s in whatif.items()},
        "real_directions": directions,
        "series": None if series is None else {k: v for k, v in series.items() if k != "frames"},
        "targets": targets,
    }
    markdown = report.markdown(params, results, plots)
    return Report(results=_jsonable(results), markdown=markdown, plots=plots)


def _year(sampler, ctx: Context, params: dict) -> dict:
    """Per land cover, the last 12 months of its first held-out place and crop: real tiles and
    tiles generated from their conditions (training months included, December held out)."""
    every = tiles_lib.SplitTiles.concat([ctx.train, ctx.held])
    out = {}
    for c in sorted(set(ctx.held.landcover.tolist())):
        first = int(np.flatnonzero(ctx.held.landcover == c)[0])
        same = (np.array(every.location_id) == ctx.held.location_id[first]) & (
            every.crop == ctx.held.crop[first]
        )
        rows = np.flatnonzero(same)
        rows = rows[np.argsort(every.month_index[rows])][-12:]
        tiles = every.subset(rows)
        images, _ = generate(sampler, tiles, params, params["num_steps"], params["guidance_scale"])
        out[c] = {"months": tiles.month, "real": tiles.images, "generated": images.numpy()}
    return out


def figures_for(
    out_dir: Path,
    params: dict,
    ctx: Context,
    samplers: dict,
    generated: dict,
    sweeps,
    whatif,
    series,
) -> list[str]:
    """Write the PNGs; returns their file names."""
    name = params["name"]
    plots = [
        figures.heldout_grid(
            out_dir / f"{name}_heldout.png", ctx.held, ctx.previous, ctx.lags, generated
        )
    ]
    model = params["sweep_model"]
    if model in samplers and samplers[model].model_kind != "timeseries":
        year = _year(samplers[model], ctx, params)
        plots.append(figures.year_grid(out_dir / f"{name}_year.png", year, model))
    if sweeps is not None:
        plots.append(
            figures.sweep_plot(
                out_dir / f"{name}_sweeps.png",
                sweeps,
                params["guidance_scales"],
                params["steps"],
                params["index"],
            )
        )
    if whatif is not None:
        plots += [
            figures.what_if_grid(out_dir / f"{name}_whatif_{field}.png", field, summary)
            for field, summary in whatif.items()
        ]
    if series is not None and "skipped" not in series:
        plots += figures.series_figures(out_dir, name, series)
    return [p.name for p in plots]
