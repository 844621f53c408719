"""The true predictive distribution: futures drawn from SynthProg's own law."""

import numpy as np
import pytest
from sciflow_domains.medical.synthprog import generate, make_law, sample_future
from sciflow_domains.medical.synthprog.config import NuisanceParams


def test_deterministic_growth_futures_match_the_later_visit(small_config):
    config = small_config("ga", n_subjects=2, nuisance=NuisanceParams(registered=True))
    data = generate(config, seed=0)
    dt = float(data.times[0, 2] - data.times[0, 0])
    draws = sample_future(data, subject=0, visit=0, dt=dt, n=3, nuisance=False)
    assert draws.images.shape == (3, 32, 32) and draws.time == pytest.approx(data.times[0, 2])
    for k in range(3):
        np.testing.assert_array_equal(draws.masks[k], data.masks[0, 2])
        np.testing.assert_array_equal(draws.images[k], draws.images[0])
    noisy = sample_future(data, subject=0, visit=0, dt=dt, n=2, seed=1)
    assert not np.array_equal(noisy.images[0], noisy.images[1])  # fresh acquisition noise
    np.testing.assert_array_equal(noisy.lesion_area, draws.lesion_area[:2])


def test_ms_futures_keep_the_past_and_redraw_new_lesions_at_the_true_rate(small_config):
    config = small_config("ms", n_subjects=1)
    data = generate(config, seed=2)
    law, state = make_law(config), data.subject_state(0)
    t_obs, dt, n = float(data.times[0, 1]), 24.0, 300
    rng = np.random.default_rng(0)
    past = state.events["birth"][state.events["birth"] <= t_obs]
    counts = []
    for _ in range(n):
        future = law.redraw_future(state, t_obs, t_obs + dt, rng)
        born = future.events["birth"]
        np.testing.assert_array_equal(born[born <= t_obs], past)
        counts.append(int(((born > t_obs) & (born <= t_obs + dt)).sum()))
    mean = state.params["rate"] * dt
    assert abs(np.mean(counts) - mean) < 4 * np.sqrt(mean / n)
    assert abs(np.var(counts) - mean) < 0.35 * mean  # Poisson: variance equals mean


def test_sample_future_is_seeded_and_validates(small_config):
    data = generate(small_config("ms", n_subjects=2), seed=1)
    a = sample_future(data, 1, 0, 12.0, n=4, seed=3)
    b = sample_future(data, 1, 0, 12.0, n=4, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.lesion_area, b.lesion_area)
    with pytest.raises(ValueError, match="dt: expected a positive number"):
        sample_future(data, 0, 0, 0.0, n=1)
    with pytest.raises(ValueError, match="visit: expected 0 <= visit"):
        sample_future(data, 0, 99, 1.0, n=1)
    with pytest.raises(ValueError, match="subject: expected"):
        sample_future(data, 5, 0, 1.0, n=1)
