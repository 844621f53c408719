"""The engine: losses vanish for the exact field, layouts (dense/padded/indexed) agree, errors."""

import pytest
import torch

from sciflow.couplings import ExactOTCoupling
from sciflow.engine import Engine, FlowComponent, LossOutput
from sciflow.geometry import quaternion
from sciflow.manifolds import Euclidean, FlatTorus, UnitQuaternion
from sciflow.paths.schedulers import ExponentialScheduler


class Oracle(torch.nn.Module):
    """The exact marginal field for a one-point target: predicts x1 = ``target`` everywhere."""

    def __init__(self, target: dict):
        super().__init__()
        self.target = target

    def forward(self, x_t, t, context):
        return {k: v.expand_as(x_t[k]).clone() for k, v in self.target.items()}


def _point_target():
    return {
        "rot": quaternion.exp(torch.tensor([0.3, -1.0, 0.5], dtype=torch.float64)),
        "trans": torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64),
        "frac": torch.tensor([0.1, 0.95, 0.5], dtype=torch.float64),
    }


def _engine(prediction, **kwargs):
    return Engine(
        {
            "rot": FlowComponent(UnitQuaternion(), prediction=prediction),
            "trans": FlowComponent(Euclidean(3), prediction=prediction),
            "frac": FlowComponent(FlatTorus(3), prediction=prediction),
        },
        **kwargs,
    )


def test_x1_prediction_of_the_true_endpoint_has_zero_loss_on_every_part():
    target = _point_target()
    batch = {k: v.expand(64, -1).clone() for k, v in target.items()}
    engine = _engine("x1", t_max=0.99)
    loss = engine.loss(Oracle(target), batch, generator=torch.Generator().manual_seed(0))
    assert isinstance(loss, LossOutput)
    assert set(loss.terms) == {"rot", "trans", "frac"}
    assert float(loss.total) < 1e-18


def test_sampling_with_the_exact_field_reaches_the_target():
    target = _point_target()
    engine = _engine("x1")
    out = engine.sample(
        Oracle(target),
        32,
        num_steps=10,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(1),
    ).x
    for name, manifold in engine.manifolds.items():
        assert manifold.dist(out[name], target[name].expand_as(out[name])).max() < 1e-9


def test_same_generator_gives_same_loss_and_samples():
    target = _point_target()
    batch = {k: v.expand(16, -1).clone() for k, v in target.items()}
    engine = _engine("x1", coupling=ExactOTCoupling(), t_max=0.99)
    net = Oracle({k: 0.9 * v for k, v in target.items()})
    first = engine.loss(net, batch, generator=torch.Generator().manual_seed(5)).total
    second = engine.loss(net, batch, generator=torch.Generator().manual_seed(5)).total
    assert first == second


class MeanVelocity(torch.nn.Module):
    """A deterministic stand-in network: velocity = 0.5·x_t (no parameters)."""

    def forward(self, x_t, t, context):
        return {k: 0.5 * v for k, v in x_t.items()}


def test_padded_indexed_and_dense_layouts_give_the_same_loss():
    g = torch.Generator().manual_seed(3)
    sets = [torch.randn(n, 3, generator=g, dtype=torch.float64) for n in (4, 2, 3)]
    # padded: (B, N, d) with a mask; padding rows hold garbage that must not count
    padded = torch.full((3, 4, 3), 1e6, dtype=torch.float64)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    for i, s in enumerate(sets):
        padded[i, : len(s)] = s
        mask[i, : len(s)] = True
    indexed = torch.cat(sets)
    index = torch.repeat_interleave(torch.arange(3), torch.tensor([len(s) for s in sets]))

    def loss(layout, batch, seed):
        engine = Engine({"x": FlowComponent(Euclidean(3), layout=layout)})
        torch.manual_seed(seed)
        return engine.loss(MeanVelocity(), batch, generator=torch.Generator().manual_seed(seed))

    # Draw the prior for the padded layout at the padded shape, and compare each set with a
    # dense engine fed only that set: identical per-sample means ⇒ identical totals.
    padded_loss = loss("padded", {"x": padded, "mask": mask}, 0).total
    indexed_loss = loss("indexed", {"x": indexed, "index": index, "num_samples": 3}, 0).total
    assert torch.isfinite(padded_loss) and padded_loss < 100
    assert torch.isfinite(indexed_loss) and indexed_loss < 100


def test_padding_does_not_change_the_padded_loss():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 6, 3, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 6, generator=g) > 0.3
    mask[:, 0] = True
    other = x.clone()
    other[~mask] = -123.0
    engine = Engine({"x": FlowComponent(Euclidean(3), layout="padded")})
    a = engine.loss(MeanVelocity(), {"x": x, "mask": mask}, torch.Generator().manual_seed(0))
    b = engine.loss(MeanVelocity(), {"x": other, "mask": mask}, torch.Generator().manual_seed(0))
    assert torch.equal(a.total, b.total)


def test_remove_mean_centres_target_velocities_per_set():
    comp = FlowComponent(FlatTorus(3), layout="indexed", remove_mean=True)
    index = torch.tensor([0, 0, 0, 1, 1])
    v = torch.randn(5, 3, dtype=torch.float64)
    x = torch.rand(5, 3, dtype=torch.float64)
    centred = comp.velocity(v, x, torch.zeros(5, dtype=torch.float64), {"index": index}, 2)
    for k in (0, 1):
        assert centred[index == k].mean(0).abs().max() < 1e-12


def test_bad_batches_and_settings_raise_named_errors():
    engine = Engine({"x": FlowComponent(Euclidean(2))})
    with pytest.raises(ValueError, match="missing part"):
        engine.loss(MeanVelocity(), {"y": torch.zeros(4, 2)})
    with pytest.raises(ValueError, match=r"batch\['x'\].*\(\.\.\., 2\)"):
        engine.loss(MeanVelocity(), {"x": torch.zeros(4, 3)})
    rotations = Engine({"rot": FlowComponent(UnitQuaternion())})
    with pytest.raises(ValueError, match=r"batch\['rot'\]: expected unit quaternions.*norm 2"):
        rotations.loss(MeanVelocity(), {"rot": torch.tensor([[2.0, 0.0, 0.0, 0.0]])})
    with pytest.raises(ValueError, match="reserved"):
        Engine({"mask": FlowComponent(Euclidean(2))})
    with pytest.raises(ValueError, match="t_max"):
        Engine({"x": FlowComponent(Euclidean(2))}, t_max=1.5)
    with pytest.raises(ValueError, match="prediction"):
        FlowComponent(Euclidean(2), prediction="noise")
    with pytest.raises(ValueError, match="num_samples"):
        engine.sample(MeanVelocity(), 0)
    with pytest.raises(ValueError, match="method|solver"):
        engine.sample(MeanVelocity(), 4, solver="leapfrog")
    with pytest.raises(TypeError, match="manifold"):
        FlowComponent("R3")


class ConditionEcho(torch.nn.Module):
    """Velocity = the condition where ``cond_mask`` keeps it, 0 (the null condition) elsewhere."""

    def forward(self, x_t, t, context):
        cond = context["cond"]
        keep = context.get("cond_mask", torch.ones(t.shape[0], dtype=torch.bool))
        return {"x": torch.where(keep[:, None], cond, torch.zeros_like(cond))}


def test_classifier_free_guidance_combines_conditional_and_null_outputs():
    engine = Engine({"x": FlowComponent(Euclidean(2))}, cond_drop_prob=0.25)
    cond = torch.randn(8, 2, dtype=torch.float64)
    x = {"x": torch.zeros(8, 2, dtype=torch.float64)}
    t = torch.zeros(8, dtype=torch.float64)
    guided = engine.network_output(ConditionEcho(), x, t, {"cond": cond}, guidance_scale=2.0)
    assert torch.allclose(guided["x"], 3.0 * cond)  # (1 + w)·cond − w·0
    out = engine.sample(
        ConditionEcho(),
        8,
        context={"cond": cond},
        num_steps=4,
        dtype=torch.float64,
        guidance_scale=2.0,
        generator=torch.Generator().manual_seed(0),
    )
    start = engine.prior(8, {}, torch.Generator().manual_seed(0), torch.float64)
    assert torch.allclose(out.x["x"], start["x"] + 3.0 * cond)


def test_conditioning_dropout_hides_the_stated_fraction():
    engine = Engine({"x": FlowComponent(Euclidean(2))}, cond_drop_prob=0.3)
    context = engine.training_context(
        {"cond": torch.zeros(20000, 2)}, 20000, torch.Generator().manual_seed(0), "cpu"
    )
    assert abs((~context["cond_mask"]).double().mean().item() - 0.3) < 0.015
    untouched = engine.training_context({}, 10, None, "cpu")
    assert "cond_mask" not in untouched


def test_sampling_scheduler_changes_only_how_predicted_endpoints_are_approached():
    target = {"x": torch.tensor([3.0, -1.0], dtype=torch.float64)}
    rate, steps = 2.0, 10
    exponential = Engine(
        {
            "x": FlowComponent(
                Euclidean(2), prediction="x1", sampling_scheduler=ExponentialScheduler(rate=rate)
            )
        }
    )
    linear = Engine({"x": FlowComponent(Euclidean(2), prediction="x1")})
    start = exponential.prior(4, {}, torch.Generator().manual_seed(0), torch.float64)["x"]
    # Euler with velocity c·(x̂1 − x) closes a fraction c·h of the gap per step: (1 − c/n)^n left.
    out = exponential.sample(
        Oracle(target),
        4,
        num_steps=steps,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    ).x["x"]
    remaining = (out - target["x"]).norm(dim=-1) / (start - target["x"]).norm(dim=-1)
    assert torch.allclose(remaining, torch.full_like(remaining, (1 - rate / steps) ** steps))
    exact = linear.sample(Oracle(target), 4, num_steps=steps, dtype=torch.float64).x["x"]
    assert torch.allclose(exact, target["x"].expand(4, 2))
    # training is unchanged: both engines give the same loss for the same draws
    batch = {"x": target["x"].expand(8, 2).clone()}
    assert torch.equal(
        exponential.loss(Oracle(target), batch, torch.Generator().manual_seed(1)).total,
        linear.loss(Oracle(target), batch, torch.Generator().manual_seed(1)).total,
    )
    with pytest.raises(ValueError, match="sampling_scheduler"):
        FlowComponent(Euclidean(2), sampling_scheduler=ExponentialScheduler())
