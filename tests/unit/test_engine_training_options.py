"""Engine options for x1-prediction training: the ReQFlow loss normaliser and clamp, auxiliary
losses, stored prior points (rectified flow), self-conditioning, and sampling from given noise."""

from __future__ import annotations

import pytest
import torch

from sciflow.auxiliary import AuxiliaryLoss
from sciflow.engine import Engine, FlowComponent
from sciflow.manifolds import Euclidean
from sciflow.paths.path import PathSample


def _component(**kwargs) -> FlowComponent:
    return FlowComponent(Euclidean(2), prediction="x1", **kwargs)


def _path_sample(t: float, x0: torch.Tensor, x1: torch.Tensor) -> PathSample:
    return _component().path.sample(x0, x1, torch.full(x0.shape[:-1], t))


@pytest.mark.parametrize("t", [0.3, 0.95])
def test_loss_time_clip_normalises_by_one_minus_min_t(t):
    x0, x1 = torch.zeros(1, 2), torch.ones(1, 2)
    delta = torch.tensor([[0.3, -0.4]])  # |δ|² = 0.25
    sample = _path_sample(t, x0, x1)
    plain = _component().loss(x1 + delta, sample, {}, 1)
    clipped = _component(loss_time_clip=0.9).loss(x1 + delta, sample, {}, 1)
    torch.testing.assert_close(plain, torch.tensor([0.25 / (1 - t) ** 2]))
    torch.testing.assert_close(clipped, torch.tensor([0.25 / (1 - min(t, 0.9)) ** 2]))


def test_max_loss_clamps_each_sample():
    x0, x1 = torch.zeros(2, 2), torch.ones(2, 2)
    output = x1 + torch.tensor([[3.0, 0.0], [0.1, 0.0]])
    loss = _component(max_loss=1.0).loss(output, _path_sample(0.0, x0, x1), {}, 2)
    torch.testing.assert_close(loss, torch.tensor([1.0, 0.01]))


def test_option_validation():
    with pytest.raises(ValueError, match="loss_time_clip"):
        FlowComponent(Euclidean(2), loss_time_clip=0.9)  # velocity prediction
    with pytest.raises(ValueError, match="max_loss"):
        _component(max_loss=0.0)
    with pytest.raises(ValueError, match="predict velocities"):
        Engine({"x": FlowComponent(Euclidean(2))}, self_conditioning=0.5)
    with pytest.raises(ValueError, match="self_conditioning"):
        Engine({"x": _component()}, self_conditioning=1.5)


class Recorder(torch.nn.Module):
    """Returns x_t + shift as the x1 prediction and records every call."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.shift = shift
        self.calls: list[dict] = []

    def forward(self, x_t, t, context):
        self.calls.append({"x_t": x_t["x"].clone(), "t": t.clone(), "context": dict(context)})
        return {"x": x_t["x"] + self.shift}


def test_stored_x0_replaces_prior_draws():
    engine = Engine({"x": _component()})
    x0, x1 = torch.randn(5, 2), torch.randn(5, 2)
    net = Recorder()
    engine.loss(net, {"x": x1, "x0": {"x": x0}})
    call = net.calls[0]
    t = call["t"].unsqueeze(-1)
    torch.testing.assert_close(call["x_t"], (1 - t) * x0 + t * x1)
    assert "x0" not in call["context"]
    with pytest.raises(ValueError, match=r"batch\['x0'\]\['x'\]: expected the data's shape"):
        engine.loss(net, {"x": x1, "x0": {"x": x0[:3]}})


class ConstantAux(AuxiliaryLoss):
    def __call__(self, predicted, data, t, context):
        return {"aux": torch.full_like(t, 2.5)}


def test_auxiliary_terms_add_to_the_total():
    engine = Engine({"x": _component()}, auxiliary_loss=ConstantAux())
    loss = engine.loss(Recorder(), {"x": torch.randn(4, 2)})
    assert set(loss.terms) == {"x", "aux"}
    torch.testing.assert_close(loss.terms["aux"], torch.tensor(2.5))
    torch.testing.assert_close(loss.total, loss.terms["x"] + 2.5)


def test_self_conditioning_feeds_back_predictions_in_training_and_sampling():
    engine = Engine({"x": _component()}, self_conditioning=1.0)
    net = Recorder(shift=1.0)
    engine.loss(net, {"x": torch.randn(3, 2)})
    first, second = net.calls
    assert "self_cond" not in first["context"]
    torch.testing.assert_close(second["context"]["self_cond"]["x"], first["x_t"] + 1.0)

    net.calls.clear()
    engine.sample(net, 3, num_steps=3)
    assert "self_cond" not in net.calls[0]["context"]
    for before, after in zip(net.calls, net.calls[1:], strict=False):
        torch.testing.assert_close(after["context"]["self_cond"]["x"], before["x_t"] + 1.0)


def test_self_conditioning_probability_zero_never_feeds_back():
    engine = Engine({"x": _component()}, self_conditioning=0.0)
    net = Recorder()
    for _ in range(5):
        engine.loss(net, {"x": torch.randn(3, 2)})
    assert len(net.calls) == 5 and all("self_cond" not in c["context"] for c in net.calls)


def test_sampling_from_given_noise():
    engine = Engine({"x": _component()})
    x0 = {"x": torch.randn(4, 2)}
    # predicting x1 = x_t gives zero velocity: the sample is the given noise itself
    out = engine.sample(Recorder(), 4, num_steps=4, x0=x0)
    torch.testing.assert_close(out.x["x"], x0["x"])


def test_ema_decay_is_warmed_up():
    """After n updates the EMA moves by 1 − min(decay, (1 + n)/(10 + n)) towards the weights."""
    from sciflow.training.task import warmed_up_ema

    averaged, current = [torch.zeros(2)], [torch.ones(2)]
    expected = torch.zeros(2)
    for n in range(5):
        warmed_up_ema(averaged, current, torch.tensor(n), decay=0.999)
        rate = min(0.999, (1 + n) / (10 + n))
        expected = rate * expected + (1 - rate) * 1.0
        torch.testing.assert_close(averaged[0], expected)
    averaged = [torch.zeros(1)]
    warmed_up_ema(averaged, [torch.ones(1)], torch.tensor(10**6), decay=0.9)
    torch.testing.assert_close(averaged[0], torch.tensor([0.1]))
