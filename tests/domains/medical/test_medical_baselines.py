"""Non-learned forecasts: copy-forward and linear extrapolation in image space."""

import numpy as np
import pytest
import torch
from sciflow_domains.medical.baselines import BASELINES, CopyForward, LinearExtrapolation


def linear_images(times: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """(B, 2, 8, 8) images a + b·t that stay inside [0, 1] for t in [0, 40] months."""
    gen = torch.Generator().manual_seed(seed)
    a = 0.3 + 0.4 * torch.rand(len(times), 2, 8, 8, generator=gen)
    b = (torch.rand(len(times), 2, 8, 8, generator=gen) - 0.5) * 0.01
    return a + b * times.view(-1, 1, 1, 1), a, b


def test_linear_extrapolation_is_exact_on_images_that_change_linearly():
    t_prev = torch.tensor([0.0, 2.0, 5.0])
    t_last = torch.tensor([3.0, 2.5, 11.0])
    dt = torch.tensor([6.0, 0.7, 20.0])
    previous, a, b = linear_images(t_prev)
    last = a + b * t_last.view(-1, 1, 1, 1)
    future = a + b * (t_last + dt).view(-1, 1, 1, 1)
    out = LinearExtrapolation().forecast(last, dt, previous=previous, gap=t_last - t_prev)
    assert out.images.shape == (3, 1, 2, 8, 8) and out.nfe == 0
    torch.testing.assert_close(out.images[:, 0], future, atol=1e-6, rtol=0)


def test_linear_falls_back_to_copy_forward_without_a_previous_visit():
    last = torch.full((2, 1, 4, 4), 0.5)
    previous = torch.full((2, 1, 4, 4), 0.4)
    gap = torch.tensor([float("nan"), 2.0])
    out = LinearExtrapolation().forecast(last, torch.tensor([4.0, 4.0]), previous=previous, gap=gap)
    torch.testing.assert_close(out.images[0, 0], last[0])  # a pair: identity
    torch.testing.assert_close(out.images[1, 0], torch.full((1, 4, 4), 0.7))  # 0.5 + 0.1·4/2
    plain = LinearExtrapolation().forecast(last, torch.tensor([4.0, 4.0]), num_samples=3)
    assert plain.images.shape == (2, 3, 1, 4, 4)
    torch.testing.assert_close(plain.images, last[:, None].expand(-1, 3, -1, -1, -1))


def test_linear_clips_to_the_intensity_range():
    last = torch.tensor([0.9, 0.1]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    previous = torch.tensor([0.5, 0.5]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    out = LinearExtrapolation().forecast(
        last, torch.tensor([10.0, 10.0]), previous=previous, gap=torch.tensor([1.0, 1.0])
    )
    assert out.images[0].eq(1.0).all() and out.images[1].eq(0.0).all()


def test_copy_forward_repeats_the_last_visit():
    images = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    out = CopyForward().forecast(images.numpy(), np.array([1.0, 2.0, 3.0]), num_samples=2, seed=7)
    assert out.images.shape == (3, 2, 1, 5, 5) and out.nfe == 0
    torch.testing.assert_close(out.images[:, 1], images)
    assert set(BASELINES) == {"copy_forward", "linear"}
    assert BASELINES["linear"].uses_history and not BASELINES["copy_forward"].uses_history


def test_baselines_validate_their_inputs():
    images = torch.full((2, 1, 4, 4), 0.5)
    dt = torch.tensor([1.0, 1.0])
    linear = LinearExtrapolation()
    with pytest.raises(ValueError, match=r"images: expected intensities in \[0, 1\]"):
        CopyForward().forecast(images * 3, dt)
    with pytest.raises(ValueError, match=r"images: expected \(B, C, R, R\)"):
        CopyForward().forecast(images[0], dt)
    with pytest.raises(ValueError, match="dt: expected"):
        CopyForward().forecast(images, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="gap: expected > 0"):
        linear.forecast(images, dt, previous=images, gap=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="previous, gap: give both"):
        linear.forecast(images, dt, previous=images)
    with pytest.raises(ValueError, match="previous: expected the shape"):
        linear.forecast(images, dt, previous=images[:, :, :2], gap=dt)
    with pytest.raises(ValueError, match="num_samples"):
        CopyForward().forecast(images, dt, num_samples=0)
