"""Property-guided ab initio generation: does classifier-free guidance move the generated
property distribution toward a target?

A model trained with a property condition (``crysbfn_abinitio_perov5_heat_ref_cpu.yaml``) draws
``num_samples`` crystals per (target, guidance scale w), and once with the null condition
(unconditional). A generated crystal has no computed property, so each one is scored by a
separate regressor (:mod:`sciflow_domains.crystal.regressor`) trained on the model's training
split; its test-split MAE and R² are reported beside the figures, and its predictions on the
real test crystals give the reference distribution. Per row: validity (structural and SMACT
compositional), mean, standard deviation and median of the predicted property over the valid
crystals, the shift of the mean from the null condition's, the share of that way to the target
covered (``(mean − null mean) / (target − null mean)``), and the share within ``tolerance`` of
the target. Optionally an unconditional model (``baseline``) is scored the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sciflow_domains.crystal.data import find_split, load_crystals, property_column  # noqa: E402
from sciflow_domains.crystal.metrics import validity  # noqa: E402
from sciflow_domains.crystal.regressor import TrainedRegressor, fit_regressor  # noqa: E402

from sciflow.api import load_sampler  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402

_COLUMNS = (
    ("struct_valid", "struct. valid", "{:.1%}"),
    ("comp_valid", "comp. valid", "{:.1%}"),
    ("mean", "mean", "{:.3f}"),
    ("std", "std", "{:.3f}"),
    ("median", "median", "{:.3f}"),
    ("shift", "shift vs null", "{:+.3f}"),
    ("toward", "of the way to target", "{:.0%}"),
    ("within", "within ± tol", "{:.1%}"),
    ("n_scored", "N scored", "{}"),
    ("cpu_seconds_per_crystal", "CPU s / crystal", "{:.4f}"),
)


def _regressor(params: dict, train, train_path: Path, test, test_path: Path) -> TrainedRegressor:
    """The cached regressor at ``regressor.path``, else trained (and saved) as configured."""
    spec = params["regressor"]
    path = Path(spec["path"])
    if path.is_file():
        fitted = TrainedRegressor.load(path)
        if fitted.name != params["property"]:
            raise ValueError(f"{path}: regresses {fitted.name!r}, not {params['property']!r}")
        return fitted
    start = time.process_time()
    options = {k: v for k, v in spec.items() if k != "path"}
    fitted = fit_regressor(
        train, params["property"], str(train_path), params["lattice_scale"], progress=True,
        **options,
    )  # fmt: skip
    fitted.metrics = {
        **fitted.evaluate(test, str(test_path)),
        "train_cpu_minutes": (time.process_time() - start) / 60,
        "train_split": params["train_split"],
        **options,
    }
    fitted.save(path)
    return fitted


def _draw(sampler, params: dict, **condition) -> tuple[list, float]:
    """``num_samples`` structures in batches; CPU seconds per crystal."""
    structures, start = [], time.process_time()
    total, size = params["num_samples"], params["batch_size"]
    for i in range(0, total, size):
        res = sampler.sample(
            num_samples=min(size, total - i), seed=params["seed"] + i, solver=params["solver"],
            **condition,
        )  # fmt: skip
        structures += res.to_structures()
    return structures, (time.process_time() - start) / total


def _score(structures: list, regressor: TrainedRegressor) -> tuple[dict, np.ndarray]:
    """Validity shares and the predicted property (NaN where invalid or unreducible)."""
    checks = [validity(s) for s in structures]
    struct_ok = np.array([c["struct_valid"] for c in checks])
    comp_ok = np.array([c["comp_valid"] for c in checks])
    values = np.full(len(structures), np.nan)
    valid = np.flatnonzero(struct_ok & comp_ok)
    values[valid] = regressor.predict_structures([structures[i] for i in valid])
    return {"struct_valid": struct_ok.mean(), "comp_valid": comp_ok.mean()}, values


def _summary(values: np.ndarray, tol: float, target=None, null_mean=None) -> dict:
    """Mean, std, median and count of the finite ``values``; with ``null_mean`` the shift from
    it; with ``target`` the share within ``tol`` and the share of the way covered."""
    kept = values[np.isfinite(values)]
    if kept.size == 0:
        return {"n_scored": 0}
    row = {
        "mean": float(kept.mean()),
        "std": float(kept.std()),
        "median": float(np.median(kept)),
        "n_scored": int(kept.size),
    }
    if null_mean is not None:
        row["shift"] = row["mean"] - null_mean
    if target is not None:
        row["within"] = float(np.mean(np.abs(kept - target) <= tol))
        if null_mean is not None and abs(target - null_mean) > 1e-9:
            row["toward"] = row["shift"] / (target - null_mean)
    return row


def _sampled_row(label, sampler, params, regressor, target=None, w=None, null_mean=None):
    """Draw, score and summarise one row (guided when ``target`` is given); returns the row and
    the predicted property per crystal."""
    condition = {} if target is None else {"property": target, "guidance_scale": w}
    structures, cpu = _draw(sampler, params, **condition)
    shares, values = _score(structures, regressor)
    summary = _summary(values, params["tolerance"], target, null_mean)
    row = {"sampling": label, "target": target, "w": w, **shares, **summary}
    return {**row, "cpu_seconds_per_crystal": cpu}, values


def _plot(path: Path, reference: np.ndarray, null: np.ndarray, guided: dict, params: dict):
    """One panel per target: the predicted property of the guided samples per w, the null
    condition's and the real test crystals' (regressor predictions throughout)."""
    targets = params["targets"]
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.6), squeeze=False)
    finite = np.concatenate([reference, null[np.isfinite(null)]])
    bins = np.linspace(np.percentile(finite, 0.5) - 0.5, np.percentile(finite, 99.5) + 0.5, 50)
    for ax, target in zip(axes[0], targets, strict=True):
        ax.hist(reference, bins=bins, density=True, color="0.8", label="test crystals")
        ax.hist(null[np.isfinite(null)], bins=bins, density=True, histtype="step", lw=1.5,
                color="k", label="null condition")  # fmt: skip
        for w in params["guidance_scales"]:
            values = guided[(target, w)]
            ax.hist(values[np.isfinite(values)], bins=bins, density=True, histtype="step",
                    lw=1.5, label=f"target, w = {w}")  # fmt: skip
        ax.axvline(target, color="r", ls="--", lw=1)
        ax.set(xlabel=f"predicted {params['property']}", ylabel="probability density",
               title=f"target {target}")  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict]) -> str:
    lines = ["| sampling | " + " | ".join(c[1] for c in _COLUMNS) + " |",
             "|---" * (len(_COLUMNS) + 1) + "|"]  # fmt: skip
    for r in rows:
        cells = ["–" if r.get(k) is None else fmt.format(r[k]) for k, _, fmt in _COLUMNS]
        lines.append(f"| {r['sampling']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(params: dict, out: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    out.mkdir(parents=True, exist_ok=True)
    name, tol = params["property"], params["tolerance"]
    train_path = find_split(params["dataset"], params["train_split"])
    test_path = find_split(params["dataset"], params["test_split"])
    train, test = load_crystals(train_path), load_crystals(test_path)
    regressor = _regressor(params, train, train_path, test, test_path)
    reference = regressor.predict_table(test)
    truth = property_column(test, name, test_path)

    sampler = load_sampler(params["checkpoint"])
    null_row, null_values = _sampled_row("guided model, null condition", sampler, params, regressor)
    rows = [
        {"sampling": f"{params['test_split']} crystals, true {name}", **_summary(truth, tol)},
        {"sampling": f"{params['test_split']} crystals, regressor", **_summary(reference, tol)},
        null_row,
    ]
    null_mean = null_row.get("mean")
    if params.get("baseline"):
        baseline = load_sampler(params["baseline"])
        label = "unconditional model (no property)"
        rows.append(_sampled_row(label, baseline, params, regressor, null_mean=null_mean)[0])
    guided = {}
    for target in params["targets"]:
        for w in params["guidance_scales"]:
            row, guided[(target, w)] = _sampled_row(
                f"target {target}, w = {w}", sampler, params, regressor, target, w, null_mean
            )
            rows.append(row)
            print(f"{row['sampling']}: mean {row.get('mean')}, within {row.get('within')}")
    plot = out / params.get("plot", "crystal_property_guidance.png")
    _plot(plot, reference, null_values, guided, params)
    metrics = regressor.metrics or {}
    markdown = (
        f"Model: {params['checkpoint']} (step {sampler.task.trained_steps}, solver "
        f"{params['solver']}), {params['num_samples']} crystals per row. Property: predicted "
        f"`{name}` of each valid crystal (structurally valid and SMACT-valid), by a "
        f"{regressor.network.config['num_layers']}-layer invariant GNN regressor trained on "
        f"{params['dataset']} {params['train_split']} (the model's training split; "
        f"{params['regressor']['path']}): on the {metrics.get('n', '?')} "
        f"{params['test_split']} crystals MAE {metrics.get('mae', float('nan')):.3f}, RMSE "
        f"{metrics.get('rmse', float('nan')):.3f}, R² {metrics.get('r2', float('nan')):.3f}. "
        f"These are regressor predictions, not computed energies. 'shift vs null': mean minus "
        f"the null condition's mean; 'of the way to target': that shift over (target − null "
        f"mean); 'within ± tol': share within ±{tol} of the target.\n\n"
        + _table(rows)
        + f"\n\n![predicted property per target]({plot.name})\n\n"
        + params.get("notes", "").strip()
    )
    results = {"rows": rows, "regressor": metrics}
    return Report(results=results, markdown=markdown, plots=[str(plot)])
