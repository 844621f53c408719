"""Crystal structure prediction through the CLI: fit CrysBFN on Perov-5, load the checkpoint as a
`CrystalSampler`, predict structures for given compositions, write and re-read CIFs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pymatgen.core import Composition, Structure
from sciflow_domains.crystal.data import find_split
from sciflow_domains.crystal.sampler import CrystalSampler, CrystalSamples, composition_types

from sciflow.api import load_sampler
from sciflow.cli import main

ROOT = Path(__file__).resolve().parents[3]
SMOKE = ROOT / "configs" / "crystal" / "smoke_csp.yaml"


@pytest.fixture(scope="module")
def perov5() -> None:
    try:
        find_split("perov_5", "val"), find_split("perov_5", "test")
    except FileNotFoundError as err:
        pytest.skip(f"Perov-5 val/test not found ({err}); set SCIFLOW_DATA_DIR")


def test_composition_types_and_errors():
    assert composition_types("Sr1 Ti1 O3") == [38, 22, 8, 8, 8]
    assert composition_types(Composition("Na2Cl2")) == [11, 11, 17, 17]
    with pytest.raises(ValueError, match="whole atom counts"):
        composition_types(Composition({"Na": 0.5, "Cl": 0.5}))
    with pytest.raises(ValueError, match="not a chemical element"):
        composition_types("Xx9")


def test_samples_to_structures_and_cif_round_trip(tmp_path):
    """Rock-salt NaCl (a = 5.64 Å) stored in model units with lattice_scale 2."""
    frac = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
    lattice = torch.stack([torch.eye(3).flatten() * 5.64 / 2, torch.eye(3).flatten() * 2.0])
    res = CrystalSamples(
        samples={"frac": frac + torch.tensor([[1.0, 0.0, 0.0], [0, 0, 0], [0, 0, 0]]),
                 "lattice": lattice},
        times=torch.zeros(2), num_function_evals=1, types=torch.tensor([11, 17, 6]),
        index=torch.tensor([0, 0, 1]), lattice_scale=2.0,
    )  # fmt: skip
    nacl, carbon = res.to_structures()
    assert nacl.lattice.abc == pytest.approx((5.64, 5.64, 5.64))
    assert nacl.frac_coords[0].tolist() == [0.0, 0.0, 0.0]  # wrapped from 1.0
    paths = res.write_cifs(tmp_path)
    assert [p.name for p in paths] == ["crystal_0000_Na1Cl1.cif", "crystal_0001_C1.cif"]
    again = Structure.from_file(paths[0])
    assert again.composition == nacl.composition
    assert again.lattice.volume == pytest.approx(5.64**3, rel=1e-6)


def test_fit_sample_and_write_cifs(perov5, tmp_path):
    main(["fit", "--config", str(SMOKE), "--trainer.default_root_dir", str(tmp_path / "run")])
    checkpoint = next((tmp_path / "run").rglob("last.ckpt"))
    sampler = load_sampler(checkpoint)
    assert isinstance(sampler, CrystalSampler) and sampler.task.lattice_scale == 1.96
    res = sampler.sample(compositions=["Sr1 Ti1 O3", "Ba2 Zr2 O6"], seed=3)
    structures = res.to_structures()
    assert [s.composition.reduced_formula for s in structures] == ["SrTiO3", "BaZrO3"]
    assert [len(s) for s in structures] == [5, 10]
    torch.testing.assert_close(
        torch.from_numpy(res.lattices()[0]).float(),
        1.96 * res.samples["lattice"][0].reshape(3, 3),
    )
    assert len(res.write_cifs(tmp_path / "cifs")) == 2
    with pytest.raises(ValueError, match="compositions"):
        sampler.sample(num_samples=2)

    main(["sample", "--checkpoint", str(checkpoint), "--compositions", "Sr1 Ti1 O3",
          "--out", str(tmp_path / "cli")])  # fmt: skip
    assert len(list((tmp_path / "cli").glob("*.cif"))) == 1


def test_lattice_scale_must_match_the_data(perov5, tmp_path):
    with pytest.raises(ValueError, match="lattice_scale"):
        main(["fit", "--config", str(SMOKE), "--trainer.default_root_dir", str(tmp_path),
              "--data.init_args.lattice_scale", "1.0"])  # fmt: skip


def test_flow_matching_baseline_fits_and_predicts(perov5, tmp_path):
    config = ROOT / "configs" / "crystal" / "fm_csp_perov5_cpu.yaml"
    main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path),
          "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
          "--trainer.callbacks", "[]", "--trainer.check_val_every_n_epoch", "1",
          "--data.init_args.num_train", "32", "--data.init_args.num_val", "8",
          "--model.init_args.network.init_args.hidden", "16"])  # fmt: skip
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    res = load_sampler(checkpoint).sample(compositions=["Ca1 Ti1 O3"], num_steps=3)
    (structure,) = res.to_structures()
    assert structure.composition.reduced_formula == "CaTiO3"
    assert res.noise is not None and res.noise["frac"].shape == (5, 3)
