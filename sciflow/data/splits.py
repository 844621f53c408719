"""Group splits: whole groups (populations, locations, patients) to train / val / test, so that
no group's items appear in two splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_groups(
    names: Sequence[str],
    test: Sequence[str] | None = None,
    val: Sequence[str] | None = None,
    test_fraction: float = 0.25,
    val_fraction: float = 0.0,
    seed: int = 0,
    kind: str = "group",
) -> dict[str, list[str]]:
    """Assign whole groups to ``train`` / ``val`` / ``test``.

    Explicit ``test`` / ``val`` lists win over the fractions; the groups not listed are shuffled
    with ``seed`` (from their sorted order) and ``round(fraction · n)`` of them, ``n`` counting
    every group, go to the split (at least one when the fraction is > 0). Every list is sorted.
    ``kind`` names the groups in error messages (``test_{kind}s`` is the argument users set).
    """
    names = sorted({str(n) for n in names})
    for label, frac in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0 <= frac < 1:
            raise ValueError(f"{label}: expected a float in [0, 1), got {frac!r}")
    chosen: dict[str, list[str]] = {}
    for label, listed in (("test", test), ("val", val)):
        if listed is None:
            continue
        listed = sorted({str(n) for n in listed})
        unknown = sorted(set(listed) - set(names))
        if unknown:
            raise ValueError(f"{label}_{kind}s: unknown {kind}(s) {unknown}; available: {names}")
        chosen[label] = listed
    both = sorted(set(chosen.get("test", [])) & set(chosen.get("val", [])))
    if both:
        raise ValueError(f"{kind}(s) {both} are in both test_{kind}s and val_{kind}s")
    taken = set(chosen.get("test", [])) | set(chosen.get("val", []))
    rest = [n for n in names if n not in taken]
    order = [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]
    for label, frac in (("test", test_fraction), ("val", val_fraction)):
        if label not in chosen:
            count = max(1, round(frac * len(names))) if frac > 0 else 0
            chosen[label], order = sorted(order[:count]), order[count:]
    if not order:
        raise ValueError(
            f"no training {kind} left among {len(names)}: test={chosen['test']}, "
            f"val={chosen['val']}; lower the fractions or list fewer held-out {kind}s"
        )
    return {"train": sorted(order), "val": chosen["val"], "test": chosen["test"]}
