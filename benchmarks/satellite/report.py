"""Markdown of the satellite benchmark (helper of ``generation.py``): tables from its results."""

from __future__ import annotations

import math

from sciflow_domains.satellite.datasets import LANDCOVER_CLASSES

REFERENCE_ROWS = {
    "real_vs_real": "real train vs real held-out (floor)",
    "persistence": "previous real month (persistence)",
    "noise": "Gaussian noise (ceiling)",
}


def data_summary(ctx) -> dict:
    """What was evaluated: split, sizes, classes, held-out dates."""
    module = ctx.module
    return {
        "split": module.split,
        "test_months": module.test_months,
        "size": module.size,
        "crops_per_side": module.crops_per_side,
        "max_cloud": module.max_cloud,
        "train_tiles": len(ctx.train),
        "held_out_tiles": len(ctx.held),
        "held_out_dates": sorted(set(ctx.held.date)),
        "landcover_classes": {c: LANDCOVER_CLASSES[c] for c in ctx.classifier.classes},
    }


def _f(value, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:{fmt}}"


def _verdict(passed) -> str:
    return {True: "**pass**", False: "**FAIL**", None: "not run"}[passed]


def _get(score: dict, *keys):
    for key in keys:
        if not isinstance(score, dict) or key not in score:
            return None
        score = score[key]
    return score


def _main_table(results: dict) -> list[str]:
    extractors = list(results["references"]["real_vs_real"]["features"])
    names = {"landcover": ("FD-landcover", "KID-landcover"), "inception": ("FID", "KID")}
    head = ["rows", "n", "land cover ↑", "shuffled", "GLI r ↑"]
    for e in extractors:
        head += [f"{names[e][0]} ↓", f"{names[e][1]} ↓"]
    head += ["SSIM ↑", "PSNR ↑", "colour ↓", "texture ↓", "CPU s/tile", "training min"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    rows = [(REFERENCE_ROWS[k], v, None) for k, v in results["references"].items()]
    rows += [
        (f"{name} ({m['kind']})", m["score"], m["train_minutes"])
        for name, m in results["models"].items()
    ]
    for label, score, minutes in rows:
        cells = [
            label,
            str(score["num_tiles"]),
            _f(_get(score, "landcover", "generated")),
            _f(_get(score, "landcover", "shuffled_labels")),
            _f(_get(score, "index", "r_real_generated")),
        ]
        for e in extractors:
            cells += [
                _f(_get(score, "features", e, "fd")),
                _f(_get(score, "features", e, "kid"), ".4g"),
            ]
        paired = score.get("paired", {})
        cells += [
            _f(paired.get("ssim")),
            _f(paired.get("psnr"), ".2f"),
            _f(paired.get("colour_distance")),
            _f(paired.get("texture_distance")),
            _f(score.get("cpu_seconds_per_tile"), ".4f"),
            _f(minutes, ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _targets_table(targets: list[dict]) -> list[str]:
    lines = ["| target (issue #7) | value | threshold | result |", "|---|---|---|---|"]
    for t in targets:
        detail = ""
        if "check" in t:
            classes = ", ".join(LANDCOVER_CLASSES[c] for c in t["check"]["classes"]) or "none"
            detail = f" — classes: {classes}"
        lines.append(
            f"| {t['target']}{detail} | {_f(t['value'])} | {t['threshold']} | "
            f"{_verdict(t['passed'])} |"
        )
    return lines


def _conditioning_table(results: dict, index: str) -> list[str]:
    i = index.upper()
    lines = [
        f"| model | mean {i} real / gen | r({i} real, gen) | r({i}, P) real / gen | "
        f"r({i}, T) real / gen |",
        "|---|---|---|---|---|",
    ]
    for name, model in results["models"].items():
        s = model["score"]["index"]
        lines.append(
            f"| {name} | {_f(s['mean']['real'])} / {_f(s['mean']['generated'])} | "
            f"{_f(s['r_real_generated'])} | {_f(s['r_precipitation']['real'])} / "
            f"{_f(s['r_precipitation']['generated'])} | {_f(s['r_temperature']['real'])} / "
            f"{_f(s['r_temperature']['generated'])} |"
        )
    return lines


def _sweep_tables(sweeps: dict, params: dict) -> list[str]:
    lines = []
    for sweep, values, label in (
        ("guidance", params["guidance_scales"], "guidance w"),
        ("steps", params["steps"], "Euler steps"),
    ):
        lines += [
            f"| {label} | land cover ↑ | {params['index'].upper()} r ↑ | FD-landcover ↓ | "
            "SSIM ↑ | CPU s/tile |",
            "|---|---|---|---|---|---|",
        ]
        for value, s in zip(values, sweeps[sweep], strict=True):
            lines.append(
                f"| {value} | {_f(s['landcover']['generated'])} | "
                f"{_f(s['index']['r_real_generated'])} | "
                f"{_f(s['features']['landcover']['fd'])} | {_f(s['paired']['ssim'])} | "
                f"{_f(s['cpu_seconds_per_tile'], '.4f')} |"
            )
        lines.append("")
    return lines


def _what_if_table(what_if: dict, directions: dict, index: str) -> list[str]:
    i = index.upper()
    head = ["land cover", "n"]
    for field, s in what_if.items():
        span = f"{s['values'][0]:g}→{s['values'][-1]:g}"
        head += [
            f"real r(bright., {field[0].upper()})",
            f"Δbrightness ({field} {span})",
            f"real r({i}, {field[0].upper()})",
            f"Δ{i} ({field} {span})",
        ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    classes = sorted({c for s in what_if.values() for c in s["per_class"]})
    for c in classes:
        first = next(s for s in what_if.values() if c in s["per_class"])
        cells = [LANDCOVER_CLASSES[c], str(first["per_class"][c]["n"])]
        for field, s in what_if.items():
            real = directions.get(c, {})
            cls = s["per_class"].get(c, {})
            cells += [
                _f(_get(real, "brightness", field)),
                _f(cls.get("delta_brightness"), "+.3f"),
                _f(_get(real, "index", field)),
                _f(cls.get("delta_index"), "+.3f"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _series_table(series: dict) -> list[str]:
    errors, consecutive = series["errors"], series["consecutive_ssim"]
    lines = [
        "| months ahead | date | cloud | SSIM roll-out | SSIM one-step | SSIM persistence | "
        "PSNR roll-out | SSIM(t-1, t) real / roll-out |",
        "|" + "---|" * 8,
    ]
    for k, date in enumerate(series["dates"]):
        lines.append(
            f"| {k + 1} | {date} | {_f(series['cloud'][k], '.2f')} | "
            f"{_f(errors['roll-out']['ssim'][k])} | {_f(errors['one-step']['ssim'][k])} | "
            f"{_f(errors['persistence']['ssim'][k])} | {_f(errors['roll-out']['psnr'][k], '.2f')}"
            f" | {_f(consecutive['real'][k])} / {_f(consecutive['roll-out'][k])} |"
        )
    return lines


def markdown(params: dict, results: dict, plots: list[str]) -> str:
    """The report body (the runner adds the title line and the machine)."""
    data, clf = results["data"], results["classifier"]
    index = params["index"]
    out = [
        f"# Satellite generation: {params.get('title', 'EcoMapper example set')}",
        "",
        f"Held out: {data['held_out_tiles']} tiles ({', '.join(data['held_out_dates'])}; "
        f"{data['size']} px, {data['crops_per_side']}² crops per tile, cloud ≤ "
        f"{data['max_cloud']}); {data['train_tiles']} real training tiles. One generated tile "
        f"per held-out condition, {params['num_steps']} Euler steps, guidance "
        f"{params['guidance_scale']}, seed {params['seed']}.",
        "",
        f"Land-cover classifier (tile statistics + MLP, trained here on the real training tiles; "
        f"{'read from cache' if clf['cached'] else 'trained'}, {clf['train_seconds']:.1f} CPU-s): "
        f"held-out accuracy **{clf['heldout_accuracy']:.3f}**, training accuracy "
        f"{clf['train_accuracy']:.3f}, chance {1 / len(clf['classes']):.3f} "
        f"({len(clf['classes'])} classes: {', '.join(data['landcover_classes'].values())}).",
        "",
        "## Targets",
        "",
        *_targets_table(results["targets"]),
        "",
        "## Held-out months",
        "",
        "FD-landcover / KID-landcover are Fréchet distance and KID on the penultimate layer of "
        "the classifier above: **not FID**, comparable only within this project, and to be read "
        "between the real-vs-real floor and the noise ceiling. True FID/KID: "
        f"{results['fid']}. Paired SSIM (scikit-image, 7 x 7 window, uint8) and PSNR compare "
        "each generated tile with the real tile of the same place, month and crop. "
        '"shuffled": the same predictions scored against permuted labels. CPU s/tile: process '
        "time of sampling; training min: wall-clock minutes of `sciflow fit` stored in the "
        "checkpoint.",
        "",
        *_main_table(results),
        "",
        "### Vegetation index vs climate (held-out conditions)",
        "",
        *_conditioning_table(results, index),
        "",
    ]
    if results["skipped"]:
        out += ["Skipped: " + "; ".join(f"{k}: {v}" for k, v in results["skipped"].items()), ""]
    if results["sweeps"] is not None:
        out += [
            f"## Guidance and steps ({params['sweep_model']})",
            "",
            *_sweep_tables(results["sweeps"], params),
        ]
    if results["what_if"] is not None:
        out += [
            f"## Climate what-if ({params['whatif']['model']})",
            "",
            f"{params['whatif']['max_conditions']} held-out conditions at most; one field swept "
            "with the noise and the other conditions fixed; Δ = (highest value) − (lowest). "
            '"real r": within-class correlation on the real training tiles (the direction the '
            "data show).",
            "",
            *_what_if_table(results["what_if"], results["real_directions"], index),
            "",
        ]
    series = results["series"]
    if series is not None and "skipped" not in series:
        seen = "conditioned on" if series["landcover_conditioned"] else "null (never trained)"
        out += [
            f"## Time series ({params['series']['model']})",
            "",
            f"Location {series['location']} ({series['landcover']}; land cover {seen}), never "
            f"seen in training; from the real tile of {series['first_date']}. Roll-out: each "
            "month from the previous generated one; one-step: from the previous real one; "
            f"persistence: the first tile copied. {series['cpu_seconds_per_tile']:.3f} CPU-s "
            "per month.",
            "",
            *_series_table(series),
            "",
            "Mean SSIM over the clear months (cloud and no-data within the data filter): "
            + ", ".join(f"{k} {_f(v)}" for k, v in series["mean_ssim_clear"].items())
            + ".",
            "",
        ]
    elif series is not None:
        out += [f"Time series skipped: {series['skipped']}", ""]
    out += [f"![{p}]({p})" for p in plots]
    return "\n".join(out)
