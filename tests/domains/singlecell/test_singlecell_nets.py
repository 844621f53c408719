"""The MFM networks: kNN graphs within populations, an order-invariant unit-norm population
embedding, and the three conditioning modes of the field (FM, CGFM, MFM)."""

from __future__ import annotations

import pytest
import torch
from sciflow_domains.singlecell.nets import PopulationEncoder, PopulationFlowNet, knn_edges

from sciflow.engine import Engine, FlowComponent
from sciflow.manifolds import Euclidean, FlatTorus


def _engine(dim: int = 3) -> Engine:
    return Engine({"x": FlowComponent(Euclidean(dim), layout="indexed")})


def _context(num: int = 3, cells: int = 20, dim: int = 3, seed: int = 0) -> tuple[dict, dict]:
    gen = torch.Generator().manual_seed(seed)
    index = torch.arange(num).repeat_interleave(cells)
    source = torch.randn(num * cells, dim, generator=gen) + index.unsqueeze(1).float()
    cond = {
        "source": source,
        "source_index": index,
        "condition": torch.zeros(num, dtype=torch.long),
        "population": torch.arange(num),
    }
    x_t = {"x": torch.randn(num * cells, dim, generator=gen)}
    return x_t, {"index": index, "num_samples": num, "cond": cond}


def test_knn_edges_match_brute_force_and_stay_within_groups():
    gen = torch.Generator().manual_seed(1)
    cells = torch.randn(30, 2, generator=gen)
    index = torch.tensor([0] * 12 + [1] * 15 + [2] * 3)
    edges = knn_edges(cells, index, 3, k=4)
    src, dst = edges
    assert torch.equal(index[src], index[dst])  # never across populations
    assert not torch.any(src == dst)
    for cell in range(30):
        members = torch.nonzero(index == index[cell]).flatten()
        others = members[members != cell]
        dist = (cells[others] - cells[cell]).norm(dim=1)
        expected = set(others[dist.argsort()[: min(4, len(others))]].tolist())
        assert set(src[dst == cell].tolist()) == expected  # group 2 (3 cells): both others
    assert knn_edges(cells, index, 3, k=0).shape == (2, 0)
    with pytest.raises(ValueError, match="k: expected"):
        knn_edges(cells, index, 3, k=-1)


def test_population_embedding_is_invariant_to_cell_order_and_unit_norm():
    torch.manual_seed(0)
    encoder = PopulationEncoder(dim=3, hidden=16, num_layers=3, knn=5).double()
    _, context = _context()
    source = context["cond"]["source"].double()
    index = context["index"]
    emb = encoder(source, index, 3)
    assert emb.shape == (3, 16)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3, dtype=torch.float64))
    perm = torch.randperm(len(source))
    shuffled = encoder(source[perm], index[perm], 3)
    assert torch.allclose(emb, shuffled, atol=1e-12)
    # Each population's embedding depends on its own cells only.
    moved = source.clone()
    moved[index == 2] += 5.0
    other = encoder(moved, index, 3)
    assert torch.allclose(other[:2], emb[:2], atol=1e-12)
    assert not torch.allclose(other[2], emb[2])


@pytest.mark.parametrize("mode", ["fm", "cgfm", "mfm"])
def test_field_shapes_and_which_inputs_matter(mode):
    torch.manual_seed(0)
    net = PopulationFlowNet(_engine(), mode=mode, num_train_populations=2, hidden=32, depth=2,
                            time_dim=8, fourier_features=4, embed_dim=8, knn=3)  # fmt: skip
    x_t, context = _context()
    t = torch.rand(3)
    out = net(x_t, t, context)["x"]
    assert out.shape == (60, 3)
    changed = {**context, "cond": {**context["cond"], "source": context["cond"]["source"] + 2}}
    moved = net(x_t, t, changed)["x"]
    # Only MFM reads the source population.
    assert torch.allclose(out, moved) == (mode != "mfm")
    renamed = {**context, "cond": {**context["cond"], "population": torch.tensor([1, 0, 2])}}
    # Only CGFM reads the population id.
    assert torch.allclose(out, net(x_t, t, renamed)["x"]) == (mode != "cgfm")


def test_cgfm_unseen_population_gets_the_mean_of_the_training_codes():
    net = PopulationFlowNet(_engine(), mode="cgfm", num_train_populations=4, hidden=8, depth=1)
    code = net.population_code(torch.tensor([0, 3, 4, 9]))
    assert torch.equal(code[0], torch.tensor([1.0, 0, 0, 0]))
    assert torch.equal(code[1], torch.tensor([0, 0, 0, 1.0]))
    assert torch.equal(code[2], torch.full((4,), 0.25))
    assert torch.equal(code[3], torch.full((4,), 0.25))


def test_mfm_precomputed_embedding_equals_the_inline_one():
    torch.manual_seed(0)
    net = PopulationFlowNet(_engine(), mode="mfm", hidden=16, depth=2, embed_dim=8, knn=3)
    x_t, context = _context()
    t = torch.rand(3)
    cond = context["cond"]
    embedding = net.embed(cond["source"], cond["source_index"], 3)
    cached = {**context, "cond": {**cond, "embedding": embedding}}
    assert torch.allclose(net(x_t, t, context)["x"], net(x_t, t, cached)["x"])


def test_field_rejects_wrong_engines_and_inputs():
    with pytest.raises(ValueError, match="one indexed part named 'x'"):
        PopulationFlowNet(Engine({"x": FlowComponent(Euclidean(2))}))
    with pytest.raises(ValueError, match="must be Euclidean"):
        PopulationFlowNet(Engine({"x": FlowComponent(FlatTorus(2), layout="indexed")}))
    with pytest.raises(ValueError, match="mode: expected"):
        PopulationFlowNet(_engine(), mode="cfm")
    with pytest.raises(ValueError, match="cgfm needs the number of training populations"):
        PopulationFlowNet(_engine(), mode="cgfm")
    net = PopulationFlowNet(_engine(), mode="fm", num_conditions=2, hidden=8, depth=1)
    x_t, context = _context()
    bad = {**context, "cond": {**context["cond"], "condition": torch.tensor([0, 1, 2])}}
    with pytest.raises(ValueError, match="num_conditions=2"):
        net(x_t, torch.rand(3), bad)
    with pytest.raises(ValueError, match="'condition'"):
        net(x_t, torch.rand(3), {**context, "cond": {}})
