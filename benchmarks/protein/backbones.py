"""Protein backbones: QFlow vs ReQFlow vs the matrix-geodesic baseline against sampling steps.

Each trained checkpoint samples ``samples_per_length`` backbones at each length and each number
of Euler steps, in one padded batch per setting, with 1 CPU thread; every set is scored with
`sciflow_domains.protein.metrics.evaluate_backbones` against the training chains (targets for
Rg, secondary structure and Ramachandran; novelty by TM-align). Held-out real chains are the
ceiling and random-noise backbones the floor. No folding model runs here: designability is the
ProteinMPNN NLL *proxy*, and scRMSD is not computed.

The checkpoints come from ``sciflow fit`` with configs/protein/{qflow,matrix,reqflow}_cpu.yaml
(and ``sciflow reflow`` for the pairs); benchmarks/protein/README.md gives the commands.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sciflow_domains.protein.datamodule import ProteinDataModule  # noqa: E402
from sciflow_domains.protein.metrics import (  # noqa: E402
    evaluate_backbones,
    noise_backbones,
    reference_stats,
)

from sciflow.api import load_sampler  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402
from sciflow.geometry import quaternion  # noqa: E402
from sciflow.manifolds import RotationMatrix, UnitQuaternion  # noqa: E402

#: (key, label, better) of the metrics drawn against steps and put in the table.
SHOWN = [
    ("ca_ca_valid_fraction", "Cα–Cα 3.8±0.1 Å", "↑"),
    ("clash_rate", "clash rate", "↓"),
    ("rg_norm_abs_diff", "|Rg/L^0.4 − data|", "↓"),
    ("rama_allowed_fraction", "Ramachandran allowed", "↑"),
    ("ss_l1_to_ref", "SS L1 to data", "↓"),
    ("ss_helix", "helix", ""),
    ("ss_strand", "strand", ""),
    ("mpnn_nll_proxy", "MPNN NLL (proxy)", "↓"),
    ("diversity_tm", "pairwise TM", "↓"),
    ("novelty_tm", "max TM to train", "↓"),
    ("cpu_seconds_per_backbone", "CPU s / backbone", "↓"),
]


def _evaluate(backbones, ref, training, params) -> dict:
    return evaluate_backbones(
        backbones, ref, training=training, mpnn=params["mpnn"], progress=params["progress"]
    )


def _sample_rows(params: dict, lengths: list[int], ref, training) -> tuple[list, dict]:
    rows, traces = [], {}
    for model, checkpoint in params["checkpoints"].items():
        sampler = load_sampler(checkpoint)
        for steps in params["steps"]:
            start = time.process_time()
            result = sampler.sample(lengths=lengths, num_steps=steps, seed=params["seed"])
            cpu = (time.process_time() - start) / len(lengths)
            backbones = result.to_backbones()
            metrics = _evaluate(backbones, ref, training, params)
            row = {"model": model, "steps": steps, "cpu_seconds_per_backbone": cpu}
            rows.append({**row, **metrics})
            one_per_length = backbones[:: params["samples_per_length"]]
            traces[(model, steps)] = [b.coords[:, 1] for b in one_per_length]
            print(f"{model} {steps} steps: {_summary(rows[-1])}", flush=True)
    return rows, traces


def _summary(row: dict) -> str:
    keys = ("ca_ca_valid_fraction", "clash_rate", "ss_l1_to_ref", "mpnn_nll_proxy")
    return ", ".join(f"{k} {row[k]:.3f}" for k in keys if row.get(k) is not None)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(rows: list[dict]) -> str:
    header = "| model | steps | " + " | ".join(f"{label} {b}" for _, label, b in SHOWN) + " |"
    lines = [header, "|" + "---|" * (len(SHOWN) + 2)]
    for row in rows:
        cells = [_fmt(row.get(key)) for key, _, _ in SHOWN]
        lines.append(f"| {row['model']} | {_fmt(row['steps'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_metrics(rows: list[dict], references: dict[str, dict], path: Path) -> None:
    keys = [s for s in SHOWN if s[0] not in ("ss_helix", "ss_strand")]
    cols = 4
    fig, axes = plt.subplots(math.ceil(len(keys) / cols), cols, figsize=(16, 8))
    models = list(dict.fromkeys(r["model"] for r in rows))
    for ax, (key, label, better) in zip(axes.flat, keys, strict=False):
        for model in models:
            mine = [r for r in rows if r["model"] == model and r.get(key) is not None]
            ax.plot([r["steps"] for r in mine], [r[key] for r in mine], "o-", label=model)
        for name, style in (("held-out real", "--"), ("noise", ":")):
            value = references[name].get(key)
            if value is not None:
                ax.axhline(value, color="grey", linestyle=style, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("Euler steps")
        ax.set_title(f"{label} {better}")
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_traces(traces: dict, path: Path) -> None:
    keys = list(traces)
    per_row = max(len(v) for v in traces.values())
    fig, axes = plt.subplots(len(keys), per_row, figsize=(2.6 * per_row, 2.4 * len(keys)))
    axes = np.atleast_2d(axes)
    for row, key in enumerate(keys):
        for col in range(per_row):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(traces[key]):
                continue
            ca = traces[key][col] - traces[key][col].mean(0)
            _, _, vt = np.linalg.svd(ca, full_matrices=False)  # view along the smallest axis
            xy = ca @ vt[:2].T
            ax.plot(xy[:, 0], xy[:, 1], "-", lw=1.0, color="tab:blue")
            ax.scatter(xy[:1, 0], xy[:1, 1], s=10, color="tab:green")
            ax.set_aspect("equal")
            ax.set_title(f"{key[0]} {key[1]} st, L={len(ca)}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def path_stability(num: int = 2000, seed: int = 0) -> list[dict]:
    """Float32 error of the two rotation interpolants near θ = π, against float64.

    For pairs (R0, R1) whose relative angle is π − δ, the point at t = 0.5 of the geodesic is
    computed in float32 by the quaternion exp-SLERP and by the matrix geodesic R0·expm(t·logm(
    R0ᵀR1)), and compared (rotation angle, radians) with the float64 quaternion result.
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for delta in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5):
        q0 = quaternion.random_uniform(num, generator=g, dtype=torch.float64)
        axis = torch.nn.functional.normalize(torch.randn(num, 3, generator=g, dtype=torch.float64))
        q1 = quaternion.multiply(q0, quaternion.exp((math.pi - delta) * axis))
        exact = UnitQuaternion().expmap(q0, 0.5 * UnitQuaternion().logmap(q0, q1))
        errors = {}
        for name, manifold, to_point in (
            ("quaternion", UnitQuaternion(), lambda q: q.float()),
            ("matrix", RotationMatrix(), lambda q: quaternion.to_matrix(q).flatten(-2).float()),
        ):
            a, b = to_point(q0), to_point(q1)
            mid = manifold.expmap(a, 0.5 * manifold.logmap(a, b)).double()
            if name == "matrix":
                mid = quaternion.from_matrix(mid.unflatten(-1, (3, 3)))
            errors[name] = float(quaternion.angle(mid, exact).max())
        rows.append({"pi_minus_angle": delta, **errors})
    return rows


def run(params: dict, out: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    params = {"progress": False, **params}
    out.mkdir(parents=True, exist_ok=True)
    data = ProteinDataModule(**params["data"])
    data.setup()
    training, held_out = data.chains["train"], data.chains["val"]
    longest = params.get("held_out_max_length")
    if longest:  # the samples are 64-128 residues; long held-out chains only cost MPNN time
        held_out = [bb for bb in held_out if len(bb) <= longest]
    ref = reference_stats(training)
    if params.get("novelty_chains"):  # TM-align against every chain takes minutes per setting
        pick = np.random.default_rng(params["seed"]).permutation(len(training))
        training = [training[i] for i in sorted(pick[: params["novelty_chains"]])]
    lengths = [n for n in params["lengths"] for _ in range(params["samples_per_length"])]
    rows, traces = _sample_rows(params, lengths, ref, training)
    references = {
        "held-out real": _evaluate(held_out, ref, training, params),
        "noise": _evaluate(noise_backbones(lengths, seed=params["seed"]), ref, training, params),
    }
    for name, metrics in references.items():
        rows.append({"model": name, "steps": None, **metrics})
    stability = path_stability()
    plots = [out / "protein_metrics_vs_steps.png", out / "protein_ca_traces.png"]
    _plot_metrics([r for r in rows if r["steps"] is not None], references, plots[0])
    _plot_traces(traces, plots[1])
    markdown = "\n\n".join(
        [
            f"Models: {', '.join(params['checkpoints'])}; lengths {params['lengths']}, "
            f"{params['samples_per_length']} samples per length, seed {params['seed']}; "
            f"{len(data.chains['train'])} training and {len(held_out)} held-out chains (split by "
            f"chain); novelty against {len(training)} training chains. "
            "Metrics against the training chains; ↑/↓ = better. Designability is the "
            "ProteinMPNN NLL **proxy** (no folding model here, so no scRMSD).",
            _table(rows),
            "Interpolant stability near θ = π (float32; max rotation error of the t = 0.5 point, "
            "radians, against float64; 2000 random pairs per row; at exactly π the geodesic is "
            "not unique):\n\n"
            "| π − θ | quaternion exp-SLERP | matrix geodesic |\n|---|---|---|\n"
            + "\n".join(
                f"| {r['pi_minus_angle']:g} | {r['quaternion']:.2e} | {r['matrix']:.2e} |"
                for r in stability
            ),
            f"![metrics vs steps]({plots[0].name})\n\n![Cα traces]({plots[1].name})",
        ]
    )
    results = {"rows": rows, "path_stability": stability}
    return Report(results=results, markdown=markdown, plots=[str(p) for p in plots])
