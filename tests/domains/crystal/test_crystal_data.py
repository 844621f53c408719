"""Crystal data: canonical parsing, cache, errors, histogram, batches, data module, downloads."""

from __future__ import annotations

import gzip
import hashlib
import logging
import subprocess

import numpy as np
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure
from sciflow_domains.crystal import data as crystal_data
from sciflow_domains.crystal.data import (
    CrystalDataModule,
    CrystalDataset,
    collate_crystals,
    engine_batch,
    find_split,
    load_crystals,
    num_atoms_histogram,
    sample_num_atoms,
)
from sciflow_domains.crystal.datasets import CANONICAL
from sciflow_domains.crystal.io import CrystalParseError, wrap_unit

from sciflow.data import format_dataset_table, get_dataset, list_datasets

COLUMNS = ["material_id", "cif", "heat_ref", "formula"]
REDUCED = Lattice.from_parameters(4.1, 5.3, 6.2, 78.0, 96.0, 104.0)  # not Niggli-reduced
SPECIES = ["Sr", "Ti", "O", "O", "N"]


def _crystal(basis=((1, 0, 0), (0, 1, 0), (0, 0, 1)), seed: int = 0) -> Structure:
    """A 5-atom triclinic crystal written in the lattice basis ``basis @ REDUCED`` (an integer
    matrix of determinant ±1 gives the same crystal), fractional coordinates outside [0, 1)."""
    cart = np.random.default_rng(seed).uniform(-1.0, 2.0, size=(5, 3)) @ REDUCED.matrix
    matrix = np.asarray(basis, dtype=float) @ REDUCED.matrix
    return Structure(matrix, SPECIES, cart, coords_are_cartesian=True, to_unit_cell=False)


def _rows(*structures: Structure) -> list[dict]:
    return [
        {"material_id": f"m-{k}", "cif": s.to(fmt="cif"), "heat_ref": 0.5 * k, "formula": "x"}
        for k, s in enumerate(structures)
    ]


def _periodic_gap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs((a - b + 0.5) % 1.0 - 0.5).max())


# -- parsing ----------------------------------------------------------------------------------
def test_parse_is_niggli_reduced_canonical_and_the_same_crystal(tmp_path, write_csv):
    original = _crystal(basis=((1, 0, 0), (1, 1, 0), (-1, 2, 1)))
    path = write_csv(tmp_path / "one.csv", _rows(original), COLUMNS)
    table = load_crystals(path)
    read = Structure.from_str(original.to(fmt="cif"), fmt="cif")  # pymatgen's own reading
    niggli = read.lattice.get_niggli_reduced_lattice()

    assert len(table) == 1 and table.num_atoms.tolist() == [5]
    assert table.types.tolist() == list(read.atomic_numbers)
    assert sorted(table.types.tolist()) == sorted(original.atomic_numbers)
    np.testing.assert_allclose(table.lengths[0], niggli.abc, atol=1e-9)
    np.testing.assert_allclose(table.angles[0], niggli.angles, atol=1e-9)
    assert max(table.angles[0]) <= 90 + 1e-6 or min(table.angles[0]) >= 90 - 1e-6  # Niggli
    canonical = Lattice.from_parameters(*niggli.parameters).matrix
    np.testing.assert_allclose(table.lattice[0], canonical, atol=1e-12)
    assert table.lattice[0][0, 1] == 0 and np.all(table.lattice[0][2, :2] == 0)  # a in xz, c ∥ z
    expected = wrap_unit(niggli.get_fractional_coords(read.cart_coords))
    assert _periodic_gap(table.frac, expected) < 1e-9
    assert np.all((table.frac >= 0) & (table.frac < 1))
    # only a rigid motion: same interatomic distances, and StructureMatcher agrees
    rebuilt = table.structure(0)
    np.testing.assert_allclose(rebuilt.distance_matrix, read.distance_matrix, atol=1e-6)
    np.testing.assert_allclose(rebuilt.volume, original.volume, rtol=1e-7)
    assert StructureMatcher().fit(original, rebuilt)
    assert table.material_id == ["m-0"] and table.properties["heat_ref"].tolist() == [0.0]
    assert table.properties["formula"] == ["x"] and table.properties["source_row"].tolist() == [0]


def test_two_bases_of_one_crystal_give_the_same_canonical_cell(tmp_path, write_csv):
    first = _crystal(basis=((1, 0, 0), (0, 1, 0), (0, 0, 1)), seed=3)
    second = _crystal(basis=((0, 1, 0), (1, 0, 1), (2, 1, 1)), seed=3)  # det = 1
    rot = Lattice(second.lattice.matrix @ _rotation(0.7, 0.2, -1.1).T)  # and turned
    second = Structure(rot, second.species, second.frac_coords)
    path = write_csv(tmp_path / "two.csv.gz", _rows(first, second), COLUMNS)
    table = load_crystals(path)
    np.testing.assert_allclose(table.lattice[0], table.lattice[1], atol=1e-6)
    a, b = table.atoms(0)[1], table.atoms(1)[1]
    order_a, order_b = np.lexsort(np.round(a, 5).T), np.lexsort(np.round(b, 5).T)
    assert _periodic_gap(a[order_a], b[order_b]) < 1e-6


def _rotation(x: float, y: float, z: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec([x, y, z]).as_matrix()


def test_wrap_unit_sends_everything_into_half_open_interval():
    values = np.array([-1e-17, 1.0, 2.5, -0.25, 0.0, 0.999])
    assert wrap_unit(values).tolist() == [0.0, 0.0, 0.5, 0.75, 0.0, 0.999]


def test_float32_items_stay_below_one(tmp_path, write_csv):
    # CIF keeps 8 decimals: 0.99999999 and -0.00000001 (= 0.99999999) round to 1.0 in float32
    coords = [[0.99999999, 0.5, -0.00000001], [0.5, 0, 0]]
    structure = Structure(Lattice.cubic(4.0), ["Na", "Cl"], coords, to_unit_cell=False)
    table = load_crystals(write_csv(tmp_path / "edge.csv", _rows(structure), COLUMNS))
    assert np.all(table.frac < 1) and (table.frac.astype(np.float32) == 1.0).any()
    frac = CrystalDataset(table)[0]["frac"]
    assert frac.dtype == torch.float32 and bool(((frac >= 0) & (frac < 1)).all())


# -- cache ------------------------------------------------------------------------------------
def test_second_load_reads_the_cache_and_parses_nothing(tmp_path, write_csv, monkeypatch):
    path = write_csv(tmp_path / "c.csv", _rows(_crystal(), _crystal(seed=1)), COLUMNS)
    cache = tmp_path / "cache"
    first = load_crystals(path, cache_root=cache)
    assert [p.suffix for p in cache.iterdir()] == [".pt"]  # one file, no temporary left

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again despite the cache")

    monkeypatch.setattr(crystal_data, "read_crystal_csv", no_parsing)
    second = load_crystals(path, cache_root=cache)
    for name in ("types", "frac", "lattice", "lengths", "angles", "num_atoms", "rows"):
        np.testing.assert_array_equal(getattr(second, name), getattr(first, name))
    assert second.material_id == first.material_id and second.properties.keys() == {
        "source_row",
        "heat_ref",
        "formula",
    }
    # other options or other bytes miss the cache
    with pytest.raises(AssertionError, match="parsed again"):
        load_crystals(path, cache_root=cache, niggli=False)
    write_csv(path, _rows(_crystal(seed=2)), COLUMNS)
    with pytest.raises(AssertionError, match="parsed again"):
        load_crystals(path, cache_root=cache)


def test_unreadable_or_unwritable_cache_only_costs_a_parse(tmp_path, write_csv, caplog):
    path = write_csv(tmp_path / "c.csv", _rows(_crystal()), COLUMNS)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="sciflow_domains.crystal"):
        assert len(load_crystals(path, cache_root=blocker)) == 1
    assert "could not write the crystal cache" in caplog.text
    cache = tmp_path / "cache"
    load_crystals(path, cache_root=cache)
    (cached,) = cache.iterdir()
    cached.write_bytes(b"torn")
    with caplog.at_level(logging.WARNING, logger="sciflow_domains.crystal"):
        assert len(load_crystals(path, cache_root=cache)) == 1
    assert "ignoring the crystal cache" in caplog.text and cached.stat().st_size > 4


# -- errors -----------------------------------------------------------------------------------
def _bad_rows(kind: str) -> list[dict]:
    rows = _rows(_crystal(), _crystal(seed=1), _crystal(seed=2))
    cif = rows[1]["cif"]
    if kind == "malformed":
        rows[1]["cif"] = cif.replace("_cell_length_a", "_cell_length_a  garbage\nloop_\n x")[:400]
    elif kind == "unknown element":
        rows[1]["cif"] = cif.replace("  Ti  Ti", "  Xx  Xx")
    elif kind == "empty cif":
        rows[1]["cif"] = "   "
    return rows


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("malformed", "malformed CIF"),
        ("unknown element", "unknown element 'Xx'"),
        ("empty cif", "empty cif"),
    ],
)
def test_bad_row_names_file_row_and_material_id(tmp_path, write_csv, kind, match):
    path = write_csv(tmp_path / "bad.csv", _bad_rows(kind), COLUMNS)
    with pytest.raises(CrystalParseError, match=match) as err:
        load_crystals(path)
    assert (err.value.path, err.value.row, err.value.material_id) == (str(path), 1, "m-1")
    assert str(path) in str(err.value) and "data row 1" in str(err.value)
    assert "'m-1'" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_skip_invalid_skips_with_a_logged_count(tmp_path, write_csv, caplog):
    path = write_csv(tmp_path / "bad.csv", _bad_rows("unknown element"), COLUMNS)
    for attempt in range(2):  # parsed, then from the cache: both report the skipped row
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sciflow_domains.crystal"):
            table = load_crystals(path, skip_invalid=True)
        assert table.material_id == ["m-0", "m-2"] and table.rows.tolist() == [0, 2], attempt
        assert [(s.row, s.material_id) for s in table.skipped] == [(1, "m-1")]
        assert "skipped 1 of 3 rows" in caplog.text and "m-1" in caplog.text


def test_file_level_errors_name_the_file(tmp_path, write_csv):
    empty = tmp_path / "empty.csv.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(CrystalParseError, match="empty file") as err:
        load_crystals(empty, skip_invalid=True)
    assert str(empty) in str(err.value)
    no_cif = write_csv(tmp_path / "nocif.csv", [{"material_id": "a"}], ["material_id"])
    with pytest.raises(CrystalParseError, match="no 'cif' column") as err:
        load_crystals(no_cif, skip_invalid=True)
    assert str(no_cif) in str(err.value) and "header row" in str(err.value)
    header_only = write_csv(tmp_path / "header.csv", [], COLUMNS)
    with pytest.raises(CrystalParseError, match="no data rows"):
        load_crystals(header_only)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text(",material_id,cif\n0,m-7,x,extra\n")
    with pytest.raises(CrystalParseError, match="data row 0.*'m-7'.*4 fields"):
        load_crystals(ragged)


# -- atom counts, batches ---------------------------------------------------------------------
def test_histogram_counts_every_crystal_and_sampling_follows_it():
    counts = np.array([5, 5, 2, 7, 5, 2])
    hist = num_atoms_histogram(counts)
    assert hist.tolist() == [0, 0, 2, 0, 0, 3, 0, 1] and hist.sum() == len(counts)
    draws = sample_num_atoms(hist, 6000, generator=torch.Generator().manual_seed(0))
    assert set(draws.tolist()) == {2, 5, 7}
    freq = torch.bincount(draws, minlength=8).double() / 6000
    np.testing.assert_allclose(freq.numpy(), hist / hist.sum(), atol=0.03)


def test_collate_gives_the_exact_indexed_layout():
    sizes = (2, 1, 3)
    g = torch.Generator().manual_seed(0)
    items = [
        {
            "frac": torch.rand(n, 3, generator=g),
            "types": torch.arange(n) + 10 * k,
            "lattice": torch.eye(3) * (k + 1),
        }
        for k, n in enumerate(sizes)
    ]
    batch = collate_crystals(items)
    assert set(batch) == {"frac", "types", "index", "num_samples", "num_atoms", "lattice"}
    assert batch["index"].tolist() == [0, 0, 1, 2, 2, 2]
    assert batch["num_samples"] == 3 and batch["num_atoms"].tolist() == list(sizes)
    assert batch["types"].tolist() == [0, 1, 10, 20, 21, 22] and batch["types"].dtype == torch.long
    assert torch.equal(batch["frac"], torch.cat([it["frac"] for it in items]))
    assert batch["frac"].shape == (6, 3) and batch["lattice"].shape == (3, 3, 3)
    assert torch.equal(batch["lattice"][2], 3 * torch.eye(3))
    with pytest.raises(ValueError, match="items"):
        collate_crystals([])


def test_dataset_batches_reproduce_cartesian_positions(tmp_path, write_csv):
    structures = [_crystal(seed=s) for s in range(3)]
    table = load_crystals(write_csv(tmp_path / "d.csv", _rows(*structures), COLUMNS))
    dataset = CrystalDataset(table, lattice_scale=2.0)
    batch = collate_crystals([dataset[i] for i in range(3)])
    assert torch.equal(batch["num_atoms"], torch.tensor([5, 5, 5]))
    for b in range(3):
        lattice = 2.0 * batch["lattice"][b].double()  # back to Å
        cart = batch["frac"][batch["index"] == b].double() @ lattice
        types = batch["types"][batch["index"] == b].tolist()
        rebuilt = Structure(lattice.numpy(), types, cart.numpy(), coords_are_cartesian=True)
        assert StructureMatcher().fit(structures[b], rebuilt)


# -- split files and data module --------------------------------------------------------------
def test_find_split_prefers_csv_then_gz_and_explains_what_is_missing(tmp_path, write_csv):
    folder = tmp_path / "crystal" / "perov_5"
    write_csv(folder / "val.csv.gz", _rows(_crystal()), COLUMNS)
    assert find_split("perov_5", "val", tmp_path) == folder / "val.csv.gz"
    write_csv(folder / "val.csv", _rows(_crystal()), COLUMNS)
    assert find_split("perov_5", "val", tmp_path) == folder / "val.csv"
    write_csv(folder / "train_subset.csv.gz", _rows(_crystal()), COLUMNS)
    assert find_split("perov_5", "train_subset", tmp_path).name == "train_subset.csv.gz"
    with pytest.raises(FileNotFoundError) as err:
        find_split("perov_5", "train", tmp_path)
    message = str(err.value)
    assert str(folder / "train.csv") in message and str(folder / "train.csv.gz") in message
    assert "train_subset.csv.gz" in message  # offered, never used silently
    assert "sciflow data fetch perov_5" in message and CANONICAL["perov_5"].url("train") in message
    with pytest.raises(FileNotFoundError, match="sciflow data fetch carbon_24`$"):
        find_split("carbon_24", "test", tmp_path)
    with pytest.raises(FileNotFoundError, match="mp_20/test.csv.*starts with 5dc64304"):
        find_split("mp_20", "test", tmp_path)
    with pytest.raises(ValueError, match="split"):
        find_split("perov_5", "../val", tmp_path)


def test_datamodule_batches_seeded_order_and_histogram(tmp_path, write_csv):
    folder = tmp_path / "crystal" / "toy"
    small = Structure(Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    write_csv(folder / "val.csv", _rows(*[_crystal(seed=s) for s in range(5)], small), COLUMNS)
    write_csv(folder / "test.csv.gz", _rows(small, small), COLUMNS)

    def first_batch() -> dict:
        module = CrystalDataModule("toy", batch_size=4, root=str(tmp_path), seed=7)
        module.setup("fit")
        assert module.num_atoms_histogram().tolist() == [0, 0, 1, 0, 0, 5]
        assert len(module.val_dataloader().dataset) == 2
        return next(iter(module.train_dataloader()))

    batch, again = first_batch(), first_batch()
    assert batch["num_samples"] == 4 and batch["lattice"].shape == (4, 9)
    assert batch["frac"].shape == (len(batch["index"]), 3)
    assert batch["cond"]["types"].shape == batch["index"].shape and "types" not in batch
    assert all(torch.equal(batch[k], again[k]) for k in ("frac", "index", "lattice"))
    assert torch.equal(batch["cond"]["types"], again["cond"]["types"])
    module = CrystalDataModule("toy", root=str(tmp_path), num_train=2, val_split="missing")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        module.setup("fit")
    assert len(module.datasets["train"]) == 2


def test_engine_batch_layouts():
    items = [
        {"frac": torch.rand(2, 3), "types": torch.tensor([11, 17]), "lattice": torch.eye(3)},
        {"frac": torch.rand(1, 3), "types": torch.tensor([6]), "lattice": 2 * torch.eye(3)},
    ]
    raw = collate_crystals(items)
    csp, gen = engine_batch(raw, "csp"), engine_batch(raw, "abinitio")
    assert torch.equal(csp["lattice"][1], 2 * torch.eye(3).flatten())
    assert csp["cond"]["types"].tolist() == [11, 17, 6] and "types" not in csp
    assert gen["types"].tolist() == [10, 16, 5] and "cond" not in gen  # class = Z - 1
    assert "num_atoms" not in csp and csp["index"].tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match="task"):
        engine_batch(raw, "generation")


# -- downloads and real data ------------------------------------------------------------------
def test_registered_downloads_are_the_verified_canonical_splits():
    assert {"perov_5", "carbon_24"} <= set(list_datasets())
    assert "mp_20" not in list_datasets() and "mpts_52" not in list_datasets()
    for name in ("perov_5", "carbon_24"):
        spec = get_dataset(name)
        assert spec.domain == "crystal"
        assert {f.relative_path for f in spec.files} == {"val.csv", "test.csv"}
        for remote in spec.files:
            split = remote.relative_path.removesuffix(".csv")
            assert remote.url == CANONICAL[name].url(split)
            assert remote.url.startswith("https://raw.githubusercontent.com/txie-93/cdvae/main/")
    assert "perov_5" in format_dataset_table()


@pytest.mark.data
@pytest.mark.parametrize("name", ["perov_5", "carbon_24"])
@pytest.mark.parametrize("split", ["val", "test"])
def test_local_canonical_files_match_registered_digests(real_split, name, split):
    path = real_split(name, split)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()  # = git hash-object
    assert blob.startswith(CANONICAL[name].blob_prefix[split])
    (remote,) = [f for f in get_dataset(name).files if f.relative_path == f"{split}.csv"]
    assert hashlib.sha256(raw).hexdigest() == remote.sha256


def test_git_blob_hash_formula_matches_git(tmp_path):
    sample = tmp_path / "x.csv"
    sample.write_bytes(b",a\n0,1\n")
    try:
        out = subprocess.run(["git", "hash-object", str(sample)], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    raw = sample.read_bytes()
    assert out.stdout.decode().strip() == hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()


@pytest.fixture(scope="module")
def perov5_val(tmp_path_factory):
    """Perov-5 val parsed once for this module (cold, into a fresh cache), or skip."""
    try:
        path = find_split("perov_5", "val")
    except FileNotFoundError as err:
        hint = "set SCIFLOW_DATA_DIR to the folder holding crystal/"
        pytest.skip(f"real crystal data absent ({hint}): {err}")
    cache = tmp_path_factory.mktemp("perov5_cache")
    return path, cache, load_crystals(path, cache_root=cache)


@pytest.mark.data
def test_real_perov5_val_parses_completely(perov5_val, monkeypatch):
    path, cache, table = perov5_val
    assert len(table) == 3787 and not table.skipped
    assert table.num_atoms.tolist() == [5] * 3787
    assert num_atoms_histogram(table).tolist() == [0, 0, 0, 0, 0, 3787]
    assert np.all((table.frac >= 0) & (table.frac < 1)) and np.all(table.lattice[:, 0, 1] == 0)
    assert table.types.min() >= 1 and len(np.unique(table.types)) <= 56
    assert np.isfinite(table.properties["heat_ref"]).all()

    monkeypatch.setattr(crystal_data, "read_crystal_csv", None)  # the cache must serve it
    again = load_crystals(path, cache_root=cache)
    np.testing.assert_array_equal(again.frac, table.frac)
