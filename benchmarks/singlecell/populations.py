"""Population response prediction: FM vs CGFM vs MFM (same field, data and budget) against the
identity baseline, on populations seen in training and on held-out populations.

For every evaluated population pair, each trained checkpoint pushes the whole control (source)
population forward (``SingleCellSampler``, Euler steps) and the prediction is compared with the
observed treated population by W1, W2, RBF-MMD, r² of feature means and the correlation of
feature–feature correlations (:mod:`sciflow_domains.singlecell.metrics`), on at most
``max_cells`` cells of each. "identity" predicts no change (the source cells themselves); the
"target halves" floor compares two disjoint halves of the observed treated population, the
distance a perfect model would still show at this sample size. The data module is rebuilt from
the training config, so the splits are the ones the models were trained with.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from sciflow_domains.singlecell.data import PopulationDataModule, PopulationPair  # noqa: E402
from sciflow_domains.singlecell.letters import LettersConfig, seen_pairs  # noqa: E402
from sciflow_domains.singlecell.metrics import (  # noqa: E402
    METRICS,
    population_metrics,
    summarise,
)
from sciflow_domains.singlecell.preprocess import PreprocessConfig  # noqa: E402

from sciflow.api import load_sampler  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402

SHOWN = ("w1", "w2", "mmd", "r2_means", "corr_pairwise")


def _datamodule(config_path: str) -> PopulationDataModule:
    args = dict(yaml.safe_load(Path(config_path).read_text())["data"]["init_args"])
    if args.get("letters"):
        args["letters"] = LettersConfig(**args["letters"])
    if args.get("preprocess"):
        args["preprocess"] = PreprocessConfig(**args["preprocess"])
    module = PopulationDataModule(**args)
    module.setup()
    return module


def _groups(module: PopulationDataModule, num_seen: int) -> dict[str, list[PopulationPair]]:
    data = module.data
    return {"seen": seen_pairs(data, num_seen), "held-out": list(data.splits["test"])}


def _halves_floor(pair: PopulationPair, max_cells: int, seed: int) -> dict:
    rows = np.random.default_rng(seed).permutation(len(pair.target))
    half = len(rows) // 2
    return population_metrics(pair.target[rows[:half]], pair.target[rows[half:]], max_cells, seed)


def _predict(sampler, pair: PopulationPair, condition: str, params: dict) -> np.ndarray:
    res = sampler.sample(
        source={pair.population: pair.source},
        condition=condition,
        num_steps=params["num_steps"],
        seed=params["seed"],
    )
    return res.cells(0)


def _table(rows: dict[str, dict[str, dict]], groups: list[str]) -> str:
    head = "| model | populations | " + " | ".join(SHOWN) + " |"
    lines = [head, "|" + "---|" * (len(SHOWN) + 2)]
    for model, by_group in rows.items():
        for group in groups:
            summary = by_group[group]
            cells = [f"{summary[m]['mean']:.4f} ± {summary[m]['std']:.4f}" for m in SHOWN]
            lines.append(
                f"| {model} | {group} ({summary['num_populations']}) | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


def _scatter_plot(examples: dict, path: Path, dims: tuple[int, int], projection=None) -> None:
    """One panel per model: observed treated cells (grey) and predicted cells (colour)."""
    names = list(examples)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        observed, predicted = examples[name]
        if projection is not None:
            observed, predicted = projection(observed), projection(predicted)
        ax.scatter(observed[:, dims[0]], observed[:, dims[1]], s=2, c="0.6", label="observed")
        ax.scatter(predicted[:, dims[0]], predicted[:, dims[1]], s=2, c="tab:red", alpha=0.5,
                   label="predicted")  # fmt: skip
        ax.set_title(name, fontsize=9)
        ax.set_xticks([]), ax.set_yticks([])
    axes[0][0].legend(loc="lower left", fontsize=7, markerscale=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _minutes(value: float | None) -> str:
    return "not recorded" if value is None else f"{value:.1f}"


def _pca(reference: np.ndarray):
    mean = reference.mean(0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    return lambda x: (x - mean) @ vt[:2].T


def _bar_plot(per_population: dict, metric: str, path: Path) -> None:
    models = list(per_population)
    populations = [name for name, _ in per_population[models[0]]]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(populations) * len(models)), 3.4))
    for k, model in enumerate(models):
        values = [r[metric] for _, r in per_population[model]]
        ax.bar(np.arange(len(populations)) + k * width, values, width, label=model)
    ax.set_xticks(np.arange(len(populations)) + 0.4 - width / 2, populations, rotation=60,
                  fontsize=7)  # fmt: skip
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per held-out population (lower is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(params: dict, out_dir: Path) -> Report:
    torch.set_num_threads(params.get("threads", 1))
    name = params["name"]
    module = _datamodule(params["data_config"])
    groups = _groups(module, params.get("num_seen", 10))
    max_cells, seed = params["max_cells"], params["seed"]
    condition = params.get("condition") or module.data.conditions[0]
    per_population: dict[str, dict[str, list]] = {}
    timing = {}
    examples = {}
    per_population["target halves (floor)"] = {
        g: [(p.population, _halves_floor(p, max_cells, seed)) for p in pairs]
        for g, pairs in groups.items()
    }
    per_population["identity"] = {
        g: [(p.population, population_metrics(p.source, p.target, max_cells, seed)) for p in pairs]
        for g, pairs in groups.items()
    }
    example = groups["held-out"][0]
    examples["source (identity)"] = (example.target, example.source)
    for model, spec in params["models"].items():
        sampler = load_sampler(spec["checkpoint"])
        started, cells = time.perf_counter(), 0
        results = {}
        for group, pairs in groups.items():
            results[group] = []
            for pair in pairs:
                predicted = _predict(sampler, pair, condition, params)
                cells += len(predicted)
                if pair is example:
                    examples[model] = (example.target, predicted)
                metrics = population_metrics(predicted, pair.target, max_cells, seed)
                results[group].append((pair.population, metrics))
        per_population[model] = results
        timing[model] = {
            # None for checkpoints written before sciflow recorded training time
            "train_minutes": (sampler.task.train_seconds / 60) or None,
            "predict_and_score_seconds": time.perf_counter() - started,
            "cells_predicted": cells,
        }
    summaries = {
        model: {g: summarise([m for _, m in rows]) for g, rows in by_group.items()}
        for model, by_group in per_population.items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    dims = (0, 1)
    projection = None if module.dim == 2 else _pca(example.target)
    scatter = out_dir / f"{name}_{example.population}.png"
    _scatter_plot(examples, scatter, dims, projection)
    plots.append(scatter.name)
    held_out = {m: by_group["held-out"] for m, by_group in per_population.items()}
    bars = out_dir / f"{name}_w2_per_population.png"
    _bar_plot(held_out, "w2", bars)
    plots.append(bars.name)
    lines = [
        f"# Single-cell population response: {params['title']}",
        "",
        params["description"].strip(),
        "",
        f"Prediction: {params['num_steps']} Euler steps from every source cell; metrics on at "
        f"most {max_cells} cells per population (seed {seed}); mean ± std over populations. "
        "Lower is better for W1, W2 and MMD; higher for r²(means) and corr(pairwise feature "
        "correlations) (blank: not defined in 2-D).",
        "",
        _table(summaries, list(groups)),
        "",
        "| model | training (CPU minutes) | predict + score (s) | cells predicted |",
        "|---|---|---|---|",
        *(
            f"| {m} | {_minutes(t['train_minutes'])} | {t['predict_and_score_seconds']:.1f} | "
            f"{t['cells_predicted']} |"
            for m, t in timing.items()
        ),
        "",
        f"![predicted vs observed]({scatter.name})",
        "",
        f"![W2 per held-out population]({bars.name})",
    ]
    results = {
        "summaries": summaries,
        "per_population": {
            m: {g: dict(rows) for g, rows in by_group.items()}
            for m, by_group in per_population.items()
        },
        "timing": timing,
        "metrics": list(METRICS),
    }
    return Report(results=results, markdown="\n".join(lines).replace("nan ± nan", ""), plots=plots)
