"""The Bayesian-flow engine: shared time across parts, layouts, guidance, errors."""

import math

import pytest
import torch

from sciflow.bfn.discrete import DiscreteBFN
from sciflow.bfn.engine import BayesianFlowEngine
from sciflow.bfn.gaussian import GaussianBFN
from sciflow.bfn.vonmises import VonMisesBFN
from sciflow.nn import StateMLP


class Recorder(torch.nn.Module):
    """Zero outputs of the right widths; records the times and θ shapes it was called with."""

    def __init__(self, engine):
        super().__init__()
        self.engine, self.calls = engine, []

    def forward(self, params, t, context):
        self.calls.append((t.clone(), {k: v.shape for k, v in params.items()}))
        return {
            k: torch.zeros(*v.shape[:-1], self.engine.components[k].output_dim, dtype=v.dtype)
            for k, v in params.items()
        }


def _mixed(num_steps=10):
    return BayesianFlowEngine(
        {
            "types": DiscreteBFN(4, layout="indexed"),
            "frac": VonMisesBFN(3, period=1.0, layout="indexed"),
            "lattice": GaussianBFN(9, sigma1=0.0316, prediction="x"),
        },
        num_steps=num_steps,
    )


def _crystals():
    g = torch.Generator().manual_seed(0)
    index = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    return {
        "types": torch.randint(4, (9,), generator=g),
        "frac": torch.rand(9, 3, generator=g),
        "lattice": torch.randn(3, 9, generator=g),
        "index": index,
        "num_samples": 3,
    }


def test_parts_with_different_layouts_share_one_time_per_sample():
    engine = _mixed()
    net = Recorder(engine)
    loss = engine.loss(net, _crystals(), generator=torch.Generator().manual_seed(1))
    assert set(loss.terms) == {"types", "frac", "lattice"} and torch.isfinite(loss.total)
    t, shapes = net.calls[0]
    assert t.shape == (3,)
    assert torch.allclose(t * 10, (t * 10).round())  # n-step loss: t = (i − 1)/n
    assert shapes == {"types": (9, 4), "frac": (9, 6), "lattice": (3, 9)}


def test_sampling_runs_n_updates_plus_a_final_prediction_and_is_deterministic():
    engine = _mixed(num_steps=5)
    net = Recorder(engine)
    context = {"index": torch.tensor([0, 0, 1]), "num_samples": 2}
    first = engine.sample(
        net, 2, context=context, generator=torch.Generator().manual_seed(3), return_trajectory=True
    )
    assert first.num_function_evals == 6 and len(first.trajectory) == 6
    assert [float(c[0][0]) for c in net.calls] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    again = engine.sample(net, 2, context=context, generator=torch.Generator().manual_seed(3))
    for name in first.x:
        assert torch.equal(first.x[name], again.x[name])
    assert first.x["types"].shape == (3,) and first.x["frac"].shape == (3, 3)
    assert first.x["lattice"].shape == (2, 9)


def test_state_mlp_drives_a_dense_mixed_engine_end_to_end():
    engine = BayesianFlowEngine(
        {
            "label": DiscreteBFN(3),
            "angle": VonMisesBFN(1, period=2 * math.pi),
            "pos": GaussianBFN(2),
        },
        num_steps=10,
    )
    net = StateMLP(engine, hidden=16, depth=1)
    batch = {
        "label": torch.tensor([0, 2]),
        "angle": torch.tensor([[0.5], [6.0]]),
        "pos": torch.zeros(2, 2),
    }
    engine.loss(net, batch).total.backward()
    out = engine.sample(net, 4, solver="end_back").x
    assert out["label"].dtype == torch.int64 and out["angle"].shape == (4, 1)


class ConditionEcho(torch.nn.Module):
    """x-prediction = the condition where ``cond_mask`` keeps it, 0 elsewhere."""

    def forward(self, params, t, context):
        keep = context.get("cond_mask", torch.ones(t.shape[0], dtype=torch.bool))
        return {"x": torch.where(keep[:, None], context["cond"], torch.zeros_like(context["cond"]))}


def test_classifier_free_guidance_applies_to_bayesian_flows():
    engine = BayesianFlowEngine(
        {"x": GaussianBFN(2, prediction="x")}, num_steps=4, cond_drop_prob=0.5
    )
    cond = torch.tensor([[1.0, -2.0]])
    out = engine.sample(ConditionEcho(), 1, context={"cond": cond}, guidance_scale=1.5)
    assert torch.allclose(out.x["x"], 2.5 * cond)  # (1 + w)·cond − w·0
    assert out.num_function_evals == 10  # two network calls per step with guidance


def test_bad_settings_raise_named_errors():
    with pytest.raises(ValueError, match="num_steps.*continuous-time"):
        BayesianFlowEngine({"a": VonMisesBFN(1)}, num_steps=None)
    with pytest.raises(ValueError, match="num_steps"):
        BayesianFlowEngine({"a": GaussianBFN(1)}, num_steps=0)
    with pytest.raises(TypeError, match="BayesianFlow"):
        BayesianFlowEngine({"a": "gaussian"})
    engine = BayesianFlowEngine({"a": VonMisesBFN(1)}, num_steps=10)
    net = Recorder(engine)
    with pytest.raises(ValueError, match="num_steps=10"):
        engine.sample(net, 2, num_steps=20)
    with pytest.raises(ValueError, match="solver"):
        engine.sample(net, 2, solver="euler")
    with pytest.raises(ValueError, match=r"batch\['a'\]"):
        engine.loss(net, {"a": torch.full((2, 1), 3.0)})  # outside the torus [0, 1)
    with pytest.raises(ValueError, match="missing part"):
        engine.loss(lambda p, t, c: {}, {"a": torch.rand(2, 1)})
