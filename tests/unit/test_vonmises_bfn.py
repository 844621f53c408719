"""VonMisesBFN: layouts, the flow distribution, features, loss, sampling steps and input checks."""

import math

import pytest
import torch

from sciflow.bfn import schedules
from sciflow.bfn.engine import BayesianFlowEngine
from sciflow.bfn.vonmises import VonMisesBFN, accumulate_updates
from sciflow.geometry import vonmises

F64 = torch.float64
N_STEPS = 10


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _layouts():
    """(component, num_samples, context) for the dense, padded and indexed layouts."""
    mask = torch.tensor([[True, True, False], [True, False, False]])
    index = torch.tensor([0, 0, 1, 1, 1])
    return [
        (VonMisesBFN(3), 4, {}),
        (VonMisesBFN(3, layout="dense", event_shape=(5,)), 2, {}),
        (VonMisesBFN(3, layout="padded"), 2, {"mask": mask}),
        (VonMisesBFN(3, layout="indexed"), 2, {"index": index, "num_samples": 2}),
    ]


def _data(comp, shape, seed=0):
    return comp.manifold.random(*shape, generator=_gen(seed), dtype=F64)


def _steps(shape, seed=0):
    return torch.randint(1, N_STEPS + 1, shape, generator=_gen(seed))


def _check_params(comp, params):
    m, c = params[..., : comp.dim], params[..., comp.dim :]
    assert ((m >= 0) & (m < comp.period)).all()
    assert (c >= 0).all() and torch.isfinite(c).all()


@pytest.mark.parametrize(("comp", "num_samples", "context"), _layouts())
def test_shapes_in_every_layout(comp, num_samples, context):
    shape = comp.element_shape(num_samples, context)
    x, step = _data(comp, shape), _steps(shape)
    t = (step - 1).to(F64) / N_STEPS
    prior = comp.prior(num_samples, context, generator=_gen(), dtype=F64)
    assert prior.shape == (*shape, 6) and (prior[..., 3:] == 0).all()
    params = comp.flow_sample(x, t, step, N_STEPS, generator=_gen())
    assert params.shape == (*shape, 6) and params.dtype == F64
    _check_params(comp, params)
    assert comp.features(params).shape == (*shape, 9)
    assert comp.entropy_features(params).shape == (*shape, 3)
    output = torch.randn(*shape, comp.output_dim, generator=_gen(1), dtype=F64)
    loss = comp.loss(x, output, params, t, step, N_STEPS)
    assert loss.shape == shape and (loss >= 0).all()
    assert comp.per_sample_mean(loss, context, num_samples).shape == (num_samples,)
    for method in ("vanilla", "end_back"):
        new = comp.sample_step(params, output, 4, N_STEPS, _gen(2), method)
        assert new.shape == params.shape
        _check_params(comp, new)
    final = comp.finalize(output, params)
    assert final.shape == (*shape, 3)
    comp.check_data(final, "final")


def test_features_without_entropy_conditioning():
    comp = VonMisesBFN(2, entropy_conditioning=False)
    params = comp.prior_params((4,), generator=_gen())
    assert comp.features(params).shape == (4, 4) and comp.entropy_features(params) is None
    phi = 2 * math.pi * params[:, :2]
    torch.testing.assert_close(comp.features(params), torch.cat([phi.cos(), phi.sin()], -1))


def test_entropy_features_are_normalised_log_concentrations():
    comp = VonMisesBFN(1, beta1=1e3)
    params = torch.tensor([[0.2, 0.0], [0.2, 1e3], [0.2, 1.0]], dtype=F64)
    feats = comp.entropy_features(params)[:, 0]
    assert feats[0] == 0 and feats[1] == pytest.approx(1.0, abs=1e-9)
    assert feats[2] == pytest.approx(math.log1p(1e7) / (math.log(1e3) + math.log(1e7)))


@pytest.mark.parametrize("period", [1.0, 2 * math.pi])
def test_flow_sample_equals_sequential_updates_with_the_same_draws(period):
    comp = VonMisesBFN(2, period=period)
    x = _data(comp, (64,))
    step = torch.randint(2, N_STEPS + 1, (64, 1), generator=_gen(1)).squeeze(-1)
    params = comp.flow_sample(x, (step - 1) / N_STEPS, step, N_STEPS, generator=_gen(5))
    # the same draws, by hand: all elements get J = max(step) − 1 sender samples
    alphas = comp.alphas(N_STEPS)
    phi = 2 * math.pi * x / period
    y = vonmises.sample(phi.unsqueeze(-1), alphas[: int(step.max()) - 1], _gen(5))
    m, c = torch.zeros_like(phi), torch.zeros_like(phi)
    for j in range(y.shape[-1]):
        m_j, c_j = vonmises.circular_update(m, c, y[..., j], float(alphas[j]))
        active = (j < step - 1).unsqueeze(-1)
        m, c = torch.where(active, m_j, m), torch.where(active, c_j, c)
    torch.testing.assert_close(params[:, 2:], c, rtol=1e-12, atol=1e-12)
    dm = torch.remainder(params[:, :2] * 2 * math.pi / period - m + math.pi, 2 * math.pi) - math.pi
    assert dm.abs().max() < 1e-10


def test_accumulate_updates_masks_per_element():
    y = torch.tensor([[0.5, -1.0, 3.0], [0.5, -1.0, 3.0]], dtype=F64)
    alphas = torch.tensor([1.0, 2.0, 4.0], dtype=F64)
    m, c = accumulate_updates(y, alphas, torch.tensor([1, 2]))
    torch.testing.assert_close(m[0], torch.tensor(0.5, dtype=F64))
    assert c[0] == pytest.approx(1.0)
    z = 1.0 * torch.exp(torch.tensor(0.5j)) + 2.0 * torch.exp(torch.tensor(-1.0j))
    assert c[1] == pytest.approx(z.abs().item()) and m[1] == pytest.approx(z.angle().item())


def test_flow_mean_concentration_matches_the_schedule_targets():
    comp = VonMisesBFN(1, schedule="flow")
    n = 100_000
    x = torch.full((n, 1), 0.3, dtype=F64)
    betas = torch.tensor(schedules.target_concentrations(N_STEPS, 1e3))
    for i in (2, 3, 6, N_STEPS):  # θ before step i holds i − 1 updates: E[c] = β_{i−1}
        step = torch.full((n,), i)
        params = comp.flow_sample(x, (step - 1) / N_STEPS, step, N_STEPS, generator=_gen(i))
        c, beta = params[:, 1], betas[i - 2].item()
        # this draw's MC error plus the schedule's own (~1e-3 relative, from its 2e5 particles)
        assert abs(c.mean().item() - beta) < 5 * c.std().item() / math.sqrt(n) + 3e-3 * beta


def test_first_step_is_the_prior():
    comp = VonMisesBFN(3)
    x = torch.full((20_000, 3), 0.9, dtype=F64)
    step = torch.ones(20_000, dtype=torch.long)
    params = comp.flow_sample(x, torch.zeros(20_000, dtype=F64), step, N_STEPS, _gen())
    assert (params[:, 3:] == 0).all()
    assert abs(params[:, :3].mean().item() - 0.5) < 0.01  # m uniform on [0, 1)


def test_perfect_prediction_has_zero_loss_and_mse_is_twice_kl_for_small_errors():
    kl, mse = VonMisesBFN(2), VonMisesBFN(2, loss_type="mse")
    x = _data(kl, (50,))
    step = _steps((50,))
    t = (step - 1).to(F64) / N_STEPS
    params = kl.flow_sample(x, t, step, N_STEPS, _gen())
    m = params[:, :2]
    perfect = torch.remainder(2 * math.pi * (x - m) + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(kl.predict(perfect, params, t), x)
    assert kl.loss(x, perfect, params, t, step, N_STEPS).abs().max() < 1e-20
    off = perfect + 1e-3
    ratio = mse.loss(x, off, params, t, step, N_STEPS) / kl.loss(x, off, params, t, step, N_STEPS)
    torch.testing.assert_close(ratio, torch.full_like(ratio, 2.0), rtol=1e-6, atol=0)


def test_kl_loss_is_n_times_the_von_mises_kl():
    comp = VonMisesBFN(3, period=2 * math.pi)
    x = _data(comp, (8,))
    step = _steps((8,))
    t = (step - 1).to(F64) / N_STEPS
    params = comp.flow_sample(x, t, step, N_STEPS, _gen())
    output = torch.randn(8, 3, generator=_gen(3), dtype=F64)
    x_hat = comp.predict(output, params, t)
    alpha = comp.alphas(N_STEPS)[step - 1].unsqueeze(-1)
    expected = N_STEPS * vonmises.kl_equal_concentration(x, x_hat, alpha).sum(-1)
    torch.testing.assert_close(comp.loss(x, output, params, t, step, N_STEPS), expected)


def test_step_weights_redistribute_the_bfn_weights():
    bfn = VonMisesBFN(3).loss_weights(N_STEPS)
    alphas = VonMisesBFN(3).alphas(N_STEPS)
    torch.testing.assert_close(bfn, N_STEPS * alphas * vonmises.bessel_ratio(alphas))
    uniform = VonMisesBFN(3, step_weights="uniform").loss_weights(N_STEPS)
    torch.testing.assert_close(uniform, torch.full_like(bfn, float(bfn.mean())))
    floored = VonMisesBFN(3, step_weights="floored").loss_weights(N_STEPS)
    late = bfn >= bfn.mean()
    assert late.any() and (~late).any()
    torch.testing.assert_close(floored[late], bfn[late])
    torch.testing.assert_close(floored[~late], torch.full_like(bfn[~late], float(bfn.mean())))
    comp = VonMisesBFN(3, step_weights="uniform")
    x = _data(comp, (8,))
    step = _steps((8,))
    t = (step - 1).to(F64) / N_STEPS
    params = comp.flow_sample(x, t, step, N_STEPS, _gen())
    output = torch.randn(8, 3, generator=_gen(3), dtype=F64)
    ratio = comp.loss(x, output, params, t, step, N_STEPS) / VonMisesBFN(3).loss(
        x, output, params, t, step, N_STEPS
    )
    torch.testing.assert_close(ratio, uniform[step - 1] / bfn[step - 1])


@pytest.mark.parametrize("method", ["vanilla", "end_back"])
def test_sample_step_is_reproducible_and_concentrates(method):
    comp = VonMisesBFN(3)
    params = comp.prior_params((2000,), generator=_gen(), dtype=F64)
    target = torch.tensor([0.1, 0.5, 0.95], dtype=F64)
    for i in range(1, N_STEPS + 1):
        # an oracle network: the displacement from m to the target, in radians
        output = torch.remainder(2 * math.pi * (target - params[:, :3]) + math.pi, 2 * math.pi)
        output = output - math.pi
        a = comp.sample_step(params, output, i, N_STEPS, _gen(i), method)
        torch.testing.assert_close(a, comp.sample_step(params, output, i, N_STEPS, _gen(i), method))
        _check_params(comp, a)
        params = a
    err = torch.remainder(params[:, :3] - target + 0.5, 1.0) - 0.5
    assert err.abs().mean() < 0.02  # c ≈ β1 = 1e3: angular spread ≈ 1/√1e3 rad ≈ 0.005 in x


def test_engine_smoke():
    engine = BayesianFlowEngine({"frac": VonMisesBFN(3, layout="indexed")}, num_steps=N_STEPS)
    index = torch.tensor([0, 0, 1])

    def network(params, t, context):
        return {"frac": torch.zeros(params["frac"].shape[:-1] + (3,), dtype=t.dtype)}

    batch = {"frac": torch.rand(3, 3, generator=_gen()), "index": index, "num_samples": 2}
    loss = engine.loss(network, batch, generator=_gen())
    assert torch.isfinite(loss.total)
    out = engine.sample(network, 2, context={"index": index}, generator=_gen(), solver="end_back")
    assert out.x["frac"].shape == (3, 3)


def test_bad_inputs_name_the_argument():
    comp = VonMisesBFN(3)
    x = torch.rand(4, 3)
    step = torch.full((4,), 2)
    t = torch.full((4,), 0.1)
    with pytest.raises(ValueError, match="num_steps"):
        comp.flow_sample(x, t, None, None)
    with pytest.raises(ValueError, match="num_steps"):
        comp.loss(x, torch.zeros(4, 3), comp.prior_params((4,)), t, None, None)
    with pytest.raises(ValueError, match="batch"):
        comp.check_data(x + 1.5, "batch['frac']")
    with pytest.raises(ValueError, match="x"):
        comp.flow_sample(torch.rand(4, 2), t, step, N_STEPS)
    with pytest.raises(ValueError, match="step"):
        comp.flow_sample(x, t, torch.full((4,), N_STEPS + 1), N_STEPS)
    with pytest.raises(ValueError, match="params"):
        comp.features(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="output"):
        comp.predict(torch.zeros(4, 2), comp.prior_params((4,)), t)
    with pytest.raises(ValueError, match="method"):
        comp.sample_step(comp.prior_params((4,)), torch.zeros(4, 3), 1, N_STEPS, method="ode")


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"dim": 0}, "dim"),
        ({"dim": 3, "period": -1.0}, "period"),
        ({"dim": 3, "beta1": 0.0}, "beta1"),
        ({"dim": 3, "loss_type": "l1"}, "loss_type"),
        ({"dim": 3, "schedule": "cosine"}, "schedule"),
        ({"dim": 3, "step_weights": "linear"}, "step_weights"),
        ({"dim": 3, "layout": "padded", "event_shape": (4,)}, "event_shape"),
    ],
)
def test_bad_settings_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VonMisesBFN(**kwargs)


def test_repr_is_informative():
    text = repr(VonMisesBFN(3, layout="indexed", loss_type="mse"))
    for part in ("VonMisesBFN", "dim=3", "period=1", "beta1=1000", "indexed", "mse", "crysbfn"):
        assert part in text
