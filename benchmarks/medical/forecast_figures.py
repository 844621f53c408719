"""Figures of the medical benchmark: error against forecast horizon, and image panels."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from forecast_cases import ForecastCases  # noqa: E402

#: Metrics drawn against the horizon, with their axis labels.
HORIZON_METRICS = {"change_mae": "MAE in the change region", "mae": "MAE over the image"}


def horizon_plot(by_gap: dict[str, dict], path: Path, title: str) -> Path:
    """Error per gap bin for each model: ``by_gap`` model → metric → bin → {mean, std, cases}."""
    fig, axes = plt.subplots(1, len(HORIZON_METRICS), figsize=(5.2 * len(HORIZON_METRICS), 3.6))
    for ax, (metric, label) in zip(axes, HORIZON_METRICS.items(), strict=True):
        for model, metrics in by_gap.items():
            bins = metrics[metric]
            labels = list(bins)
            mean = np.array([bins[b]["mean"] for b in labels])
            std = np.array([bins[b]["std"] for b in labels])
            ax.errorbar(
                np.arange(len(labels)),
                mean,
                yerr=np.nan_to_num(std),
                marker="o",
                capsize=3,
                label=model,
            )
        ax.set_xticks(np.arange(len(labels)), labels)
        ax.set_xlabel("forecast horizon Δt (months)")
        ax.set_ylabel(label + " (lower is better)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def panel_cases(cases: ForecastCases, count: int) -> list[int]:
    """Up to ``count`` cases to draw: per patient the case with the largest change region, the
    patients with the largest such regions first (ties: the earlier case)."""
    area = (cases.change & cases.has_change[:, None, None]).reshape(len(cases), -1).sum(axis=1)
    best: dict[str, int] = {}
    for i, patient in enumerate(cases.patient):
        if patient not in best or area[i] > area[best[patient]]:
            best[patient] = i
    order = sorted(best.values(), key=lambda i: (-area[i], i))
    return order[:count]


def panel(cases: ForecastCases, index: int, predictions: dict[str, np.ndarray], path: Path) -> Path:
    """One case: input, truth (change region outlined) and each model's forecast on top; the true
    change (truth − input) and each forecast's error (forecast − truth) below.

    ``predictions``: model → (N, C, R, R) forecasts of all cases (NaN where not forecast).
    """
    shown = {m: p[index] for m, p in predictions.items() if np.isfinite(p[index]).all()}
    columns = 2 + len(shown)
    fig, axes = plt.subplots(2, columns, figsize=(1.9 * columns, 4.2), squeeze=False)
    x_in = cases.inputs[index].mean(0).numpy()
    truth = cases.targets[index].mean(0).numpy()
    grey = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0}
    signed = {"cmap": "RdBu_r", "vmin": -0.5, "vmax": 0.5}
    axes[0, 0].imshow(x_in, **grey)
    axes[0, 0].set_title(f"input (t_j)\n{cases.patient[index]}", fontsize=7)
    axes[0, 1].imshow(truth, **grey)
    if cases.change[index].any():
        axes[0, 1].contour(cases.change[index], levels=[0.5], colors="tab:red", linewidths=0.6)
    axes[0, 1].set_title(f"truth (+{float(cases.dt[index]):.1f} mo)\nred: change", fontsize=7)
    axes[1, 0].imshow(truth - x_in, **signed)
    axes[1, 0].set_title("truth − input", fontsize=7)
    axes[1, 1].axis("off")
    for c, (model, image) in enumerate(shown.items(), start=2):
        forecast = image.mean(0)
        axes[0, c].imshow(forecast, **grey)
        axes[0, c].set_title(model, fontsize=7)
        axes[1, c].imshow(forecast - truth, **signed)
        axes[1, c].set_title("forecast − truth", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
