"""Medical forecasters: the properties of the autonomous latent flow (zero field, Δt = 0, longer
gaps, semigroup, mixed-gap batches), the SDE's noise law and seeds, latent flow matching's
pairing, shapes, losses, input errors, and a learning test on growing discs."""

import pytest
import torch
from sciflow_domains.medical.nets import ScaleField
from sciflow_domains.medical.nets_fm import LatentFlowMatching
from sciflow_domains.medical.nets_ode import ImageFlowNet, integrate_latents
from sciflow_domains.medical.nets_unet import TimeConditionedUNet
from torch import nn

torch.set_num_threads(1)

TINY = {"in_channels": 1, "image_size": 16, "base_channels": 4, "channel_mults": (1, 2)}


def tiny(model=ImageFlowNet, dtype=torch.float64, std=0.2, **kwargs):
    """A small model in eval mode, its fields' last convs (zero at init) drawn with ``std``."""
    torch.manual_seed(0)
    net = model(**{**TINY, **kwargs}).to(dtype).eval()
    for module in net.modules():
        if isinstance(module, ScaleField) and not module.monotone:
            nn.init.normal_(module.conv2.weight, std=std)
    return net


def images(batch=3, dtype=torch.float64, seed=1):
    return torch.rand(batch, 1, 16, 16, generator=torch.Generator().manual_seed(seed)).to(dtype)


def recon(net, x):
    return net.unet.decode(net.unet.encode(x))


@torch.no_grad()
def test_zero_field_keeps_the_latents_and_forecasts_the_reconstruction():
    net = tiny()
    for field in net.fields.values():
        for p in field.parameters():
            p.zero_()
    x = images()
    features = net.unet.encode(x)
    evolved, _ = net.evolve(features, torch.tensor([0.5, 2.0, 5.0], dtype=torch.float64))
    for before, after in zip(features, evolved, strict=True):
        assert torch.equal(before, after)
    out, _ = net.forecast(x, torch.tensor([6.0, 24.0, 60.0], dtype=torch.float64))
    assert torch.equal(out, recon(net, x))


@pytest.mark.parametrize("stochastic", [False, True])
@torch.no_grad()
def test_zero_gap_forecasts_the_reconstruction_for_any_field(stochastic):
    net = tiny(stochastic=stochastic, solver="euler" if stochastic else "rk4", sigma_init=0.5)
    x = images()
    generator = torch.Generator().manual_seed(0)
    out, _ = net.forecast(x, torch.zeros(3, dtype=torch.float64), generator=generator)
    assert torch.equal(out, recon(net, x))
    moved, _ = net.forecast(x, torch.full((3,), 12.0, dtype=torch.float64), generator=generator)
    assert not torch.allclose(moved, out)


@torch.no_grad()
def test_longer_gaps_move_further_along_the_trajectory():
    net = tiny(num_steps=8)
    features = net.unet.encode(images())
    start = torch.cat([features[i].flatten(1) for i in net.scales], dim=1)
    distances = []
    for months in (1.0, 3.0, 6.0, 12.0, 24.0):
        evolved, _ = net.evolve(features, net.horizon(torch.full((3,), months).double()))
        end = torch.cat([evolved[i].flatten(1) for i in net.scales], dim=1)
        distances.append((end - start).norm(dim=1))
    distances = torch.stack(distances)  # (gaps, B)
    assert (distances[0] > 0).all()
    assert (distances.diff(dim=0) > 0).all()


@torch.no_grad()
def test_the_autonomous_flow_is_a_semigroup():
    """Φ_{h2} = Φ_{h2 − h1} ∘ Φ_{h1} up to the solver error, which falls as (step)^4 (RK4)."""
    h1, h2 = torch.tensor([0.3, 1.0, 2.0]).double(), torch.tensor([1.0, 1.5, 4.0]).double()
    errors = []
    for steps in (8, 16, 32):
        net = tiny(num_steps=steps, std=0.05)
        features = net.unet.encode(images())
        direct, _ = net.evolve(features, h2)
        composed, _ = net.evolve(net.evolve(features, h1)[0], h2 - h1)
        moved = max((direct[i] - features[i]).abs().max() for i in net.scales)
        errors.append(max((composed[i] - direct[i]).abs().max() for i in net.scales) / moved)
    assert moved > 1.0
    assert errors[0] / errors[1] > 10 and errors[1] / errors[2] > 10  # order 4: a factor 16
    assert errors[2] < 1e-6
    x, dts = images(), torch.tensor([0.0, 12.0, 24.0]).double()
    path, _ = net.trajectory(x, dts)  # continues one path: 0 → 12 → 24 months
    last, _ = net.forecast(x, dts[-1].expand(3))
    torch.testing.assert_close(path[:, -1], last, rtol=0, atol=1e-6)
    assert torch.equal(path[:, 0], recon(net, x))


@pytest.mark.parametrize(
    "model, kwargs",
    [
        (ImageFlowNet, {}),
        (ImageFlowNet, {"solver": "dopri5", "num_steps": 1}),
        (LatentFlowMatching, {}),
        (TimeConditionedUNet, {}),
    ],
    ids=["ode_rk4", "ode_dopri5", "latent_fm", "unet"],
)
@torch.no_grad()
def test_a_batch_of_mixed_gaps_equals_forecasting_each_item_alone(model, kwargs):
    net = tiny(model, **kwargs)
    x, dt = images(4), torch.tensor([0.5, 3.0, 11.0, 40.0]).double()
    batched, _ = net.forecast(x, dt)
    single = torch.cat([net.forecast(x[k : k + 1], dt[k : k + 1])[0] for k in range(4)])
    # dopri5 adapts one step size to the whole batch: equal up to its tolerance (1e-5 relative)
    atol = 1e-3 if kwargs.get("solver") == "dopri5" else 1e-10
    torch.testing.assert_close(batched, single, rtol=0, atol=atol)


@torch.no_grad()
def test_sde_with_zero_sigma_equals_the_euler_ode():
    sde = tiny(stochastic=True, solver="euler", num_steps=5, sigma_init=0.0)
    ode = tiny(solver="euler", num_steps=5)
    ode.load_state_dict({k: v for k, v in sde.state_dict().items() if k != "sigma"})
    x, dt = images(), torch.tensor([2.0, 9.0, 30.0]).double()
    generator = torch.Generator().manual_seed(3)
    torch.testing.assert_close(sde.forecast(x, dt, generator=generator)[0], ode.forecast(x, dt)[0])


@torch.no_grad()
def test_sde_seeds_reproduce_and_differ():
    net = tiny(stochastic=True, solver="euler", num_steps=4, sigma_init=0.3)
    x, dt = images(), torch.full((3,), 12.0).double()

    def draw(seed):
        return net.forecast(x, dt, generator=torch.Generator().manual_seed(seed))[0]

    assert torch.equal(draw(5), draw(5))
    assert not torch.allclose(draw(5), draw(6))


@pytest.mark.parametrize("num_steps", [1, 7])
def test_sde_noise_has_variance_sigma_squared_times_horizon(num_steps):
    """With f ≡ 0 the rescaled SDE dz = sqrt(h) σ dW_s over s ∈ [0, 1] is Brownian motion run
    for time h: z(h) − z(0) ~ N(0, σ² h) elementwise, whatever the number of steps."""
    zero = {"z": lambda z: torch.zeros_like(z)}
    z0 = torch.zeros(4000, 2, 4, 4, dtype=torch.float64)
    horizon = torch.full((4000,), 2.25, dtype=torch.float64)
    out, nfe = integrate_latents(
        zero, {"z": z0}, horizon, num_steps, "euler",
        sigma={"z": torch.tensor(0.4, dtype=torch.float64)},
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert nfe == num_steps
    assert abs(out["z"].std().item() - 0.4 * 1.5) < 0.01
    assert abs(out["z"].mean().item()) < 0.01


def test_smoothness_energy_is_the_mean_squared_rescaled_velocity():
    field = {"z": lambda z: 2.0 * torch.ones_like(z)}  # constant f: h f at every evaluation
    energy = []
    horizon = torch.tensor([1.0, 3.0], dtype=torch.float64)
    out, nfe = integrate_latents(
        field, {"z": torch.zeros(2, 1, 2, 2, dtype=torch.float64)}, horizon, 3, "rk4",
        energy=energy,
    )  # fmt: skip
    assert nfe == len(energy) == 12
    expected = ((2.0 * horizon) ** 2).mean()  # each item's ‖h f‖², averaged over the batch
    for value in energy:
        torch.testing.assert_close(value, expected)
    torch.testing.assert_close(out["z"][:, 0, 0, 0], 2.0 * horizon)


def test_latent_fm_pairs_earlier_and_later_latents_with_per_element_weights():
    net = tiny(LatentFlowMatching, flow_scales=(1, 2))
    x0, x1 = images(seed=1), images(seed=2)
    batch = {"x0": x0, "x1": x1, "t0": torch.zeros(3).double(), "t1": torch.ones(3).double()}
    with torch.no_grad():
        z0, z1 = net.unet.encode(x0), net.unet.encode(x1)
    straight = {f"z{i}": z1[i] - z0[i] for i in net.scales}
    net.velocity = lambda z_t, t, context: straight  # the exact velocity of the linear path
    assert net.loss(batch).terms["flow"].abs().item() < 1e-20
    net.velocity = lambda z_t, t, context: {k: torch.zeros_like(v) for k, v in z_t.items()}
    expected = sum(v.pow(2).mean() for v in straight.values())  # per-element MSE per map
    torch.testing.assert_close(net.loss(batch).terms["flow"], expected)
    net.velocity = lambda z_t, t, context: straight
    with torch.no_grad():  # integrating the exact velocity lands on x1's latents
        out, nfe = net.forecast(x0, torch.ones(3).double())
        target = net.unet.decode([z1[i] if i in net.scales else z for i, z in enumerate(z0)])
    torch.testing.assert_close(out, target)
    assert nfe == net.num_steps + 1


@torch.no_grad()
def test_latent_fm_with_source_noise_is_stochastic_and_seeded():
    net = tiny(LatentFlowMatching, source_noise=0.5)
    x, dt = images(), torch.full((3,), 6.0).double()
    assert net.stochastic and not tiny(LatentFlowMatching).stochastic

    def draw(seed):
        return net.forecast(x, dt, generator=torch.Generator().manual_seed(seed))[0]

    assert torch.equal(draw(1), draw(1))
    assert not torch.allclose(draw(1), draw(2))


MODELS = {
    "imageflownet_ode": (ImageFlowNet, {"latent_weight": 0.1, "smooth_weight": 0.1,
                                        "visual_weight": 0.1}, 2 * 4 + 1),
    "imageflownet_sde": (ImageFlowNet, {"stochastic": True, "solver": "euler", "num_steps": 3,
                                        "latent_weight": 0.1}, 3 + 1),
    "latent_fm": (LatentFlowMatching, {"num_steps": 5, "solver": "midpoint"}, 2 * 5 + 1),
    "unet": (TimeConditionedUNet, {}, 1),
}  # fmt: skip
TERMS = {
    "imageflownet_ode": {"recon", "forecast", "latent", "smooth", "visual"},
    "imageflownet_sde": {"recon", "forecast", "latent"},
    "latent_fm": {"recon", "flow"},
    "unet": {"forecast"},
}


@pytest.mark.parametrize("visits", [2, 3])
@pytest.mark.parametrize("kind", list(MODELS))
def test_shapes_losses_and_gradients(kind, visits):
    model, kwargs, nfe = MODELS[kind]
    net = tiny(model, dtype=torch.float32, **kwargs).train()
    assert net.kind == kind
    batch = {"t0": torch.tensor([0.0, 1.0])}
    for k in range(visits):
        batch[f"x{k}"] = torch.rand(2, 1, 16, 16)
        if k:
            batch[f"t{k}"] = batch[f"t{k - 1}"] + 3.0 * k
    loss = net.loss(batch, generator=torch.Generator().manual_seed(0))
    assert set(loss.terms) == TERMS[kind]
    assert torch.isfinite(loss.total) and loss.total > 0
    loss.total.backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        out, count = net.eval().forecast(batch["x0"], torch.tensor([2.0, 7.0]))
        path, path_nfe = net.trajectory(batch["x0"], torch.tensor([1.0, 2.0, 5.0]))
    assert out.shape == (2, 1, 16, 16) and count == nfe
    assert path.shape == (2, 3, 1, 16, 16) and path_nfe >= nfe


def test_visual_term_does_not_train_the_encoder():
    net = tiny(visual_weight=1.0, dtype=torch.float32)
    prediction = torch.rand(2, 1, 16, 16, requires_grad=True)
    net._visual(prediction, torch.rand(2, 1, 16, 16)).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.unet.parameters())


def test_monotone_fields_are_nonnegative():
    field = ScaleField(4, 8, monotone=True, groups=2)
    assert (field(torch.randn(3, 4, 5, 5)) >= 0).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"stochastic": True, "solver": "rk4"}, "Euler–Maruyama"),
        ({"solver": "leapfrog"}, "solver"),
        ({"flow_scales": (0, 3)}, r"flow_scales: expected indices in \[0, 2\]"),
        ({"image_size": 15}, "image_size: expected a multiple of 2"),
        ({"time_scale": 0.0}, "time_scale"),
        ({"latent_weight": -1.0}, "latent_weight"),
        ({"num_steps": 0}, "num_steps"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImageFlowNet(**{**TINY, **kwargs})


def test_bad_inputs_are_named():
    net = tiny(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"images: expected \(B, 1, 16, 16\)"):
        net.forecast(torch.rand(2, 1, 8, 8), torch.ones(2))
    with pytest.raises(ValueError, match=r"dt: expected shape \(2,\)"):
        net.forecast(torch.rand(2, 1, 16, 16), torch.ones(3))
    with pytest.raises(ValueError, match="dt: expected finite gaps >= 0"):
        net.forecast(torch.rand(2, 1, 16, 16), torch.tensor([1.0, -2.0]))
    with pytest.raises(ValueError, match="batch: expected visits 'x0' and 'x1'"):
        net.loss({"x0": torch.rand(2, 1, 16, 16), "t0": torch.zeros(2)})


def _growing_discs(count: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Pairs of 16 px images of a dark disc whose radius grows by 0.25 px per month."""
    axis = torch.arange(16) - 7.5
    dist = (axis[None, :] ** 2 + axis[:, None] ** 2).sqrt()

    def draw(radius):
        return (0.8 - 0.6 * torch.sigmoid((radius[:, None, None] - dist) / 0.5))[:, None]

    radius = 1.5 + 2 * torch.rand(count, generator=generator)
    dt = 12 * torch.rand(count, generator=generator)
    return {"x0": draw(radius), "x1": draw(radius + 0.25 * dt), "t0": torch.zeros(count), "t1": dt}


@pytest.mark.slow
def test_imageflownet_learns_disc_growth_and_longer_gaps_grow_the_lesion_more():
    torch.manual_seed(0)
    net = ImageFlowNet(**{**TINY, "base_channels": 8}, num_steps=2)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(120):
        loss = net.loss(_growing_discs(16, generator)).total
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    test = _growing_discs(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, _ = net.eval().forecast(test["x0"], test["t1"])
        areas = torch.stack(
            [(0.8 - net.forecast(test["x0"], torch.full((64,), m))[0].clamp(0, 1)).sum((1, 2, 3))
             for m in (0.0, 4.0, 8.0, 12.0)]
        )  # fmt: skip
    copy_forward = (test["x0"] - test["x1"]).abs().mean()
    assert (out.clamp(0, 1) - test["x1"]).abs().mean() < 0.6 * copy_forward
    assert (areas.diff(dim=0) > 0).all()
