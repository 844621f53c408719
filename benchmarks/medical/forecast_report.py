"""Markdown tables of the medical benchmark report."""

from __future__ import annotations

import math

#: Column titles and decimals of the main table.
COLUMNS = {
    "psnr": ("PSNR (dB) ↑", 2),
    "ssim": ("SSIM ↑", 3),
    "mae": ("MAE ↓", 4),
    "change_mae": ("change MAE ↓", 4),
    "change_psnr": ("change PSNR ↑", 2),
    "dice": ("Dice ↑", 3),
    "dice_present": ("Dice, true mask not empty ↑", 3),
    "hd95": ("HD95 (px) ↓", 2),
    "area_error": ("area error (px) ↓", 1),
}


def cell(stats: dict | None, digits: int) -> str:
    """``mean ± std`` (no ± for a single value), ``–`` when undefined."""
    if not stats or stats.get("n", 0) == 0 or math.isnan(stats["mean"]):
        return "–"
    if stats["n"] == 1:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def main_table(models: dict[str, dict]) -> str:
    """One row per model: runs × seeds, cases, the metrics and change MAE vs copy-forward."""
    head = "| model | runs × seeds | cases | " + " | ".join(t for t, _ in COLUMNS.values())
    lines = [head + " | change MAE vs copy-forward |", "|" + "---|" * (len(COLUMNS) + 4)]
    for name, entry in models.items():
        overall = entry["summary"]["overall"]
        cells = [cell(overall[m], digits) for m, (_, digits) in COLUMNS.items()]
        defined = entry["summary"]["defined"]["hd95"]
        if defined < entry["cases"]:  # HD95 is undefined where exactly one mask is empty
            cells[list(COLUMNS).index("hd95")] += f" ({defined} cases)"
        relative = entry["change_mae_vs_copy_forward"]
        rel = "–"
        if relative["n"]:
            rel = f"{100 * relative['mean']:+.1f} %"
            rel += f" ± {100 * relative['std']:.1f}" if relative["n"] > 1 else ""
        runs = f"{entry['runs']} × {entry['seeds']}"
        lines.append(f"| {name} | {runs} | {entry['cases']} | " + " | ".join(cells) + f" | {rel} |")
    return "\n".join(lines)


def strata_table(models: dict[str, dict], key: str, metric: str, title: str) -> str:
    """Rows: models; columns: the strata of ``key`` (``by_gap``, ``by_growth``, ``by_patient``)."""
    labels = list(dict.fromkeys(s for e in models.values() for s in e["summary"][key][metric]))
    if not labels:
        return ""
    digits = COLUMNS[metric][1]
    lines = [f"| {title} | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for name, entry in models.items():
        strata = entry["summary"][key][metric]
        cells = []
        for label in labels:
            stats = strata.get(label)
            cells.append("–" if stats is None else f"{cell(stats, digits)} ({stats['cases']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def timing_table(models: dict[str, dict]) -> str:
    """NFE and wall time per forecast, training wall time (recorded in the checkpoints)."""
    lines = [
        "| model | kind | NFE per call | wall ms per forecast | batch | "
        "training wall time, CPU (min) | checkpoints |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in models.items():
        t = entry["timing"]
        minutes = [m for m in t["train_minutes"] if m is not None]
        if not t["train_minutes"]:
            train = "0 (no training)"
        elif minutes:
            train = ", ".join(f"{m:.1f}" for m in minutes)
        else:
            train = "not recorded"
        lines.append(
            f"| {name} | {entry['kind']} | {t['nfe_per_call']:g} | "
            f"{1000 * t['seconds_per_forecast']:.2f} | {t['batch_size']} | {train} | "
            f"{len(t['checkpoints'])} |"
        )
    return "\n".join(lines)


def calibration_table(calibration: dict[str, dict], levels: list[float]) -> str:
    """Coverage at each level (pixels, changing pixels, lesion area), CRPS and energy distance."""
    shown = [str(float(v)) for v in levels]
    head = ["model"]
    head += [f"pixel cov. {v}" for v in shown]
    head += [f"changing-pixel cov. {v}" for v in shown]
    head += [f"area cov. {v}" for v in shown]
    head += ["pixel CRPS ↓", "energy dist. ↓", "area CRPS (px) ↓"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, c in calibration.items():
        cells = [name]
        for key in ("coverage", "coverage_changing", "area_coverage"):
            cells += [f"{c[key][v]:.3f}" if v in c[key] else "–" for v in shown]
        cells += [f"{c['crps']:.4f}", f"{c['energy']:.4f}", f"{c['area_crps']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ceiling_table(ceiling: dict) -> str:
    """Lesion metrics of the true target image itself pushed through the mask rule."""
    shown = ("dice", "dice_present", "hd95", "area_error")
    lines = [
        "| | " + " | ".join(COLUMNS[m][0] for m in shown) + " |",
        "|---|" + "---|" * len(shown),
        "| truth through the mask rule | "
        + " | ".join(cell(ceiling[m], COLUMNS[m][1]) for m in shown)
        + " |",
    ]
    return "\n".join(lines)
