"""How high a one-sample CSP match rate can go on Perov-5: most compositions come in two orderings.

Perov-5 (Castelli et al. 2012) enumerates ABX₃ perovskites with A and B drawn from one pool of
cations, so a composition can be in the dataset twice: once with each cation on the
12-coordinated A site. The two structures share their framework but not the species on its
sites, and no structure matches both under the CSP tolerances. A predictor given only the
composition cannot know which ordering a test entry holds. Under a random split the two are
exchangeable, so on a composition present in both orderings the expected one-sample match rate
is at most (1 + b) / 2, where b is the chance that one prediction matches both orderings.

Readings (``StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`` throughout):

1. *Twins in the data.* For every test entry, its twins: the other entries of the same
   composition in the training and test splits found here. Also whether they match the entry as
   structures and as frameworks (species ignored). Let f be the share of test entries with a
   visible twin and v the share of the whole dataset that is visible to an entry (the other
   entries of both splits over the other entries of the dataset). Then q = f / v estimates the
   share of compositions that the dataset holds in both orderings.
2. *Prototype both ways.* On every test entry: the ideal cubic prototype with the larger
   cation on A, with the smaller one, and the better of the two.
3. *Checkpoints.* On a seeded subset of test entries, each checkpoint's one-sample prediction
   scored against its target and against the target's twins where known. As in the CSP
   benchmark, a prediction that fails the validity check matches nothing. The counts are split
   by where the twin lies: in the training split the model has seen it, and in the test split
   it has not.
4. *Ceiling.* (1 − q) + q (1 + b) / 2 for the whole test set, with b the share of a predictor's
   predictions that match both the target and its twin. This is an expectation over random
   splits, so a model can exceed it only by learning which ordering the split left out.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from pymatgen.analysis.structure_matcher import FrameworkComparator  # noqa: E402
from pymatgen.core import Structure  # noqa: E402
from tqdm import tqdm  # noqa: E402

if str(Path(__file__).resolve().parent) not in sys.path:  # the helpers beside this script
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from csp import _formula, _pick, _predict  # noqa: E402
from sciflow_domains.crystal.baselines import ideal_perovskite  # noqa: E402
from sciflow_domains.crystal.data import find_split, load_crystals  # noqa: E402
from sciflow_domains.crystal.metrics_csp import make_matcher, rms_distance  # noqa: E402
from sciflow_domains.crystal.metrics_validity import validity  # noqa: E402

from sciflow.api import load_sampler  # noqa: E402
from sciflow.evaluation.bench import Report  # noqa: E402


def _structures(dataset: str, split: str) -> list[Structure]:
    table = load_crystals(find_split(dataset, split))
    return [table.structure(i) for i in range(len(table))]


def _composition_key(structure: Structure) -> tuple:
    return tuple(sorted((el.symbol, round(n)) for el, n in structure.composition.items()))


def find_twins(test: list[Structure], train: list[Structure]) -> list[list[tuple[str, Structure]]]:
    """Per test entry, the (place, structure) of every other entry of its composition, place
    ``"train"`` or ``"test"``."""
    by_key = defaultdict(list)
    for place, structures in (("train", train), ("test", test)):
        for i, s in enumerate(structures):
            by_key[_composition_key(s)].append((place, i, s))
    return [
        [(place, s) for place, j, s in by_key[_composition_key(entry)] if (place, j) != ("test", i)]
        for i, entry in enumerate(test)
    ]


def data_reading(test, train, twins, dataset_size: int) -> dict:
    """Reading 1 of the module docstring."""
    matcher, framework = make_matcher(), make_matcher(comparator=FrameworkComparator())
    pairs = [(entry, s) for entry, mine in zip(test, twins, strict=True) for _, s in mine]
    structure_matches = sum(
        rms_distance(a, b, matcher) is not None for a, b in tqdm(pairs, desc="twins", disable=None)
    )
    framework_matches = sum(rms_distance(a, b, framework) is not None for a, b in pairs)
    f = sum(bool(mine) for mine in twins) / len(test)
    visible = (len(train) + len(test) - 1) / (dataset_size - 1)
    return {
        "test_entries": len(test),
        "training_entries": len(train),
        "dataset_size": dataset_size,
        "twin_in_training_split": sum(any(p == "train" for p, _ in m) for m in twins),
        "twin_in_test_split": sum(any(p == "test" for p, _ in m) for m in twins),
        "more_than_one_twin": sum(len(m) > 1 for m in twins),
        "twin_pairs": len(pairs),
        "twin_pairs_matching_as_structures": structure_matches,
        "twin_pairs_matching_as_frameworks": framework_matches,
        "share_with_visible_twin": f,
        "share_visible": visible,
        "share_in_both_orderings": min(1.0, f / visible),
        "share_in_both_orderings_se": math.sqrt(f * (1 - f) / len(test)) / visible,
    }


def score(predicted: list[Structure], targets, twins) -> tuple[dict, list[bool]]:
    """One-sample match against the targets and against their twins (reading 3), and whether
    each prediction matches its target."""
    matcher = make_matcher()
    counts, rmse = defaultdict(int), {"one ordering": [], "both orderings": []}
    hits = []
    for pred, target, mine in zip(predicted, targets, twins, strict=True):
        valid = validity(pred)["valid"]  # the CSP protocol: an invalid prediction matches nothing
        counts["invalid"] += not valid
        distance = rms_distance(pred, target, matcher) if valid else None
        hit = distance is not None
        hits.append(hit)
        counts["target"] += hit
        twin_hits = []
        for place in dict.fromkeys(p for p, _ in mine):
            same_place = [s for p, s in mine if p == place]
            twin_hit = valid and any(rms_distance(pred, s, matcher) is not None for s in same_place)
            counts[f"{place}: entries"] += 1
            counts[f"{place}: target"] += hit
            counts[f"{place}: twin"] += twin_hit
            counts[f"{place}: both"] += hit and twin_hit
            twin_hits.append(twin_hit)
        if hit and twin_hits:
            rmse["both orderings" if any(twin_hits) else "one ordering"].append(distance)
    with_twin = counts["train: entries"] + counts["test: entries"]
    both = (counts["train: both"] + counts["test: both"]) / with_twin if with_twin else 0.0
    summary = {"entries": len(targets), "match_rate": counts["target"] / len(targets),
               "both_orderings": both,
               **{f"rmse, matching {k}": float(np.mean(v)) if v else None
                  for k, v in rmse.items()},
               **counts}  # fmt: skip
    return summary, hits


def ceiling(share_in_both_orderings: float, both_orderings: float) -> float:
    """Expected one-sample match rate of the best composition-only predictor (reading 4)."""
    q = share_in_both_orderings
    return (1 - q) + q * (1 + both_orderings) / 2


def _row(name: str, scored: dict, q: float) -> dict:
    return {"predictor": name, **scored, "ceiling": ceiling(q, scored["both_orderings"])}


def _rate(row: dict, place: str, what: str) -> str:
    entries = row.get(f"{place}: entries", 0)
    return f"{row.get(f'{place}: {what}', 0) / entries:.3f}" if entries else "–"


def _table(rows: list[dict]) -> str:
    lines = [
        "| predictor | entries (invalid) | match rate | "
        "twin seen in training: target / twin / both | twin in test: target / twin / both | "
        "b (matches both) | ceiling | "
        "RMSE when matching one / both orderings |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seen = " / ".join(_rate(r, "train", w) for w in ("target", "twin", "both"))
        unseen = " / ".join(_rate(r, "test", w) for w in ("target", "twin", "both"))
        lines.append(
            f"| {r['predictor']} | {r['entries']} ({r['invalid']}) | {r['match_rate']:.3f} | "
            f"{seen} ({r.get('train: entries', 0)}) | {unseen} ({r.get('test: entries', 0)}) | "
            f"{r['both_orderings']:.3f} | {r['ceiling']:.3f} | "
            + " / ".join(
                "–" if r[f"rmse, matching {k}"] is None else f"{r[f'rmse, matching {k}']:.3f}"
                for k in ("one ordering", "both orderings")
            )
            + " |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    width = 0.27
    for k, (place, what, label) in enumerate(
        [
            ("train", "target", "target (twin seen in training)"),
            ("train", "twin", "its twin, seen in training"),
            ("test", "target", "target (twin in test)"),
        ]
    ):
        values = [
            r.get(f"{place}: {what}", 0) / max(1, r.get(f"{place}: entries", 0)) for r in rows
        ]
        ax.bar([i + (k - 1) * width for i in range(len(rows))], values, width, label=label)
    for i, r in enumerate(rows):
        ax.hlines(r["ceiling"], i - 1.5 * width, i + 1.5 * width, color="black", linestyles="--")
    ax.set_xticks(
        range(len(rows)), [r["predictor"] for r in rows], fontsize=7, rotation=25, ha="right"
    )
    ax.set_ylabel("one-sample match rate")
    ax.set_ylim(0, 1)
    ax.set_title(title + "\n(dashed: ceiling of a composition-only predictor)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(params: dict, out: Path) -> Report:
    torch.set_num_threads(int(params.get("threads", 1)))
    out.mkdir(parents=True, exist_ok=True)
    test = _structures(params["dataset"], params["split"])
    train = _structures(params["dataset"], params["train_split"])
    twins = find_twins(test, train)
    data = data_reading(test, train, twins, params["dataset_size"])
    q = data["share_in_both_orderings"]
    rows = []
    prototype_hits = []
    for a_site in ("larger", "smaller"):
        predicted = [ideal_perovskite(s.composition, a_site) for s in test]
        scored, hits = score(predicted, test, twins)
        rows.append(_row(f"prototype, {a_site} cation on A", scored, q))
        prototype_hits.append(hits)
    better = [a or b for a, b in zip(*prototype_hits, strict=True)]
    data["prototype_better_of_two_orderings"] = sum(better) / len(test)
    pick = _pick(params, len(test))
    targets, subset_twins = [test[i] for i in pick], [twins[i] for i in pick]
    compositions = [_formula(s) for s in targets]
    for name, spec in params.get("models", {}).items():
        for path in spec["checkpoints"]:
            if not Path(path).exists():
                raise FileNotFoundError(
                    f"models.{name}: checkpoint {path} not found; train it first (see the "
                    "header of this benchmark's yaml)"
                )
            options = {"solver": spec["solver"]} if spec.get("solver") else {}
            predicted, _ = _predict(
                load_sampler(path), compositions, options, params["batch_size"], 1
            )
            label = f"{name} ({Path(path).parent.parent.name})"
            rows.append(_row(label, score(predicted, targets, subset_twins)[0], q))
            print(f"{label}: match {rows[-1]['match_rate']:.3f}", flush=True)
    plot = out / "crystal_csp_ceiling.png"
    _plot(rows, plot, f"{params['dataset']} {params['split']}: target or its twin ordering?")
    markdown = (
        f"{params['dataset']} {params['split']} ({data['test_entries']} entries) against the "
        f"training split `{params['train_split']}` ({data['training_entries']}); "
        f"`StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3)`.\n\n"
        f"* Test entries with a twin (same composition, other entry): "
        f"{data['twin_in_training_split']} in the training split, "
        f"{data['twin_in_test_split']} in the test split "
        f"({data['more_than_one_twin']} with more than one).\n"
        f"* (test entry, twin) pairs matching as structures: "
        f"{data['twin_pairs_matching_as_structures']} of {data['twin_pairs']}; as frameworks "
        f"(species ignored): {data['twin_pairs_matching_as_frameworks']} (a pair inside the test "
        "split counts once from each side).\n"
        f"* Share of test entries with a visible twin f = {data['share_with_visible_twin']:.3f}; "
        f"visible share of the {data['dataset_size']:,}-entry dataset v = "
        f"{data['share_visible']:.3f}; so the share of compositions held in both orderings is "
        f"q = f / v = {q:.3f} ± {data['share_in_both_orderings_se']:.3f}.\n"
        f"* Ideal cubic prototype, better of the two orderings: "
        f"{data['prototype_better_of_two_orderings']:.3f} of all test entries.\n\n"
        "Per predictor, the one-sample match rate and, on entries whose twin is known, the share "
        "of predictions that match the target, its twin, and both (count of entries in "
        "brackets). Ceiling: (1 − q) + q (1 + b) / 2, the expected match rate of a predictor "
        "that sees only the composition and matches both orderings at rate b. RMSE of the matches "
        "on entries with a known twin, split by whether the prediction matches the twin too.\n\n"
        + _table(rows)
        + f"\n\n![target or twin]({plot.name})"
    )
    return Report(results={"data": data, "rows": rows}, markdown=markdown, plots=[str(plot)])
