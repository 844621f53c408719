"""Property-guided crystal generation: the conditioning column in batches, the property embedding
and its null, classifier-free guidance through the sampler and the CLI, and the property
regressor that scores guided samples (on tiny generated fixtures)."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from sciflow_domains.crystal.data import CrystalDataModule, load_crystals
from sciflow_domains.crystal.nets import CSPNet
from sciflow_domains.crystal.nets_property import PropertyEmbedding
from sciflow_domains.crystal.regressor import TrainedRegressor, fit_regressor
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
COLUMNS = ["material_id", "cif", "heat_ref"]
HEAT = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]


def _perovskite(a: float, a_site: str) -> Structure:
    return Structure(
        Lattice.cubic(a),
        [a_site, "Ti", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )


@pytest.fixture
def heat_root(tmp_path, write_csv) -> Path:
    """``<root>/crystal/toy/{val,test}.csv``: six perovskites with a ``heat_ref`` column."""
    sites = ["Sr", "Ba", "Ca", "Sr", "Ba", "Ca"]
    rows = [
        {"material_id": f"m-{k}", "cif": _perovskite(3.8 + 0.05 * k, s).to(fmt="cif"),
         "heat_ref": h}
        for k, (s, h) in enumerate(zip(sites, HEAT, strict=True))
    ]  # fmt: skip
    folder = tmp_path / "data" / "crystal" / "toy"
    write_csv(folder / "val.csv", rows, COLUMNS)
    write_csv(folder / "test.csv", rows[:2], COLUMNS)
    return tmp_path / "data"


def _module(root: Path, **kwargs) -> CrystalDataModule:
    return CrystalDataModule("toy", batch_size=6, root=str(root), task="abinitio", **kwargs)


# -- data -------------------------------------------------------------------------------------
def test_batches_carry_the_property_standardised_with_training_statistics(heat_root):
    module = _module(heat_root, condition_property="heat_ref")
    module.setup("fit")
    mean, std = float(np.mean(HEAT)), float(np.std(HEAT))
    assert module.property_scaling["name"] == "heat_ref"
    assert math.isclose(module.property_scaling["mean"], mean)
    assert math.isclose(module.property_scaling["std"], std)
    batch = next(iter(module.val_dataloader()))  # the test split: first two crystals
    expected = torch.tensor([[(0.5 - mean) / std], [(1.0 - mean) / std]])
    torch.testing.assert_close(batch["cond"]["property"], expected)
    plain = _module(heat_root)
    plain.setup("fit")
    assert "cond" not in next(iter(plain.val_dataloader()))


def test_missing_or_empty_property_values_name_the_file_and_rows(heat_root, tmp_path, write_csv):
    with pytest.raises(ValueError, match=r"val\.csv: no property column 'band_gap'.*heat_ref"):
        _module(heat_root, condition_property="band_gap").setup("fit")
    rows = [
        {"material_id": f"id-{k}", "cif": _perovskite(3.9, "Sr").to(fmt="cif"), "heat_ref": h}
        for k, h in enumerate([1.0, "", 2.0])
    ]
    folder = tmp_path / "gaps" / "crystal" / "toy"
    write_csv(folder / "val.csv", rows, COLUMNS)
    write_csv(folder / "test.csv", rows, COLUMNS)
    missing = r"'heat_ref' is missing or not finite for 1 crystals: row 1 \(id-1\)"
    with pytest.raises(ValueError, match=missing):
        _module(tmp_path / "gaps", condition_property="heat_ref").setup("fit")


# -- network ----------------------------------------------------------------------------------
def test_property_embedding_uses_the_null_where_the_condition_is_hidden():
    torch.manual_seed(0)
    embed = PropertyEmbedding(1, 8)
    torch.nn.init.normal_(embed.null)
    values = torch.tensor([[0.3], [-1.0], [2.0]])
    mask = torch.tensor([True, False, True])
    out = embed({"cond": {"property": values}, "cond_mask": mask}, 3)
    torch.testing.assert_close(out[1], embed.null.detach())
    torch.testing.assert_close(out[[0, 2]], embed.mlp(values[[0, 2]]))
    torch.testing.assert_close(embed({"cond": {}}, 3), embed.null.expand(3, -1))
    with pytest.raises(ValueError, match=r"cond'\]\['property'\]: expected .* shape \(3, 1\)"):
        embed({"cond": {"property": torch.zeros(3)}}, 3)
    with pytest.raises(ValueError, match="cond_mask"):
        embed({"cond": {"property": values}, "cond_mask": torch.ones(3)}, 3)


def _engine(cond_drop_prob: float = 0.1) -> BayesianFlowEngine:
    return BayesianFlowEngine(
        {
            "frac": VonMisesBFN(3, layout="indexed"),
            "lattice": GaussianBFN(9, sigma1=0.0316, prediction="x"),
            "types": DiscreteBFN(100, beta1=0.5, layout="indexed"),
        },
        num_steps=10,
        cond_drop_prob=cond_drop_prob,
    )


def _inputs(engine, counts=(2, 5)):
    generator = torch.Generator().manual_seed(3)
    index = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    context = {"index": index, "num_samples": len(counts)}
    x = engine.prior(len(counts), context, generator)
    return x, torch.full((len(counts),), 0.4), index


def test_cspnet_output_depends_on_the_property_and_masked_crystals_are_unconditional():
    engine = _engine()
    torch.manual_seed(1)
    net = CSPNet(engine, hidden=16, num_layers=1, num_freqs=4, time_dim=8, num_properties=1)
    x, t, index = _inputs(engine)
    low = net(x, t, {"index": index, "cond": {"property": torch.tensor([[-1.0], [-1.0]])}})
    high = net(x, t, {"index": index, "cond": {"property": torch.tensor([[2.0], [2.0]])}})
    assert not torch.allclose(low["frac"], high["frac"])  # (the prior lattice mean is 0)
    null = net(x, t, {"index": index})
    mixed = net(x, t, {"index": index, "cond": {"property": torch.tensor([[2.0], [2.0]])},
                       "cond_mask": torch.tensor([False, True])})  # fmt: skip
    for part in ("frac", "lattice", "types"):
        rows = index == 0 if part != "lattice" else torch.tensor([True, False])
        torch.testing.assert_close(mixed[part][rows], null[part][rows])
        torch.testing.assert_close(mixed[part][~rows], high[part][~rows])


# -- sampling ---------------------------------------------------------------------------------
def _guided_task() -> CrystalTask:
    torch.manual_seed(0)
    net = partial(CSPNet, hidden=16, num_layers=1, num_freqs=4, time_dim=8, num_properties=1)
    scaling = {"name": "heat_ref", "mean": 1.5, "std": 0.5}
    return CrystalTask(_engine(), net, lattice_scale=2.0, condition_property=scaling, ema_decay=0)


def test_guided_sampling_calls_the_network_twice_per_step_and_is_reproducible():
    sampler = CrystalSampler(_guided_task())
    plain = sampler.sample(num_atoms=[2, 5], seed=2, property=1.0)
    guided = sampler.sample(num_atoms=[2, 5], seed=2, property=1.0, guidance_scale=2.0)
    assert plain.num_function_evals == 11 and guided.num_function_evals == 22
    assert not torch.equal(plain.samples["lattice"], guided.samples["lattice"])
    again = sampler.sample(num_atoms=[2, 5], seed=2, property=[1.0, 1.0], guidance_scale=2.0)
    assert all(torch.equal(guided.samples[k], again.samples[k]) for k in guided.samples)


def test_the_sampler_standardises_targets_with_the_stored_scaling(monkeypatch):
    sampler = CrystalSampler(_guided_task())
    seen = {}

    def capture(num_samples, context, *args):
        seen.update(context)
        raise StopIteration

    monkeypatch.setattr(sampler, "_draw", capture)
    with pytest.raises(StopIteration):
        sampler.sample(num_atoms=[2, 5], property=[0.5, 2.5])
    torch.testing.assert_close(seen["cond"]["property"], torch.tensor([[-2.0], [2.0]]))


def test_property_requests_that_cannot_work_raise_named_errors():
    guided = CrystalSampler(_guided_task())
    with pytest.raises(ValueError, match="guidance_scale: guidance needs a target"):
        guided.sample(num_atoms=[2], guidance_scale=1.0)
    with pytest.raises(ValueError, match="property: expected one finite heat_ref value or 2"):
        guided.sample(num_atoms=[2, 3], property=[1.0, 2.0, 3.0])
    engine = BayesianFlowEngine(
        {"frac": VonMisesBFN(3, layout="indexed"), "lattice": GaussianBFN(9, sigma1=0.0316)},
        num_steps=10,
    )
    net = partial(CSPNet, hidden=16, num_layers=1, num_freqs=4, time_dim=8)
    csp = CrystalSampler(CrystalTask(engine, net, lattice_scale=2.0, ema_decay=0.0))
    with pytest.raises(ValueError, match="property: this model was trained without"):
        csp.sample(compositions=["Sr1 Ti1 O3"], property=1.0)
    with pytest.raises(ValueError, match="condition_property: expected"):
        CrystalTask(_engine(), net, condition_property={"name": "x", "mean": 0.0, "std": 0.0})


def _fit(root: Path, run: Path, *options: str) -> None:
    main(["fit", "--config", str(SMOKE), "--trainer.default_root_dir", str(run),
          "--data.init_args.root", str(root), "--data.init_args.dataset", "toy",
          "--data.init_args.batch_size", "4", *options])  # fmt: skip


def test_fit_stores_the_property_scaling_and_the_cli_samples_guided(heat_root, tmp_path):
    conditioned = ("--data.init_args.condition_property", "heat_ref",
                   "--model.init_args.network.init_args.num_properties", "1",
                   "--model.init_args.engine.init_args.cond_drop_prob", "0.1")  # fmt: skip
    _fit(heat_root, tmp_path / "run", *conditioned)
    checkpoint = next((tmp_path / "run").rglob("last.ckpt"))
    init_args = torch.load(checkpoint, weights_only=False)["sciflow"]["model_config"]["init_args"]
    scaling = init_args["condition_property"]
    assert scaling["name"] == "heat_ref" and math.isclose(scaling["mean"], np.mean(HEAT))
    assert load_sampler(checkpoint).task.condition_property == scaling
    main(["sample", "--checkpoint", str(checkpoint), "--num-samples", "3", "--property", "2.5",
          "--guidance-scale", "1", "--out", str(tmp_path / "cli")])  # fmt: skip
    assert len(list((tmp_path / "cli").glob("crystal_*.cif"))) == 3
    with pytest.raises(ValueError, match="condition_property: the data module conditions on"):
        _fit(heat_root, tmp_path / "bad", conditioned[0], conditioned[1],
             "--trainer.fast_dev_run", "1")  # fmt: skip


# -- regressor --------------------------------------------------------------------------------
def _volume_table(tmp_path, write_csv, name: str, count: int, seed: int):
    """Perovskites with random cubic cells; property = volume per atom (Å³), a known function."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(count):
        structure = _perovskite(float(rng.uniform(3.6, 4.4)), ["Sr", "Ba", "Ca"][k % 3])
        rows.append({"material_id": f"{name}-{k}", "cif": structure.to(fmt="cif"),
                     "heat_ref": structure.volume / len(structure)})  # fmt: skip
    path = write_csv(tmp_path / f"{name}.csv", rows, COLUMNS)
    return load_crystals(path), str(path)


def test_the_regressor_learns_a_known_property_and_is_invariant(tmp_path, write_csv):
    torch.set_num_threads(1)
    train, source = _volume_table(tmp_path, write_csv, "train", 48, 0)
    test, test_source = _volume_table(tmp_path, write_csv, "test", 16, 1)
    tiny = {"hidden": 32, "num_layers": 1, "num_freqs": 4}
    fitted = fit_regressor(
        train, "heat_ref", source, lattice_scale=2.0, num_steps=300, batch_size=16, lr=3e-3, **tiny
    )
    metrics = fitted.evaluate(test, test_source)
    assert metrics["r2"] > 0.9, metrics

    structure = _perovskite(4.0, "Ba")
    moved = Structure(
        Lattice(structure.lattice.matrix @ _rotation().T),
        structure.species[::-1],
        (structure.frac_coords[::-1] + [0.13, 0.4, 0.71]) % 1.0,
    )
    reloaded = TrainedRegressor.load(fitted.save(tmp_path / "regressor.pt"))
    predictions = reloaded.predict_structures([structure, moved])
    np.testing.assert_allclose(predictions[0], predictions[1], rtol=1e-5)
    np.testing.assert_allclose(predictions, fitted.predict_structures([structure, moved]))


def _rotation() -> np.ndarray:
    c, s = math.cos(0.7), math.sin(0.7)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
