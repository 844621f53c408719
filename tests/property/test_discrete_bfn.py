"""Properties of the discrete Bayesian flow (sciflow.bfn.discrete), in float64."""

import math

import pytest
import torch
from torch.distributions import Normal

from sciflow.bfn.discrete import DiscreteBFN, discrete_update

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _sender_log_likelihood(y, alpha, k):
    """ln N(y | α(K e_c − 1), αK I) for every class c: y (..., K) → (..., K)."""
    means = alpha * (k * torch.eye(k, dtype=F64) - 1)  # (class, K)
    return Normal(means, math.sqrt(alpha * k)).log_prob(y.unsqueeze(-2)).sum(-1)


def _sample_loop(bfn, net, shape, num_steps, method, seed):
    """θ_0 → n × sample_step → finalize, with the network ``net(θ, t)`` returning logits."""
    g = _gen(seed)
    theta = bfn.prior_params(shape, dtype=F64)
    for i in range(1, num_steps + 1):
        t = theta.new_full(shape, (i - 1) / num_steps)
        theta = bfn.sample_step(theta, net(theta, t), i, num_steps, generator=g, method=method)
    return bfn.finalize(net(theta, theta.new_ones(shape)), theta, generator=g), theta


# -- (b) the Bayesian update ---------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.01, 0.7, 5.0])
def test_update_equals_the_exact_categorical_posterior(alpha):
    k, g = 5, _gen(1)
    theta = torch.softmax(torch.randn(200, k, generator=g, dtype=F64), -1)
    x = torch.randint(0, k, (200,), generator=g)
    y = alpha * (k * torch.eye(k, dtype=F64)[x] - 1)
    y = y + math.sqrt(alpha * k) * torch.randn(200, k, generator=g, dtype=F64)
    exact = torch.softmax(theta.log() + _sender_log_likelihood(y, alpha, k), -1)
    assert (discrete_update(theta, y) - exact).abs().max() < 1e-12


@pytest.mark.parametrize("beta1", [1e2, 1e3, 1e4])
def test_update_and_flow_stay_finite_at_large_beta(beta1):
    bfn, g, n = DiscreteBFN(6, beta1=beta1), _gen(2), 20
    x = torch.randint(0, 6, (500,), generator=g)
    flow = bfn.flow_sample(x, torch.ones(500, dtype=F64), None, None, g)
    theta = bfn.prior_params((500,), dtype=F64)
    for i in range(1, n + 1):
        alpha = bfn.alpha(i, n)
        y = alpha * (6 * torch.eye(6, dtype=F64)[x] - 1)
        theta = discrete_update(
            theta, y + math.sqrt(6 * alpha) * torch.randn(500, 6, generator=g, dtype=F64)
        )
    for probs in (flow, theta):
        assert torch.isfinite(probs).all()
        torch.testing.assert_close(probs.sum(-1), torch.ones(500, dtype=F64))
        assert (probs.argmax(-1) == x).all()


# -- (c) the flow distribution -----------------------------------------------------------------
def test_step_accuracies_sum_to_the_schedule():
    bfn, n = DiscreteBFN(4, beta1=3.0), 30
    cumulative = torch.cumsum(
        torch.tensor([bfn.alpha(i, n) for i in range(1, n + 1)], dtype=F64), 0
    )
    expected = torch.tensor([bfn.beta(i / n) for i in range(1, n + 1)], dtype=F64)
    assert (cumulative - expected).abs().max() < 1e-12


def test_sequential_updates_reproduce_the_flow_distribution():
    """Mean and per-class variance of θ after i updates match the closed-form flow at t = i/n,
    within 5 standard errors of the difference of the two Monte-Carlo estimates."""
    k, n, num = 4, 10, 50_000
    bfn, g = DiscreteBFN(k, beta1=3.0), _gen(3)
    x = torch.full((num,), 1)
    theta = bfn.prior_params((num,), dtype=F64)
    for i in range(1, n + 1):
        alpha = bfn.alpha(i, n)
        y = alpha * (k * torch.eye(k, dtype=F64)[x] - 1)
        theta = discrete_update(
            theta, y + math.sqrt(alpha * k) * torch.randn(num, k, generator=g, dtype=F64)
        )
        if i not in (1, 4, 10):
            continue
        flow = bfn.flow_sample(x, torch.full((num,), i / n, dtype=F64), None, None, g)
        mean_se = ((theta.var(0) + flow.var(0)) / num).sqrt()
        assert ((theta.mean(0) - flow.mean(0)).abs() < 5 * mean_se).all()
        centred = [(s - s.mean(0)) ** 2 for s in (theta, flow)]
        var_se = ((centred[0].var(0) + centred[1].var(0)) / num).sqrt()
        assert ((theta.var(0) - flow.var(0)).abs() < 5 * var_se).all()


# -- (d) losses ------------------------------------------------------------------------------
def test_perfect_prediction_gives_zero_continuous_loss():
    bfn, g = DiscreteBFN(5), _gen(4)
    x = torch.randint(0, 5, (64,), generator=g)
    t = torch.rand(64, generator=g, dtype=F64)
    logits = 1e3 * torch.eye(5, dtype=F64)[x]
    theta = bfn.flow_sample(x, t, None, None, g)
    assert (bfn.loss(x, logits, theta, t, None, None) == 0).all()


def test_n_step_loss_equals_the_mixture_kl_estimate():
    """The simplified per-sample term y_x − logsumexp(ln p + y) equals ln N_x − ln Σ p_k N_k."""
    k, n, bfn = 4, 10, DiscreteBFN(4, beta1=3.0, num_mc=7)
    g = _gen(5)
    x = torch.randint(0, k, (30,), generator=g)
    logits = torch.randn(30, k, generator=g, dtype=F64)
    step = torch.full((30,), 6)
    t = torch.full((30,), 0.5, dtype=F64)
    loss = bfn.loss(x, logits, bfn.prior_params((30,), dtype=F64), t, step, n, generator=_gen(6))
    alpha = bfn.alpha(6, n)
    noise = torch.randn(7, 30, k, generator=_gen(6), dtype=F64)
    y = alpha * (k * torch.eye(k, dtype=F64)[x] - 1) + math.sqrt(alpha * k) * noise
    log_n = _sender_log_likelihood(y, alpha, k)
    sender = log_n.gather(-1, x.expand(7, 30).unsqueeze(-1)).squeeze(-1)
    receiver = torch.logsumexp(logits.log_softmax(-1) + log_n, -1)
    assert (loss - n * (sender - receiver).mean(0)).abs().max() < 1e-10


def test_n_step_loss_is_nonnegative_in_expectation_and_zero_when_confident():
    bfn, n, g = DiscreteBFN(4, beta1=3.0, num_mc=4000), 10, _gen(7)
    x = torch.randint(0, 4, (20,), generator=g)
    step = torch.randint(1, n + 1, (20,), generator=g)
    t = (step - 1).to(F64) / n
    theta = bfn.flow_sample(x, t, step, n, g)
    random_logits = torch.randn(20, 4, generator=g, dtype=F64)
    loss = bfn.loss(x, random_logits, theta, t, step, n, generator=g)
    assert loss.mean() > 0 and (loss > -0.05).all()  # a KL; MC noise of one element ~1e-2
    confident = bfn.loss(x, 40.0 * torch.eye(4, dtype=F64)[x], theta, t, step, n, generator=g)
    assert confident.abs().max() < 1e-9


# -- (e) sampling --------------------------------------------------------------------------------
@pytest.mark.parametrize("final", ["argmax", "sample"])
@pytest.mark.parametrize("method", ["vanilla", "end_back"])
def test_oracle_sampling_recovers_the_data(final, method):
    bfn = DiscreteBFN(4, beta1=20.0, final=final)
    x = torch.randint(0, 4, (200,), generator=_gen(8))

    def net(theta, t):
        return 50.0 * torch.eye(4, dtype=F64)[x]

    sample, theta = _sample_loop(bfn, net, (200,), 20, method, seed=9)
    assert sample.dtype == torch.int64 and torch.equal(sample, x)
    assert (theta.argmax(-1) == x).float().mean() > 0.98  # β(1) = 20: P(wrong) ≈ 1e-3 per element


@pytest.mark.parametrize("method", ["vanilla", "end_back"])
def test_same_generator_gives_the_same_samples(method):
    bfn = DiscreteBFN(3, final="sample")

    def net(theta, t):
        return 3 * theta + t.unsqueeze(-1)

    first = _sample_loop(bfn, net, (16, 2), 10, method, seed=10)
    again = _sample_loop(bfn, net, (16, 2), 10, method, seed=10)
    other = _sample_loop(bfn, net, (16, 2), 10, method, seed=11)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[1], other[1])
    x, t, step = (
        torch.zeros(16, dtype=torch.long),
        torch.full((16,), 0.2, dtype=F64),
        torch.full((16,), 3),
    )
    logits = torch.zeros(16, 3, dtype=F64)
    runs = [
        bfn.loss(x, logits, bfn.prior_params((16,), dtype=F64), t, step, 10, _gen(12))
        for _ in range(2)
    ]
    assert torch.equal(*runs)


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
    bfn = DiscreteBFN(3, layout=layout, event_shape=event_shape)
    theta = bfn.prior(3, context, dtype=F64)
    assert theta.shape == (*shape, 3)
    torch.testing.assert_close(theta, torch.full_like(theta, 1 / 3))
    x, t = torch.randint(0, 3, shape), torch.rand(shape, dtype=F64)
    theta = bfn.flow_sample(x, t, None, None, _gen())
    out = torch.randn(*shape, 3, dtype=F64)
    assert bfn.features(theta).shape == (*shape, 3)
    assert bfn.predict(out, theta, t).shape == (*shape, 3)
    assert bfn.loss(x, out, theta, t, None, None).shape == shape
    step = torch.full(shape, 2)
    assert bfn.loss(x, out, theta, t, step, 4, _gen()).shape == shape
    for method in ("vanilla", "end_back"):
        assert bfn.sample_step(theta, out, 2, 4, _gen(), method).shape == (*shape, 3)
    assert bfn.finalize(out, theta).shape == shape


# -- (f) bad inputs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"beta1": 0.0}, "beta1"),
        ({"beta1": -1.0}, "beta1"),
        ({"beta1": float("inf")}, "beta1"),
        ({"num_mc": 0}, "num_mc"),
        ({"final": "mode"}, "final"),
        ({"layout": "indexed", "event_shape": (2,)}, "event_shape"),
    ],
)
def test_bad_constructor_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DiscreteBFN(**{"num_classes": 4, **kwargs})


@pytest.mark.parametrize(
    "x",
    [
        torch.tensor([0, 1, 4]),
        torch.tensor([-1, 0, 1]),
        torch.tensor([0.0, 1.0, 2.0]),
        torch.tensor([0.0, float("nan"), 1.0]),
        torch.tensor([True, False, True]),
    ],
)
def test_bad_class_indices_are_named(x):
    bfn = DiscreteBFN(4)
    with pytest.raises(ValueError, match=r"batch\['types'\]"):
        bfn.check_data(x, name="batch['types']")
    with pytest.raises(ValueError, match="x"):
        bfn.flow_sample(x, torch.zeros(3, dtype=F64), None, None)


def test_bad_call_arguments_are_named():
    bfn = DiscreteBFN(4)
    x, t = torch.tensor([0, 1, 2]), torch.full((3,), 0.5, dtype=F64)
    theta, out = bfn.prior_params((3,), dtype=F64), torch.zeros(3, 4, dtype=F64)
    with pytest.raises(TypeError, match="x"):
        bfn.check_data([0, 1], name="x")
    with pytest.raises(ValueError, match="t"):
        bfn.flow_sample(x, torch.zeros(3, 1, dtype=F64), None, None)
    with pytest.raises(ValueError, match="output"):
        bfn.loss(x, torch.zeros(3, 5, dtype=F64), theta, t, None, None)
    with pytest.raises(ValueError, match="step"):
        bfn.loss(x, out, theta, t, torch.tensor([1, 2, 11]), 10)
    with pytest.raises(ValueError, match="step"):
        bfn.loss(x, out, theta, t, torch.tensor([1, 2, 3]), None)
    with pytest.raises(ValueError, match="num_steps"):
        bfn.sample_step(theta, out, 1, 0)
    with pytest.raises(ValueError, match="y"):
        discrete_update(theta, torch.zeros(3, 5, dtype=F64))
    with pytest.raises(TypeError, match="theta"):
        discrete_update(torch.zeros(3, 4, dtype=torch.long), out)
