"""Properties of the Gaussian Bayesian flow (sciflow.bfn.gaussian), in float64."""

import math

import pytest
import torch

from sciflow.bfn.gaussian import GaussianBFN, gaussian_update

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _log_normal(z, mean, precision):
    return 0.5 * torch.log(precision / (2 * math.pi)) - 0.5 * precision * (z - mean) ** 2


def _eps_oracle(bfn, x):
    """The ε that turns μ back into x exactly: ε = (μ − γx)/√(γ(1−γ))."""

    def net(mu, t):
        gamma = bfn.gamma(t).unsqueeze(-1)
        return (mu - gamma * x) / (gamma * (1 - gamma)).clamp_min(1e-300).sqrt()

    return net


def _sample_loop(bfn, net, shape, num_steps, method, seed):
    """θ_0 → n × sample_step → finalize, with the network ``net(μ, t)``."""
    g = _gen(seed)
    mu = bfn.prior_params(shape, dtype=F64)
    for i in range(1, num_steps + 1):
        t = mu.new_full(shape, (i - 1) / num_steps)
        mu = bfn.sample_step(mu, net(mu, t), i, num_steps, generator=g, method=method)
    return bfn.finalize(net(mu, mu.new_ones(shape)), mu, generator=g), mu


# -- (a) the Bayesian update ---------------------------------------------------------------------
def test_update_satisfies_bayes_rule_in_closed_form():
    """prior(z)·likelihood(y|z) = posterior(z)·evidence(y) for every z: the log of each side."""
    g = _gen()
    mu, y = (
        torch.randn(50, 1, generator=g, dtype=F64),
        3 * torch.randn(50, 1, generator=g, dtype=F64),
    )
    rho = torch.rand(50, 1, generator=g, dtype=F64) * 10 + 0.1
    alpha = torch.rand(50, 1, generator=g, dtype=F64) * 100 + 1e-3
    mu_post, rho_post = gaussian_update(mu, rho, y, alpha)
    torch.testing.assert_close(rho_post, rho + alpha, rtol=0, atol=0)
    z = torch.linspace(-5, 5, 41, dtype=F64)
    joint = _log_normal(z, mu, rho) + _log_normal(y, z, alpha)
    evidence = _log_normal(y, mu, 1 / (1 / rho + 1 / alpha))
    err = (joint - _log_normal(z, mu_post, rho_post) - evidence).abs().max()
    assert err < 1e-10


@pytest.mark.parametrize(
    ("mu", "rho", "y", "alpha"), [(0.0, 1.0, 2.0, 0.5), (-1.3, 40.0, 0.7, 3.0)]
)
def test_update_matches_numeric_posterior_on_a_grid(mu, rho, y, alpha):
    mu_post, rho_post = gaussian_update(
        torch.tensor([mu], dtype=F64), rho, torch.tensor([y], dtype=F64), alpha
    )
    scale = 1 / math.sqrt(rho + alpha)
    z = torch.linspace(-20 * scale, 20 * scale, 4001, dtype=F64) + float(mu_post)
    log_post = _log_normal(z, torch.tensor(mu, dtype=F64), torch.tensor(rho, dtype=F64))
    log_post = log_post + _log_normal(torch.tensor(y, dtype=F64), z, torch.tensor(alpha, dtype=F64))
    density = torch.exp(log_post - log_post.max())
    density = density / torch.trapezoid(density, z)
    mean = torch.trapezoid(z * density, z)
    var = torch.trapezoid((z - mean) ** 2 * density, z)
    assert abs(float(mean - mu_post)) < 1e-10
    assert abs(float(var) - 1 / rho_post) < 1e-10


# -- (c) the flow distribution -----------------------------------------------------------------
def test_step_accuracies_sum_to_the_precision_schedule():
    bfn = GaussianBFN(2, sigma1=0.0316)
    n = 25
    alphas = torch.tensor([bfn.alpha(i, n) for i in range(1, n + 1)], dtype=F64)
    rho = 1 + torch.cumsum(alphas, 0)
    expected = torch.tensor([bfn.precision(i / n) for i in range(1, n + 1)], dtype=F64)
    assert ((rho - expected) / expected).abs().max() < 1e-12


def test_sequential_updates_reproduce_the_flow_moments():
    """n sender updates with α_i give μ ~ N(γx, γ(1−γ)) after each step (5 standard errors)."""
    bfn, n, num = GaussianBFN(3, sigma1=0.0316), 8, 100_000
    x = torch.tensor([1.5, -0.4, 0.0], dtype=F64)
    g = _gen(1)
    mu, rho = torch.zeros(num, 3, dtype=F64), 1.0
    for i in range(1, n + 1):
        alpha = bfn.alpha(i, n)
        y = x + torch.randn(num, 3, generator=g, dtype=F64) / math.sqrt(alpha)
        mu, rho = gaussian_update(mu, rho, y, alpha)
        gamma = float(bfn.gamma(torch.tensor(i / n, dtype=F64)))
        var = gamma * (1 - gamma)
        closed = bfn.flow_sample(
            x.expand(num, 3), torch.full((num,), i / n, dtype=F64), None, None, g
        )
        for sample in (mu, closed):
            assert (sample.mean(0) - gamma * x).abs().max() < 5 * math.sqrt(var / num)
            assert (sample.var(0) - var).abs().max() < 5 * var * math.sqrt(2 / num)


# -- (d) losses ------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "x"])
def test_perfect_prediction_gives_zero_loss(prediction):
    bfn, g = GaussianBFN(3, prediction=prediction), _gen(2)
    x = torch.randn(64, 3, generator=g, dtype=F64)
    t = torch.rand(64, generator=g, dtype=F64) * 0.98 + 0.01
    mu = bfn.flow_sample(x, t, None, None, g)
    out = x if prediction == "x" else _eps_oracle(bfn, x)(mu, t)
    assert bfn.loss(x, out, mu, t, None, None).abs().max() < 1e-14
    step = torch.randint(2, 11, (64,), generator=g)
    t_step = (step - 1).to(F64) / 10
    mu = bfn.flow_sample(x, t_step, step, 10, g)
    out = x if prediction == "x" else _eps_oracle(bfn, x)(mu, t_step)
    assert bfn.loss(x, out, mu, t_step, step, 10).abs().max() < 1e-14


def test_continuous_loss_is_the_limit_of_the_n_step_loss():
    bfn, g = GaussianBFN(2, sigma1=0.0316, prediction="x"), _gen(3)
    x, out = torch.randn(5, 2, generator=g, dtype=F64), torch.randn(5, 2, generator=g, dtype=F64)
    mu = torch.zeros(5, 2, dtype=F64)
    errors = []
    for n in (100, 10_000):
        step = torch.tensor([1, n // 4, n // 2, 3 * n // 4, n])
        t = (step - 1).to(F64) / n
        discrete = bfn.loss(x, out, mu, t, step, n)
        continuous = bfn.loss(x, out, mu, t, None, None)
        errors.append(float(((discrete - continuous) / continuous).abs().max()))
    assert errors[1] < 1e-3  # first order in 1/n: −ln σ1 / n ≈ 3.5e-4 at n = 1e4
    assert errors[0] / errors[1] == pytest.approx(100, rel=0.05)


def test_eps_prediction_is_zero_before_t_min_and_clipped():
    bfn = GaussianBFN(2, t_min=1e-3, x_clip=2.0)
    mu, out = torch.full((3, 2), 0.5, dtype=F64), torch.full((3, 2), -50.0, dtype=F64)
    x_hat = bfn.predict(out, mu, torch.tensor([0.0, 5e-4, 0.5], dtype=F64))
    assert (x_hat[:2] == 0).all()
    assert (x_hat[2] == 2.0).all()


def test_eps_prediction_at_t_zero_has_finite_gradients():
    bfn = GaussianBFN(2)
    out = torch.randn(4, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.0, 0.3, 1.0], dtype=F64)
    bfn.loss(
        torch.ones(4, 2, dtype=F64), out, torch.zeros(4, 2, dtype=F64), t, None, None
    ).sum().backward()
    assert torch.isfinite(out.grad).all()


# -- (e) sampling --------------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", ["eps", "x"])
@pytest.mark.parametrize("method", ["vanilla", "end_back"])
def test_oracle_sampling_recovers_the_data(prediction, method):
    bfn = GaussianBFN(3, sigma1=0.001, prediction=prediction)
    x = 2 * torch.randn(32, 3, generator=_gen(4), dtype=F64)
    net = (lambda mu, t: x.expand_as(mu)) if prediction == "x" else _eps_oracle(bfn, x)
    sample, mu = _sample_loop(bfn, net, (32,), 20, method, seed=5)
    torch.testing.assert_close(sample, x, rtol=0, atol=1e-12)
    assert (mu - x).abs().max() < 6 * 0.001 + 0.001**2 * x.abs().max()  # μ_n ~ N(γx, γ(1−γ))


@pytest.mark.parametrize("method", ["vanilla", "end_back"])
def test_same_generator_gives_the_same_samples(method):
    bfn = GaussianBFN(2, prediction="x")

    def net(mu, t):
        return torch.tanh(mu) + t.unsqueeze(-1)

    first = _sample_loop(bfn, net, (8, 3), 10, method, seed=6)[1]
    again = _sample_loop(bfn, net, (8, 3), 10, method, seed=6)[1]
    other = _sample_loop(bfn, net, (8, 3), 10, method, seed=7)[1]
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    x, t = torch.zeros(8, 2, dtype=F64), torch.full((8,), 0.5, dtype=F64)
    assert torch.equal(
        bfn.flow_sample(x, t, None, None, _gen(8)), bfn.flow_sample(x, t, None, None, _gen(8))
    )


# -- layouts -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layout", "event_shape", "context", "shape"),
    [
        ("dense", (4,), {}, (3, 4)),
        ("padded", (), {"mask": torch.ones(3, 5, dtype=torch.bool)}, (3, 5)),
        ("indexed", (), {"index": torch.tensor([0, 0, 1, 2, 2, 2])}, (6,)),
    ],
)
def test_layouts_keep_the_element_shape(layout, event_shape, context, shape):
    bfn = GaussianBFN(2, layout=layout, event_shape=event_shape)
    mu = bfn.prior(3, context, dtype=F64)
    assert mu.shape == (*shape, 2) and (mu == 0).all()
    x, t = torch.randn(*shape, 2, dtype=F64), torch.rand(shape, dtype=F64)
    mu = bfn.flow_sample(x, t, None, None, _gen())
    out = torch.randn(*shape, 2, dtype=F64)
    assert bfn.features(mu).shape == (*shape, 2)
    assert bfn.predict(out, mu, t).shape == (*shape, 2)
    assert bfn.loss(x, out, mu, t, None, None).shape == shape
    assert bfn.sample_step(mu, out, 1, 4, _gen()).shape == (*shape, 2)
    assert bfn.finalize(out, mu).shape == (*shape, 2)


# -- (f) bad inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sigma1": 0.0}, "sigma1"),
        ({"sigma1": 1.0}, "sigma1"),
        ({"sigma1": -0.1}, "sigma1"),
        ({"prediction": "v"}, "prediction"),
        ({"t_min": -1.0}, "t_min"),
        ({"x_clip": 0.0}, "x_clip"),
        ({"layout": "ragged"}, "layout"),
        ({"layout": "padded", "event_shape": (3,)}, "event_shape"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GaussianBFN(2, **kwargs)


def test_bad_dim_and_sigma1_type_are_named():
    with pytest.raises(ValueError, match="dim"):
        GaussianBFN(0)
    with pytest.raises(TypeError, match="sigma1"):
        GaussianBFN(2, sigma1="0.1")


def test_bad_call_arguments_are_named():
    bfn = GaussianBFN(2)
    x, t, mu = (
        torch.zeros(4, 2, dtype=F64),
        torch.full((4,), 0.5, dtype=F64),
        torch.zeros(4, 2, dtype=F64),
    )
    with pytest.raises(ValueError, match="x"):
        bfn.flow_sample(torch.zeros(4, 3, dtype=F64), t, None, None)
    with pytest.raises(ValueError, match="t"):
        bfn.flow_sample(x, torch.zeros(5, dtype=F64), None, None)
    with pytest.raises(TypeError, match="x"):
        bfn.flow_sample(torch.zeros(4, 2, dtype=torch.long), t, None, None)
    with pytest.raises(ValueError, match="output"):
        bfn.loss(x, torch.zeros(4, 3, dtype=F64), mu, t, None, None)
    with pytest.raises(ValueError, match="step"):
        bfn.loss(x, x, mu, t, torch.tensor([0, 1, 2, 3]), 3)
    with pytest.raises(TypeError, match="step"):
        bfn.loss(x, x, mu, t, t, 3)
    with pytest.raises(ValueError, match="step"):
        bfn.sample_step(mu, x, 5, 4)
    with pytest.raises(ValueError, match="method"):
        bfn.sample_step(mu, x, 1, 4, method="heun")
    with pytest.raises(ValueError, match="y"):
        gaussian_update(mu, 1.0, torch.zeros(4, 3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="batch"):
        bfn.check_data(torch.tensor([[float("nan"), 0.0]]), name="batch['lattice']")
