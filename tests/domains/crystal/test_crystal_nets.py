"""CSPNet: symmetries (atom permutations, lattice rotations, periodic translations), batching
without cross-talk, and use by the Bayesian-flow and flow-matching engines."""

from __future__ import annotations

import pytest
import torch
from sciflow_domains.crystal.nets import CSPNet, fully_connected_edges

from sciflow.bfn.discrete import DiscreteBFN
from sciflow.bfn.engine import BayesianFlowEngine
from sciflow.bfn.gaussian import GaussianBFN
from sciflow.bfn.vonmises import VonMisesBFN
from sciflow.engine import Engine, FlowComponent
from sciflow.manifolds import Euclidean, FlatTorus

K = 100  # type classes of the ab initio tests: class = atomic number - 1 (Z = 1..100)
TINY = {"hidden": 16, "num_layers": 2, "num_freqs": 4, "time_dim": 8}


# -- crystals and engines --------------------------------------------------------------------------
def nacl() -> tuple[list[int], list[list[float]], float]:
    """Rock salt, conventional cubic cell (8 atoms), a = 5.64 Å."""
    na = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    cl = [[0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]]
    return [11] * 4 + [17] * 4, na + cl, 5.64


def srtio3() -> tuple[list[int], list[list[float]], float]:
    """Cubic perovskite SrTiO3 (5 atoms), a = 3.905 Å."""
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return [38, 22, 8, 8, 8], frac, 3.905


def batch_of(*crystals, csp: bool = True) -> dict:
    """A batch in the engines' layout: frac (M, 3), lattice (B, 9), types as a part (ab initio)
    or as ``cond["types"]`` (CSP), index, num_samples."""
    types, frac, index, lattice = [], [], [], []
    for b, (z, f, a) in enumerate(crystals):
        types += z
        frac += f
        index += [b] * len(z)
        lattice.append((a * torch.eye(3, dtype=torch.float64)).flatten())
    z = torch.tensor(types)
    batch = {
        "frac": torch.tensor(frac, dtype=torch.float64),
        "lattice": torch.stack(lattice),
        "index": torch.tensor(index),
        "num_samples": len(crystals),
    }
    if csp:
        batch["cond"] = {"types": z}
    else:
        batch["types"] = z - 1  # the type classes of data.atomic_number_to_class
    return batch


def bfn_engine(ab_initio: bool = False, num_steps: int = 10, **vonmises) -> BayesianFlowEngine:
    parts = {
        "frac": VonMisesBFN(3, layout="indexed", **vonmises),
        "lattice": GaussianBFN(9, sigma1=0.0316, prediction="x"),
    }
    if ab_initio:
        parts["types"] = DiscreteBFN(K, layout="indexed")
    return BayesianFlowEngine(parts, num_steps=num_steps)


def flow_engine(prediction: str = "velocity") -> Engine:
    return Engine(
        {
            "frac": FlowComponent(FlatTorus(3), layout="indexed", prediction=prediction),
            "lattice": FlowComponent(Euclidean(9), prediction=prediction),
        }
    )


def random_state(engine, index: torch.Tensor, num_crystals: int, seed: int = 0) -> dict:
    """A random noisy state in float64: von Mises θ with c > 0, a full-rank lattice, type
    probabilities (BFN); torus and Euclidean points (flow matching)."""
    g = torch.Generator().manual_seed(seed)
    m = index.shape[0]
    lattice = (
        torch.randn(num_crystals, 9, generator=g, dtype=torch.float64)
        + 3 * torch.eye(3, dtype=torch.float64).flatten()
    )
    frac = torch.rand(m, 3, generator=g, dtype=torch.float64)
    x = {"lattice": lattice}
    if isinstance(engine, BayesianFlowEngine):
        conc = 50 * torch.rand(m, 3, generator=g, dtype=torch.float64)
        x["frac"] = torch.cat([frac, conc], dim=-1)
        if "types" in engine.components:
            x["types"] = torch.softmax(torch.randn(m, K, generator=g, dtype=torch.float64), -1)
    else:
        x["frac"] = frac
    return x


def csp_context(index: torch.Tensor, num_crystals: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed + 1)
    types = torch.randint(1, 90, (index.shape[0],), generator=g)
    return {"index": index, "num_samples": num_crystals, "cond": {"types": types}}


def make_net(engine, **kwargs) -> CSPNet:
    torch.manual_seed(0)
    return CSPNet(engine, **{**TINY, **kwargs}).double()


def circular_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Largest wrapped difference between fractional coordinates."""
    d = a - b
    return (d - torch.round(d)).abs().max()


INDEX = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 2, 2])  # three crystals of 3, 5, 2 atoms
ENGINES = {
    "bfn_csp": lambda: bfn_engine(),
    "bfn_ab_initio": lambda: bfn_engine(ab_initio=True),
    "flow_velocity": lambda: flow_engine(),
    "flow_x1": lambda: flow_engine("x1"),
}


@pytest.fixture(params=sorted(ENGINES))
def setup(request):
    engine = ENGINES[request.param]()
    net = make_net(engine)
    x = random_state(engine, INDEX, 3)
    context = csp_context(INDEX, 3)
    if "types" in engine.components:
        del context["cond"]
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    return engine, net, x, t, context


# -- graph -----------------------------------------------------------------------------------------
def test_edges_are_all_ordered_pairs_within_each_crystal_for_any_atom_order():
    index = torch.tensor([1, 0, 1, 2, 0, 1])
    src, dst, degree = fully_connected_edges(index, 4)  # crystal 3 is empty
    pairs = set(zip(src.tolist(), dst.tolist(), strict=True))
    expected = {(i, j) for i in range(6) for j in range(6) if index[i] == index[j]}
    assert pairs == expected and len(src) == len(expected)
    assert degree.tolist() == [3, 2, 3, 1, 2, 3]


# -- symmetries ------------------------------------------------------------------------------------
def test_atom_permutation_permutes_per_atom_outputs_and_keeps_the_lattice(setup):
    _, net, x, t, context = setup
    out = net(x, t, context)
    perm = torch.randperm(len(INDEX), generator=torch.Generator().manual_seed(5))  # mixes crystals
    xp = {k: v[perm] if k != "lattice" else v for k, v in x.items()}
    cp = {**context, "index": INDEX[perm]}
    if "cond" in context:
        cp["cond"] = {"types": context["cond"]["types"][perm]}
    outp = net(xp, t, cp)
    for name in out:
        want = out[name] if name == "lattice" else out[name][perm]
        torch.testing.assert_close(outp[name], want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reflect", [False, True])
def test_lattice_rotation_rotates_the_lattice_output_and_keeps_the_rest(setup, reflect):
    _, net, x, t, context = setup
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2)).double())
    if torch.linalg.det(q) * (-1 if reflect else 1) < 0:
        q = -q  # a proper rotation, or (reflect) an improper one
    rotate = lambda lat: (lat.reshape(-1, 3, 3) @ q.T).reshape(lat.shape)  # noqa: E731 rows v → Rv
    out = net(x, t, context)
    outr = net({**x, "lattice": rotate(x["lattice"])}, t, context)
    torch.testing.assert_close(outr["lattice"], rotate(out["lattice"]), rtol=1e-9, atol=1e-9)
    for name in set(out) - {"lattice"}:
        torch.testing.assert_close(outr[name], out[name], rtol=1e-9, atol=1e-9)


def test_periodic_translation_moves_predicted_positions_and_keeps_everything_else(setup):
    """Shifting every fractional coordinate of a crystal by s (mod 1, one s per crystal) leaves
    the displacement/velocity, lattice and type outputs unchanged; predicted positions (the von
    Mises x̂, or an x1 output) move by s."""
    engine, net, x, t, context = setup
    shift = torch.rand(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    xs = dict(x)
    xs["frac"] = x["frac"].clone()
    xs["frac"][:, :3] = (x["frac"][:, :3] + shift[INDEX]) % 1
    out, outs = net(x, t, context), net(xs, t, context)
    frac_part = engine.components["frac"]
    if getattr(frac_part, "prediction", None) == "x1":
        assert circular_gap(outs["frac"], out["frac"] + shift[INDEX]) < 1e-9
    else:
        torch.testing.assert_close(outs["frac"], out["frac"], rtol=1e-9, atol=1e-9)
    if isinstance(frac_part, VonMisesBFN):
        predicted = frac_part.predict(out["frac"], x["frac"])
        shifted = frac_part.predict(outs["frac"], xs["frac"])
        assert circular_gap(shifted, predicted + shift[INDEX]) < 1e-9
    for name in set(out) - {"frac"}:
        torch.testing.assert_close(outs[name], out[name], rtol=1e-9, atol=1e-9)


def test_crystals_in_one_batch_do_not_talk_to_each_other(setup):
    _, net, x, t, context = setup
    out = net(x, t, context)
    for b in range(3):
        rows = INDEX == b
        xb = {k: v[b : b + 1] if k == "lattice" else v[rows] for k, v in x.items()}
        cb = {"index": torch.zeros(int(rows.sum()), dtype=torch.long), "num_samples": 1}
        if "cond" in context:
            cb["cond"] = {"types": context["cond"]["types"][rows]}
        alone = net(xb, t[b : b + 1], cb)
        for name in out:
            want = out[name][b : b + 1] if name == "lattice" else out[name][rows]
            torch.testing.assert_close(alone[name], want, rtol=1e-10, atol=1e-10)


# -- entropy conditioning --------------------------------------------------------------------------
def test_entropy_conditioning_reads_the_concentration_only_when_on():
    engine = bfn_engine()
    x = random_state(engine, INDEX, 3)
    context, t = csp_context(INDEX, 3), torch.full((3,), 0.5, dtype=torch.float64)
    sharper = {**x, "frac": torch.cat([x["frac"][:, :3], 2 * x["frac"][:, 3:]], dim=-1)}
    on, off = make_net(engine), make_net(engine, entropy_conditioning=False)
    assert on.entropy_conditioning and not off.entropy_conditioning
    assert not torch.allclose(on(x, t, context)["frac"], on(sharper, t, context)["frac"])
    torch.testing.assert_close(off(x, t, context)["frac"], off(sharper, t, context)["frac"])
    assert not make_net(bfn_engine(entropy_conditioning=False)).entropy_conditioning
    assert not make_net(flow_engine()).entropy_conditioning


# -- shapes and engines ----------------------------------------------------------------------------
def test_output_shapes_for_every_engine_kind(setup):
    engine, net, x, t, context = setup
    out = net(x, t, context)
    assert set(out) == set(engine.components)
    for name, comp in engine.components.items():
        assert out[name].shape == (*x[name].shape[:-1], comp.output_dim)
        assert out[name].dtype == torch.float64 and torch.isfinite(out[name]).all()
    if isinstance(net.frac_part, FlowComponent) and net.frac_part.prediction == "x1":
        assert ((out["frac"] >= 0) & (out["frac"] < 1)).all()


def test_lattice_given_as_three_vectors_keeps_its_shape():
    engine = Engine(
        {
            "frac": FlowComponent(FlatTorus(3), layout="indexed"),
            "lattice": FlowComponent(Euclidean(3), event_shape=(3,)),
        }
    )
    x = random_state(flow_engine(), INDEX, 3)
    x["lattice"] = x["lattice"].reshape(3, 3, 3)
    out = make_net(engine)(x, torch.rand(3, dtype=torch.float64), csp_context(INDEX, 3))
    assert out["lattice"].shape == (3, 3, 3)


@pytest.mark.parametrize("kind", ["bfn_csp", "bfn_ab_initio", "flow_velocity", "flow_x1"])
def test_engine_loss_backpropagates_finite_gradients(kind):
    engine = ENGINES[kind]()
    net = make_net(engine)
    batch = batch_of(nacl(), srtio3(), csp=kind != "bfn_ab_initio")
    loss = engine.loss(net, batch, generator=torch.Generator().manual_seed(0))
    assert set(loss.terms) == set(engine.components) and torch.isfinite(loss.total)
    loss.total.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_both_engines_sample_crystals_of_the_given_compositions():
    types = torch.tensor([38, 22, 8, 8, 8, 11, 17])
    context = {"index": torch.tensor([0] * 5 + [1] * 2), "num_samples": 2, "cond": {"types": types}}
    g = torch.Generator().manual_seed(0)
    bfn = bfn_engine(num_steps=5)
    out = bfn.sample(make_net(bfn), 2, context=context, generator=g, dtype=torch.float64).x
    assert out["frac"].shape == (7, 3) and out["lattice"].shape == (2, 9)
    ab = bfn_engine(ab_initio=True, num_steps=5)
    ctx = {"index": context["index"], "num_samples": 2}
    out = ab.sample(make_net(ab), 2, context=ctx, generator=g, dtype=torch.float64).x
    assert out["types"].shape == (7,) and out["types"].dtype == torch.int64
    fm = flow_engine()
    out = fm.sample(make_net(fm), 2, context=context, num_steps=3, generator=g, dtype=torch.float64)
    assert out.x["frac"].shape == (7, 3) and out.x["lattice"].shape == (2, 9)


def test_overfitting_one_crystal_lowers_its_loss():
    torch.manual_seed(0)
    engine = bfn_engine()
    net = CSPNet(engine, hidden=32, num_layers=2, num_freqs=4, time_dim=8)
    one = batch_of(srtio3())
    copies = 16
    batch = {
        "frac": one["frac"].float().repeat(copies, 1),
        "lattice": one["lattice"].float().repeat(copies, 1),
        "index": torch.arange(copies).repeat_interleave(5),
        "num_samples": copies,
        "cond": {"types": one["cond"]["types"].repeat(copies)},
    }

    def held_out_loss() -> dict[str, float]:
        """Per-part losses summed over 4 fixed draws of times and flows."""
        totals = {"frac": 0.0, "lattice": 0.0}
        with torch.no_grad():
            for s in range(4):
                g = torch.Generator().manual_seed(100 + s)
                for name, value in engine.loss(net, batch, generator=g).terms.items():
                    totals[name] += float(value)
        return totals

    before = held_out_loss()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        opt.zero_grad()
        engine.loss(net, batch, generator=g).total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
    after = held_out_loss()
    for name in before:  # both fall by > 10× on this seed (frac ~3000 → 75, lattice ~175k → 360)
        assert after[name] < 0.5 * before[name], (before, after)


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("parts", "match"),
    [
        ({"lattice": GaussianBFN(9)}, "part 'frac'"),
        (
            {"frac": VonMisesBFN(3), "lattice": GaussianBFN(9)},
            "3-torus in the indexed layout.*layout='dense'",
        ),
        ({"frac": VonMisesBFN(2, layout="indexed"), "lattice": GaussianBFN(9)}, "dim=2"),
        ({"frac": VonMisesBFN(3, layout="indexed"), "lattice": GaussianBFN(6)}, "'lattice'"),
        (
            {
                "frac": VonMisesBFN(3, layout="indexed"),
                "lattice": GaussianBFN(9),
                "x": GaussianBFN(1),
            },
            "unknown part",
        ),
        (
            {
                "frac": VonMisesBFN(3, layout="indexed"),
                "lattice": GaussianBFN(9),
                "types": DiscreteBFN(5),
            },
            "'types' must be an indexed DiscreteBFN",
        ),
    ],
)
def test_unsuitable_bfn_engines_are_refused_naming_the_part(parts, match):
    with pytest.raises(ValueError, match=match):
        CSPNet(BayesianFlowEngine(parts, num_steps=10))


def test_unsuitable_settings_and_inputs_raise_named_errors():
    mixed = Engine(
        {
            "frac": FlowComponent(FlatTorus(3), layout="indexed"),
            "lattice": FlowComponent(FlatTorus(9)),
        }
    )
    with pytest.raises(ValueError, match="'lattice'.*FlowComponent on Euclidean"):
        CSPNet(mixed)
    with pytest.raises(ValueError, match="entropy_conditioning.*flow matching"):
        CSPNet(flow_engine(), entropy_conditioning=True)
    with pytest.raises(ValueError, match="entropy_conditioning.*VonMisesBFN"):
        CSPNet(bfn_engine(entropy_conditioning=False), entropy_conditioning=True)
    with pytest.raises(ValueError, match="num_types"):
        CSPNet(bfn_engine(ab_initio=True), num_types=7)
    net = make_net(bfn_engine())
    x, t = random_state(bfn_engine(), INDEX, 3), torch.rand(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"context\['cond'\]\['types'\].*has none"):
        net(x, t, {"index": INDEX, "num_samples": 3})
    bad = csp_context(INDEX, 3)
    bad["cond"]["types"][0] = 150
    with pytest.raises(ValueError, match="atomic numbers in 1..100"):
        net(x, t, bad)
    with pytest.raises(ValueError, match=r"context\['index'\].*ids in 0..2"):
        net(x, t, {**csp_context(INDEX, 3), "index": INDEX + 1})


def test_default_size_and_network_without_engine():
    net = CSPNet()
    assert net.kind == "bfn" and net.entropy_conditioning and net.num_types is None
    count = sum(p.numel() for p in net.parameters())
    assert 400_000 < count < 600_000  # the CPU tier of the methods note (0.49 M)
    ab = CSPNet(num_types=K, **TINY)
    x = random_state(bfn_engine(ab_initio=True), INDEX, 3)
    out = ab.float()({k: v.float() for k, v in x.items()}, torch.rand(3), {"index": INDEX})
    assert out["types"].shape == (10, K) and out["frac"].dtype == torch.float32
