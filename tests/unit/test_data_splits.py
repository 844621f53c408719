"""Group splits (sciflow.data.split_groups): a seeded partition of whole groups, explicit lists
first, and errors naming the groups."""

import pytest

from sciflow.data import split_groups


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("test_fraction", "val_fraction"), [(0.25, 0.0), (0.2, 0.2), (0.5, 0.1)])
def test_split_is_a_seeded_partition_of_the_groups(seed, test_fraction, val_fraction):
    names = [f"pop{i}" for i in range(11)]
    fractions = dict(test_fraction=test_fraction, val_fraction=val_fraction)
    split = split_groups(names, **fractions, seed=seed)
    parts = [set(split[s]) for s in ("train", "val", "test")]
    assert set().union(*parts) == set(names)
    assert sum(len(p) for p in parts) == len(names)
    assert len(split["test"]) == max(1, round(test_fraction * 11))
    assert split_groups(names, **fractions, seed=seed) == split


def test_explicit_lists_win_and_errors_name_the_kind_of_group():
    names = ["a", "b", "c", "d"]
    split = split_groups(names, test=["d", "b"], val=["a"])
    assert split == {"train": ["c"], "val": ["a"], "test": ["b", "d"]}
    with pytest.raises(ValueError, match=r"test_patients: unknown patient\(s\) \['z'\]; available"):
        split_groups(names, test=["z"], kind="patient")
    with pytest.raises(ValueError, match=r"\['b'\] are in both test_donors and val_donors"):
        split_groups(names, test=["b"], val=["b"], kind="donor")
    with pytest.raises(ValueError, match="no training location left"):
        split_groups(names, test=["a", "b"], val=["c", "d"], kind="location")
    with pytest.raises(ValueError, match=r"test_fraction: expected a float in \[0, 1\)"):
        split_groups(names, test_fraction=1.0)
