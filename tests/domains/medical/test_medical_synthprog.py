"""SynthProg: ground truth follows the stated laws, determinism, nuisances, storage, config."""

from pathlib import Path

import numpy as np
import pytest
from sciflow_domains.medical.synthprog import SynthProgConfig, SynthProgData, generate, make_law
from sciflow_domains.medical.synthprog.config import AtrophyParams, NuisanceParams, VisitParams
from sciflow_domains.medical.synthprog.generator import draw_visit_times
from sciflow_domains.medical.synthprog.ms_lesions import lesion_scale
from sciflow_domains.medical.synthprog.tumour import solve_fisher_kpp

ROOT = Path(__file__).resolve().parents[3]


def test_same_seed_same_cohort_and_subjects_independent_of_cohort_size(small_config):
    config = small_config("ms", n_subjects=4)
    a, b = generate(config, seed=5), generate(config, seed=5)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(generate(config, seed=6).images, a.images)
    bigger = generate(small_config("ms", n_subjects=6), seed=5)
    k = a.images.shape[1]
    np.testing.assert_array_equal(bigger.images[:4, :k], a.images)
    np.testing.assert_array_equal(bigger.times[:4, :k], a.times)


def test_cohort_arrays_follow_the_output_spec(small_config):
    data = generate(small_config("ga", n_subjects=10), seed=0)
    s, k, h, w = data.images.shape
    assert (s, h, w) == (10, 32, 32) and k == data.n_visits.max()
    assert data.images.dtype == np.float32 and data.masks.dtype == np.uint8
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    for i, n in enumerate(data.n_visits):
        assert 3 <= n <= 8 and data.times[i, 0] == 0.0
        assert np.all(np.diff(data.times[i, :n]) >= 0.5) and np.isnan(data.times[i, n:]).all()
    assert sorted(set(data.split)) == ["test", "train", "val"]
    assert list(np.unique(data.split, return_counts=True)[1]) == [2, 6, 2]  # test, train, val


def test_visit_gaps_have_the_configured_mean():
    rng = np.random.default_rng(0)
    params = VisitParams(min_visits=8, max_visits=8)
    gaps = np.concatenate([np.diff(draw_visit_times(rng, params, 6.0)) for _ in range(2000)])
    assert abs(gaps.mean() - (6.0 + 0.5)) < 0.15  # Gamma(2, 3) mean 6 plus the 0.5 offset


def test_atrophy_equivalent_radius_grows_at_the_configured_rate(small_config):
    config = small_config(
        "ga",
        n_subjects=12,
        resolution=64,
        ga=AtrophyParams(max_seeds=1, noise_amplitude_px=(0.0, 0.0)),
    )
    data, law = generate(config, seed=1), make_law(config)
    times = np.linspace(0.0, 36.0, 7)
    checked = 0
    for s in range(12):
        state = data.subject_state(s)
        _, labels = law.render(state, times)
        radius = np.sqrt(labels.reshape(len(times), -1).sum(1) / np.pi)
        law_radius = state.params["r0"] + state.params["growth"] * times
        inside = ~(labels[:, [0, -1]].any((1, 2)) | labels[:, :, [0, -1]].any((1, 2)))
        np.testing.assert_allclose(radius[inside], law_radius[inside], atol=0.5)
        checked += inside.sum()
    assert checked > 40


def test_atrophy_area_never_shrinks_with_the_full_lesion_field(small_config):
    config = small_config("ga", n_subjects=8)
    data, law = generate(config, seed=2), make_law(config)
    for s in range(8):
        _, labels = law.render(data.subject_state(s), np.linspace(0, 48, 13))
        area = labels.reshape(13, -1).sum(1)
        assert np.all(np.diff(area) >= 0)
        assert np.all(labels[1:] >= labels[:-1])  # the lesion only spreads


def test_ms_births_follow_the_poisson_rate(small_config):
    config = small_config("ms", n_subjects=60, resolution=32)
    data = generate(config, seed=3)
    window = np.nanmax(data.times, axis=1) + config.ms.history_months
    expected = float((data.params["rate"] * window).sum())
    observed = len(data.events["birth"])
    assert abs(observed - expected) < 4 * np.sqrt(expected)
    rates = data.params["rate"] * 12
    assert rates.min() >= 0.5 and rates.max() <= 2.0
    for s in range(60):
        births = data.events["birth"][data.events["subject"] == s]
        assert np.all((births > -config.ms.history_months) & (births <= window[s] - 24.0))


def test_ms_lesions_grow_then_resolve_to_the_residual_size(small_config):
    assert np.all(lesion_scale(np.array([-1.0, 0.0]), 1.5, 8.0, 0.7) == 0.0)
    ages = np.linspace(0.01, 200.0, 20000)
    scale = lesion_scale(ages, tau=1.5, tau_shrink=8.0, residual=0.7)
    peak = int(np.argmax(scale))
    assert np.all(np.diff(scale[: peak + 1]) > 0) and np.all(np.diff(scale[peak:]) < 0)
    assert ages[peak] < 4 * 1.5 and scale[peak] > 0.8  # near full size within a few tau
    assert abs(scale[-1] - 0.7) < 1e-6
    config = small_config("ms", n_subjects=1, resolution=64)
    law = make_law(config)
    state = generate(config, seed=0).subject_state(0)
    one = {k: v[:1] for k, v in state.events.items()}
    one.update(birth=np.array([0.0]), semi_a=np.array([6.0]), semi_b=np.array([4.0]))
    state.events = one
    _, labels = law.render(state, np.array([-1.0, 200.0]))
    assert labels[0].sum() == 0
    assert abs(labels[1].sum() - np.pi * 6 * 4 * 0.7**2) < 0.15 * np.pi * 6 * 4 * 0.7**2


def test_fisher_kpp_front_travels_at_two_sqrt_d_rho():
    d, rho, h, total = 0.1, 0.02, 0.5, 3000.0  # mm²/day, 1/day, mm, days (rho·t = 60)
    n = int(2.2 * 2 * np.sqrt(d * rho) * total / h) + 40
    u0 = np.zeros((3, n))
    u0[:, :10] = 1.0
    u = solve_fisher_kpp(u0, np.full(u0.shape, d), rho, h, np.array([total / 2, total]))
    fronts = [h * np.interp(0.5, u[k, 1, ::-1], np.arange(n)[::-1]) for k in range(2)]
    speed = (fronts[1] - fronts[0]) / (total / 2)
    # within 5 % (the pulled front approaches its speed from below, ≈ 3/(4·rho·t) ≈ 1.5 % here)
    assert abs(speed / (2 * np.sqrt(d * rho)) - 1) < 0.05
    assert u.min() >= 0 and u.max() <= 1


def test_fisher_kpp_keeps_mass_inside_the_domain_without_growth():
    rng = np.random.default_rng(0)
    domain = np.zeros((20, 20), bool)
    domain[3:15, 4:18] = True
    u0 = np.where(domain, rng.random((20, 20)), 0.0)
    u = solve_fisher_kpp(u0, rng.random((20, 20)), 0.0, 1.0, np.array([5.0, 50.0]), domain)
    np.testing.assert_allclose(u.sum((1, 2)), u0.sum(), rtol=1e-10)
    assert np.all(u[:, ~domain] == 0)
    with pytest.raises(ValueError, match="times: expected non-decreasing"):
        solve_fisher_kpp(u0, np.ones((20, 20)), 0.1, 1.0, np.array([2.0, 1.0]))


def test_tumour_grows_monotonically_on_the_brain(small_config):
    config = small_config("tumour", n_subjects=3)
    data, law = generate(config, seed=4), make_law(config)
    for s in range(3):
        state = data.subject_state(s)
        u = law.density(state, np.linspace(0, 24, 5))
        assert np.all(np.diff(u.sum((1, 2))) > 0)
        assert np.all(u[:, state.fields["gm"] + state.fields["wm"] <= 0.1] == 0)
    assert set(np.unique(data.masks)) <= {0, *law.labels}
    assert law.labels == {1: "edema", 2: "enhancing core", 3: "necrosis"}


def test_registered_removes_jitter_and_keeps_everything_else(small_config):
    base = small_config("ga", n_subjects=3)
    jittered = generate(base, seed=9)
    fixed = generate(small_config("ga", n_subjects=3, nuisance=NuisanceParams(registered=True)), 9)
    np.testing.assert_array_equal(jittered.times, fixed.times)
    np.testing.assert_array_equal(jittered.nuisance["gain"], fixed.nuisance["gain"])
    assert np.all(fixed.nuisance["rotation_deg"][~np.isnan(fixed.times)] == 0)
    law = make_law(base)
    for s in range(3):
        n = fixed.n_visits[s]
        _, clean = law.render(fixed.subject_state(s), fixed.times[s, :n])
        np.testing.assert_array_equal(fixed.masks[s, :n], clean)
    assert not np.array_equal(jittered.masks, fixed.masks)


def test_save_and_load_round_trip(small_config, tmp_path):
    data = generate(small_config("ms", n_subjects=3), seed=0)
    back = SynthProgData.load(data.save(tmp_path / "cohort.npz"))
    assert back.config == data.config and back.seed == 0 and back.background == "builtin"
    np.testing.assert_allclose(back.images, data.images, atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(back.masks, data.masks)
    np.testing.assert_array_equal(back.times, data.times)
    for group in ("params", "fields", "events", "nuisance"):
        for key, value in getattr(data, group).items():
            np.testing.assert_array_equal(getattr(back, group)[key], value)


def test_yaml_config_repeats_the_builtin_defaults():
    path = ROOT / "configs" / "medical" / "synthprog.yaml"
    assert SynthProgConfig.from_yaml(path) == SynthProgConfig()
    assert SynthProgConfig.from_yaml(path, kind="tumour", n_subjects=5).n_subjects == 5
    with pytest.raises(ValueError, match=r"config.ga: unknown key\(s\) \['speed'\]"):
        SynthProgConfig.from_dict({"ga": {"speed": 1.0}})
    with pytest.raises(ValueError, match="kind: expected one of"):
        SynthProgConfig(kind="cancer")


def test_auto_background_falls_back_to_the_builtin_phantom(no_data_dir):
    data = generate(SynthProgConfig(kind="ms", n_subjects=2, resolution=32), seed=0)
    assert data.background == "builtin"
    assert data.masks.any() or len(data.events["birth"]) == 0
    with pytest.raises(FileNotFoundError, match="sciflow data fetch backgrounds"):
        generate(SynthProgConfig(kind="ga", n_subjects=1, background="real"), seed=0)


def test_real_backgrounds_are_used_when_present(real_backgrounds):
    data = generate(SynthProgConfig(kind="ga", n_subjects=2, resolution=32), seed=0)
    assert data.background == "real"
    fovea = np.stack([data.params["fovea_row"], data.params["fovea_col"]], 1)
    assert np.all(np.abs(fovea - 15.5) < 6)  # crops are centred near the detected fovea
