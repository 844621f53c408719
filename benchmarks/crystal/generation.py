"""Ab initio crystal generation: CDVAE generation metrics of sampled crystals against a test split.

Each checkpoint (an ab initio model, e.g. ``crysbfn_abinitio_perov5_cpu.yaml``) draws
``num_samples`` crystals, sizes from its stored training atom-count histogram. They are scored
with :func:`~sciflow_domains.crystal.metrics.evaluate_generation` against the whole test split:
structural/compositional validity, COV-R/COV-P at the dataset's CDVAE thresholds, and W1
distances of density and number of elements over (up to) ``n_wdist`` valid crystals. Two
no-learning rows bracket the figures:

* floor, "random crystals": atom counts from the training histogram, each atom's element drawn
  from the training element frequencies, uniform fractional coordinates in a cubic cell whose
  volume is the training mean volume per atom times the atom count;
* ceiling, "training crystals": ``num_samples`` crystals of the training split itself (same
  distribution as the test split, no model error).

Test-split features (CrystalNN fingerprints are the slow part) are cached under the crystal
cache folder, keyed by the file's SHA-256.
"""

from __future__ import annotations

import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402
from sciflow_domains.crystal.data import cache_dir, find_split, load_crystals  # noqa: E402
from sciflow_domains.crystal.metrics import (  # noqa: E402
    CrystalFeatures,
    compute_features,
    evaluate_generation,
)

from sciflow.api import load_sampler  # noqa: E402
from sciflow.data import sha256sum  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402

_EXTRA = (("n_generated", "N", "{}"), ("cpu_seconds_per_crystal", "CPU s / crystal", "{:.4f}"))
_COLUMNS = (
    ("struct_valid", "struct. valid ↑", "{:.2%}"),
    ("comp_valid", "comp. valid ↑", "{:.2%}"),
    ("cov_recall", "COV-R ↑", "{:.2%}"),
    ("cov_precision", "COV-P ↑", "{:.2%}"),
    ("wdist_density", "W1 density ↓", "{:.3f}"),
    ("wdist_num_elems", "W1 #elements ↓", "{:.3f}"),
)


def _test_features(path: Path, n_jobs: int) -> CrystalFeatures:
    """Features of every crystal of the test file, from the cache when it holds them."""
    cached = cache_dir() / f"generation_features_{sha256sum(path)[:24]}.npz"
    if cached.is_file():
        return CrystalFeatures.load(cached)
    table = load_crystals(path)
    features = compute_features(
        [table.structure(i) for i in range(len(table))], n_jobs=n_jobs, desc="test features"
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    features.save(cached)
    return features


def _random_crystals(train, num: int, seed: int) -> list[Structure]:
    """The floor: training sizes and element frequencies, random positions, mean volume/atom."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice(train.num_atoms, num)
    elements, counts = np.unique(train.types, return_counts=True)
    volume_per_atom = float(np.mean(np.abs(np.linalg.det(train.lattice)) / train.num_atoms))
    out = []
    for n in sizes:
        species = rng.choice(elements, n, p=counts / counts.sum()).tolist()
        side = (volume_per_atom * n) ** (1 / 3)
        out.append(Structure(Lattice.cubic(side), species, rng.random((n, 3))))
    return out


def _training_crystals(train, num: int, seed: int) -> list[Structure]:
    """The ceiling: ``num`` crystals of the training split (all if it has fewer)."""
    pick = np.random.default_rng(seed).permutation(len(train))[:num]
    return [train.structure(int(i)) for i in sorted(pick)]


def _generate(checkpoint: str, params: dict) -> tuple[list[Structure], float, dict]:
    """Sample ``num_samples`` crystals in batches; CPU seconds per crystal; checkpoint facts."""
    sampler = load_sampler(checkpoint)
    options = {k: params[k] for k in ("num_steps", "solver") if params.get(k) is not None}
    structures, start = [], time.process_time()
    total, size = params["num_samples"], params["batch_size"]
    for i in range(0, total, size):
        res = sampler.sample(num_samples=min(size, total - i), seed=params["seed"] + i, **options)
        structures += res.to_structures()
    cpu = (time.process_time() - start) / total
    facts = {
        "global_step": sampler.task.trained_steps,
        "num_steps": options.get("num_steps", sampler.engine.num_steps),
        "solver": params.get("solver") or "vanilla",
    }
    return structures, cpu, facts


def _plot(path: Path, sets: dict[str, CrystalFeatures], title: str) -> None:
    """Histograms of density and number of elements, generated sets vs test (``sets["test"]``);
    densities beyond twice the test's 99.5th percentile are put in the last bin."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    top = 2 * np.nanpercentile(sets["test"].density, 99.5)
    bins = np.linspace(0, top, 60)
    most = max(int(f.n_elements.max()) for f in sets.values())
    width = 0.8 / len(sets)
    for k, (name, feats) in enumerate(sets.items()):
        density = np.clip(feats.density[np.isfinite(feats.density)], 0, top)
        left.hist(density, bins=bins, density=True, histtype="step", lw=1.5, label=name)
        share = np.bincount(feats.n_elements, minlength=most + 1)[1:] / len(feats)
        right.bar(np.arange(1, most + 1) + (k - (len(sets) - 1) / 2) * width, share, width,
                  label=name)  # fmt: skip
    left.set(xlabel="density (g/cm³)", ylabel="probability density")
    right.set(xlabel="number of distinct elements", ylabel="share of crystals")
    right.set_xticks(np.arange(1, most + 1))
    left.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cell(value, fmt: str) -> str:
    return "–" if value is None else fmt.format(value) if isinstance(value, float) else str(value)


def _table(rows: list[dict], first: str, extra: tuple = ()) -> str:
    """A Markdown table: ``first`` column, then the metric columns, then ``extra`` columns
    (key, header, format) — values may be floats (formatted) or preformatted strings."""
    columns = (*_COLUMNS, *extra)
    lines = [
        f"| {first} | " + " | ".join(c[1] for c in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for r in rows:
        cells = [_cell(r.get(key), fmt) for key, _, fmt in columns]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _published(params: dict) -> str:
    """The papers' figures for ``dataset`` (``published`` rows), or nothing without them."""
    if not params.get("published"):
        return ""
    dagger = any("†" in row["model"] for row in params["published"])
    return (
        f"Published {params['dataset']} figures (10 000 samples, full train split, GPU; "
        "`shared/docs/methods/crystal.md` §2.3"
        + (", † from secondary copies of the paper's table" if dagger else "")
        + "):\n\n"
        + _table(params["published"], "model (paper)")
        + "\n\n"
    )


def run(params: dict, out: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    out.mkdir(parents=True, exist_ok=True)
    dataset, seed, num = params["dataset"], params["seed"], params["num_samples"]
    test_path = find_split(dataset, params["test_split"])
    test = _test_features(test_path, params["n_jobs"])
    train = load_crystals(find_split(dataset, params["train_split"]))
    metric_options = {"dataset": dataset, "n_samples": params["n_wdist"], "seed": seed,
                      "n_jobs": params["n_jobs"]}  # fmt: skip
    candidates: dict[str, tuple[list[Structure], float | None, dict]] = {}
    for name, spec in params.get("models", {}).items():
        candidates[name] = _generate(spec["checkpoint"], {**params, **spec})
    candidates["random crystals (floor)"] = (_random_crystals(train, num, seed), None, {})
    candidates["training crystals (ceiling)"] = (_training_crystals(train, num, seed), None, {})
    rows, features = [], {"test": test}
    for name, (structures, cpu, facts) in candidates.items():
        feats = compute_features(structures, n_jobs=params["n_jobs"], desc=name)
        metrics = evaluate_generation(feats, test, **metric_options)
        rows.append({"model": name, "cpu_seconds_per_crystal": cpu, **facts, **metrics})
        features[name] = feats
        print(f"{name}: " + ", ".join(f"{k} {metrics[k]}" for k, _, _ in _COLUMNS), flush=True)
    plot = out / params.get("plot", "crystal_generation.png")
    _plot(plot, features, f"{dataset}: generated ({num} each) vs {params['test_split']}")
    models = (
        ", ".join(
            f"`{name}` = {spec['checkpoint']} (step {row['global_step']}, n = {row['num_steps']}, "
            f"solver {row['solver']})"
            for (name, spec), row in zip(params.get("models", {}).items(), rows, strict=False)
        )
        or "none"
    )
    markdown = (
        f"{num} crystals per row, scored against all {len(test)} crystals of {dataset} "
        f"{params['test_split']} with the CDVAE protocol (COV thresholds of {dataset}; W1 over "
        f"up to {params['n_wdist']} valid crystals). Models: {models}. Reference rows: random "
        f"crystals from the {params['train_split']} split's sizes and element frequencies in a "
        f"cubic cell of its mean volume per atom (floor), and {num} real crystals of the "
        f"{params['train_split']} split (ceiling).\n\n"
        + _table(rows, "model", _EXTRA)
        + f"\n\n![density and number of elements]({plot.name})\n\n"
        + _published(params)
        + params.get("notes", "").strip()
    )
    return Report(results={"rows": rows}, markdown=markdown, plots=[str(plot)])
