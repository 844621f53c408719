"""Ab initio crystal generation: atom-count histogram, type classes, sampler sizes and errors,
CIF round trip, and the CLI workflow (fit → checkpoint with histogram → sample) on tiny fixtures."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from sciflow_domains.crystal.data import (
    CrystalDataModule,
    atomic_number_to_class,
    class_to_atomic_number,
    sample_num_atoms,
)
from sciflow_domains.crystal.nets import CSPNet
from sciflow_domains.crystal.sampler import CrystalSampler
from sciflow_domains.crystal.task import CrystalTask

from sciflow.api import load_sampler
from sciflow.bfn.discrete import DiscreteBFN
from sciflow.bfn.engine import BayesianFlowEngine
from sciflow.bfn.gaussian import GaussianBFN
from sciflow.bfn.vonmises import VonMisesBFN
from sciflow.cli import main

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs" / "crystal" / "smoke_abinitio.yaml"
COLUMNS = ["material_id", "cif"]


# -- fixtures ---------------------------------------------------------------------------------
def _crystals() -> list[Structure]:
    """Six small crystals of 2, 2, 5, 3, 5 and 5 atoms."""
    cscl = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nacl = Structure(Lattice.cubic(3.9), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    perovskite = Structure(
        Lattice.cubic(3.905),
        ["Sr", "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    caf2 = Structure(
        Lattice.cubic(4.5), ["Ca", "F", "F"], [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]]
    )
    batio3 = perovskite.copy()
    batio3.replace_species({"Sr": "Ba"})
    catio3 = perovskite.copy()
    catio3.replace_species({"Sr": "Ca"})
    return [cscl, nacl, perovskite, caf2, batio3, catio3]


@pytest.fixture
def toy_root(tmp_path, write_csv) -> Path:
    """``<root>/crystal/toy/{val,test}.csv``: the six crystals, and two of them as test."""
    rows = [{"material_id": f"m-{k}", "cif": s.to(fmt="cif")} for k, s in enumerate(_crystals())]
    folder = tmp_path / "data" / "crystal" / "toy"
    write_csv(folder / "val.csv", rows, COLUMNS)
    write_csv(folder / "test.csv", rows[:2], COLUMNS)
    return tmp_path / "data"


def abinitio_task(histogram: list[int] | None = None) -> CrystalTask:
    """An untrained ab initio CrysBFN (n = 10) with a tiny CSPNet, lattice unit 2 Å."""
    engine = BayesianFlowEngine(
        {
            "frac": VonMisesBFN(3, layout="indexed"),
            "lattice": GaussianBFN(9, sigma1=0.0316, prediction="x"),
            "types": DiscreteBFN(100, beta1=0.5, layout="indexed"),
        },
        num_steps=10,
    )
    torch.manual_seed(0)
    net = partial(CSPNet, hidden=16, num_layers=1, num_freqs=4, time_dim=8)
    return CrystalTask(engine, net, lattice_scale=2.0, num_atoms_histogram=histogram, ema_decay=0.0)


def csp_task() -> CrystalTask:
    engine = BayesianFlowEngine(
        {
            "frac": VonMisesBFN(3, layout="indexed"),
            "lattice": GaussianBFN(9, sigma1=0.0316, prediction="x"),
        },
        num_steps=10,
    )
    net = partial(CSPNet, hidden=16, num_layers=1, num_freqs=4, time_dim=8)
    return CrystalTask(engine, net, lattice_scale=2.0, ema_decay=0.0)


# -- data -------------------------------------------------------------------------------------
def test_histogram_of_the_training_split_and_type_classes_of_batches(toy_root):
    module = CrystalDataModule("toy", batch_size=6, root=str(toy_root), task="abinitio")
    module.setup("fit")
    assert module.num_atoms_histogram().tolist() == [0, 0, 2, 1, 0, 3]
    batch = next(iter(module.val_dataloader()))  # unshuffled: the two test crystals
    assert "cond" not in batch
    assert batch["types"].tolist() == [55 - 1, 17 - 1, 11 - 1, 17 - 1]  # Cs Cl | Na Cl
    assert batch["index"].tolist() == [0, 0, 1, 1] and batch["lattice"].shape == (2, 9)


def test_type_classes_are_atomic_numbers_minus_one():
    z = torch.tensor([1, 8, 38, 94, 100])
    assert atomic_number_to_class(z).tolist() == [0, 7, 37, 93, 99]
    assert torch.equal(class_to_atomic_number(atomic_number_to_class(z)), z)
    with pytest.raises(ValueError, match="types: expected integer atomic numbers >= 1"):
        atomic_number_to_class(torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="classes: expected integer class indices >= 0"):
        class_to_atomic_number(torch.tensor([1.0]))


# -- sampler ----------------------------------------------------------------------------------
def test_sampler_sizes_follow_num_atoms_and_seed():
    sampler = CrystalSampler(abinitio_task())
    res = sampler.sample(num_atoms=[2, 5, 3], seed=4)
    assert torch.bincount(res.index).tolist() == [2, 5, 3]
    assert res.samples["frac"].shape == (10, 3) and res.samples["lattice"].shape == (3, 9)
    assert res.types.shape == (10,) and 1 <= int(res.types.min()) <= int(res.types.max()) <= 100
    assert torch.equal(res.samples["types"], res.types)  # atomic numbers, not classes
    assert [len(s) for s in res.to_structures()] == [2, 5, 3]
    again = sampler.sample(num_atoms=[2, 5, 3], seed=4)
    assert all(torch.equal(res.samples[k], again.samples[k]) for k in res.samples)
    assert set(res.to_numpy()) == {"frac", "lattice", "types", "index"}


def test_sampler_draws_sizes_from_the_stored_histogram():
    histogram = [0, 0, 3, 0, 1]
    res = CrystalSampler(abinitio_task(histogram)).sample(num_samples=40, seed=7)
    expected = sample_num_atoms(histogram, 40, torch.Generator().manual_seed(7))
    assert torch.bincount(res.index).tolist() == expected.tolist()
    assert set(expected.tolist()) == {2, 4}


def test_generated_structures_round_trip_through_cifs(tmp_path):
    res = CrystalSampler(abinitio_task()).sample(num_atoms=[3, 1, 4], seed=0)
    structures = res.to_structures()
    paths = res.write_cifs(tmp_path)
    assert [p.name.split("_")[1] for p in paths] == ["0000", "0001", "0002"]
    for structure, path in zip(structures, paths, strict=True):
        again = Structure.from_file(path)
        assert again.species == structure.species
        np.testing.assert_allclose(again.lattice.abc, structure.lattice.abc, rtol=1e-6)
        np.testing.assert_allclose(again.lattice.angles, structure.lattice.angles, atol=1e-4)
        gap = (again.frac_coords - structure.frac_coords + 0.5) % 1.0 - 0.5
        assert np.abs(gap).max() < 1e-6


def test_task_and_request_mismatches_raise_named_errors():
    ab, csp = CrystalSampler(abinitio_task()), CrystalSampler(csp_task())
    with pytest.raises(ValueError, match="compositions: this model generates atom types"):
        ab.sample(compositions=["Sr1 Ti1 O3"])
    with pytest.raises(ValueError, match="num_atoms: this model has no atom-count histogram"):
        ab.sample(num_samples=3)
    with pytest.raises(ValueError, match="num_samples=2 but 3 entries"):
        ab.sample(num_samples=2, num_atoms=[1, 2, 3])
    with pytest.raises(ValueError, match="num_atoms: expected atom counts >= 1"):
        ab.sample(num_atoms=[2, 0])
    with pytest.raises(ValueError, match="num_samples: give the number of crystals"):
        ab.sample()
    with pytest.raises(TypeError, match="compositions: expected a list"):
        ab.sample(4)
    with pytest.raises(ValueError, match="compositions: this model predicts structures"):
        csp.sample(num_samples=3)
    with pytest.raises(ValueError, match="num_atoms: CSP takes the atom counts"):
        csp.sample(compositions=["Na1 Cl1"], num_atoms=[2])
    with pytest.raises(ValueError, match="num_atoms_histogram"):
        abinitio_task([0, -1, 2])


# -- CLI workflow -----------------------------------------------------------------------------
def _fit(toy_root: Path, run: Path, *options: str) -> None:
    main(["fit", "--config", str(SMOKE), "--trainer.default_root_dir", str(run),
          "--data.init_args.root", str(toy_root), "--data.init_args.dataset", "toy",
          "--data.init_args.batch_size", "4", *options])  # fmt: skip


def test_fit_stores_the_histogram_and_samples_through_the_cli(toy_root, tmp_path):
    _fit(toy_root, tmp_path / "dev", "--trainer.fast_dev_run", "1")
    _fit(toy_root, tmp_path / "run")
    checkpoint = next((tmp_path / "run").rglob("last.ckpt"))
    state = torch.load(checkpoint, weights_only=False)
    init_args = state["sciflow"]["model_config"]["init_args"]
    assert init_args["num_atoms_histogram"] == [0, 0, 2, 1, 0, 3]
    sampler = load_sampler(checkpoint)
    assert isinstance(sampler, CrystalSampler) and sampler.task_kind == "abinitio"
    res = sampler.sample(num_samples=6, seed=1)
    assert set(torch.bincount(res.index).tolist()) <= {2, 3, 5}
    assert len(res.to_structures()) == 6

    main(["sample", "--checkpoint", str(checkpoint), "--num-samples", "3", "--solver",
          "end_back", "--out", str(tmp_path / "cli")])  # fmt: skip
    assert len(list((tmp_path / "cli").glob("crystal_*.cif"))) == 3
    with np.load(tmp_path / "cli" / "samples.npz") as npz:
        assert npz["index"].max() == 2 and len(npz["types"]) == len(npz["frac"])


def test_fit_refuses_a_data_module_of_the_other_task(toy_root, tmp_path):
    with pytest.raises(ValueError, match="task: the data module's task is 'csp'"):
        _fit(toy_root, tmp_path, "--data.init_args.task", "csp", "--trainer.fast_dev_run", "1")
