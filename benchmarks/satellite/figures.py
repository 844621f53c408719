"""Figures of the satellite benchmark (helper of ``generation.py``): tile grids and line plots.
Every function writes one PNG (atomically) and returns its path."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sciflow_domains.satellite.datasets import LANDCOVER_CLASSES  # noqa: E402
from sciflow_domains.satellite.metrics_images import uint8_hwc  # noqa: E402

from sciflow.atomic import atomic_write  # noqa: E402

GAP_PX = 2
EMPTY_GREY = 200


def _save(fig, path: Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    with atomic_write(path, "wb") as handle:
        handle.write(buffer.getvalue())
    return path


def tile_grid(
    path: Path,
    cells: Sequence[Sequence[np.ndarray | None]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
) -> Path:
    """A grid of tiles: ``cells[r][c]`` a (3, S, S) uint8 or [-1, 1] tile, or None (grey)."""
    size = next(cell.shape[-1] for row in cells for cell in row if cell is not None)
    step = size + GAP_PX
    mosaic = np.full((len(cells) * step, len(col_labels) * step, 3), 255, dtype=np.uint8)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            block = (
                np.full((size, size, 3), EMPTY_GREY, np.uint8)
                if cell is None
                else uint8_hwc(np.asarray(cell)[None])[0]
            )
            mosaic[r * step : r * step + size, c * step : c * step + size] = block
    cell_in = 0.9 * max(1.0, size / 32)  # inches per tile
    left = 0.3 + 0.05 * max(len(label) for label in row_labels)  # room for the row labels
    bottom, top = 0.2 + 0.05 * max(len(label) for label in col_labels), 0.4
    width = left + cell_in * len(col_labels) + 0.2
    height = bottom + cell_in * len(cells) + top
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width, right=1 - 0.2 / width, bottom=bottom / height, top=1 - top / height
    )
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks(np.arange(len(col_labels)) * step + size / 2, col_labels, fontsize=7, rotation=30)
    ax.set_yticks(np.arange(len(cells)) * step + size / 2, row_labels, fontsize=7)
    ax.tick_params(length=0)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def line_panels(
    path: Path,
    panels: Sequence[dict],
    title: str,
) -> Path:
    """Side-by-side line plots; each panel ``{"x", "series": {label: ys}, "xlabel", "ylabel",
    "title"}``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        x = np.asarray(panel["x"])
        for label, ys in panel["series"].items():
            ax.plot(x[: len(ys)], ys, marker="o", markersize=3, label=label)
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
        ax.set_title(panel["title"], fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


# -- the benchmark's figures ------------------------------------------------------------------
def _short(landcover: int) -> str:
    return " ".join(LANDCOVER_CLASSES[landcover].split()[:2]) + f" ({landcover})"


def heldout_grid(path: Path, held, previous, lags, generated: dict, per_class: int = 2) -> Path:
    """Rows: up to ``per_class`` held-out tiles per land cover; columns: the real tile, the
    latest earlier real month (persistence) and each model's tile of the same condition.
    ``generated``: model → ((n, 3, S, S) tiles, (n,) rows of ``held`` they belong to)."""
    cells, labels = [], []
    for c in sorted(set(held.landcover.tolist())):
        picks = np.flatnonzero(held.landcover == c)
        for i in picks[np.linspace(0, len(picks) - 1, min(per_class, len(picks))).astype(int)]:
            row = [held.images[i], previous[i] if lags[i] else None]
            for images, rows in generated.values():
                where = np.flatnonzero(rows == i)
                row.append(images[where[0]] if len(where) else None)
            cells.append(row)
            labels.append(f"{_short(c)} {held.date[i]} crop {held.crop[i]}")
    columns = ["real", "previous real", *generated]
    return tile_grid(path, cells, labels, columns, "held-out months: real vs generated")


def year_grid(path: Path, year: dict, model: str) -> Path:
    """Rows real / generated per land cover, columns calendar months; ``year``: land cover →
    {"months" (k,), "real" (k, 3, S, S), "generated" (k, 3, S, S), "dates"}."""
    cells, labels = [], []
    for c, entry in year.items():
        for kind in ("real", "generated"):
            row = [None] * 12
            for m, image in zip(entry["months"], entry[kind], strict=True):
                row[int(m) - 1] = image
            cells.append(row)
            labels.append(f"{'real' if kind == 'real' else 'gen.'} {_short(c)}")
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    return tile_grid(
        path, cells, labels, months, f"one year per land cover: real vs {model} (Dec held out)"
    )


def _values(scores: list[dict], *keys: str) -> list:
    out = []
    for score in scores:
        for key in keys:
            score = score[key]
        out.append(score)
    return out


def sweep_plot(path: Path, sweeps: dict, guidance_scales, steps, index: str) -> Path:
    """Land-cover accuracy, index r and FD-landcover over guidance scales and solver steps."""
    label = f"{index.upper()} r(real, gen)"
    panels = []
    for sweep, x, xlabel in (
        ("guidance", guidance_scales, "guidance scale w"),
        ("steps", steps, "Euler steps"),
    ):
        scores = sweeps[sweep]
        panels.append(
            {
                "x": x,
                "xlabel": xlabel,
                "ylabel": "value",
                "title": f"conditioning vs {sweep}",
                "series": {
                    "land-cover accuracy": _values(scores, "landcover", "generated"),
                    label: _values(scores, "index", "r_real_generated"),
                },
            }
        )
    panels.append(
        {
            "x": guidance_scales,
            "xlabel": "guidance scale w",
            "ylabel": "FD-landcover",
            "title": "FD-landcover vs guidance",
            "series": {"FD-landcover": _values(sweeps["guidance"], "features", "landcover", "fd")},
        }
    )
    return line_panels(path, panels, "guidance and step sweeps")


def what_if_grid(path: Path, field: str, summary: dict) -> Path:
    """Rows: one example condition per land cover; columns: the swept values of ``field``."""
    classes = list(summary["examples"])
    cells = [list(summary["examples"][c]) for c in classes]
    columns = [f"{v:g}" for v in summary["values"]]
    return tile_grid(
        path, cells, [_short(c) for c in classes], columns, f"what-if: {field} swept, same noise"
    )


def series_figures(out_dir: Path, name: str, series: dict) -> list[Path]:
    """The generated year beside the real year (grid) and the errors per month (lines)."""
    frames = series["frames"]
    columns = [series["first_date"], *series["dates"]]
    cells = [[frames["first"], *frames["real"]]]
    cells += [[frames["first"], *frames[k]] for k in ("roll-out", "one-step")]
    grid = tile_grid(
        out_dir / f"{name}_series.png",
        cells,
        ["real", "roll-out (generated prev.)", "one-step (real prev.)"],
        columns,
        f"location {series['location']}: generated year beside the real year",
    )
    horizon = list(range(1, len(series["dates"]) + 1))
    panels = [
        {
            "x": horizon,
            "xlabel": "months ahead",
            "ylabel": "SSIM vs real month",
            "title": "roll-out error per month",
            "series": {k: v["ssim"] for k, v in series["errors"].items()},
        },
        {
            "x": horizon,
            "xlabel": "months ahead",
            "ylabel": "SSIM(t-1, t)",
            "title": "consecutive-frame SSIM",
            "series": series["consecutive_ssim"],
        },
    ]
    lines = line_panels(out_dir / f"{name}_series_errors.png", panels, "time-series roll-out")
    return [grid, lines]
