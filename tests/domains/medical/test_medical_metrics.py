"""Medical metrics: data range, SSIM, region errors, gap bins, lesion Dice/HD95, calibration."""

import numpy as np
import pytest
import torch
from sciflow_domains.medical.metrics import (
    change_region,
    gap_bin_labels,
    gap_bins,
    mae,
    mse,
    psnr,
    ssim,
    stratify,
)
from sciflow_domains.medical.metrics_calibration import (
    crps,
    energy_distance,
    interval_coverage,
    randomised_pit,
)
from sciflow_domains.medical.metrics_lesion import (
    LesionRule,
    area_error,
    boundary,
    dice,
    hd95,
    predicted_change_mask,
    predicted_lesion_mask,
)
from sciflow_domains.medical.synthprog import generate, sample_future
from scipy.spatial.distance import cdist
from skimage.metrics import structural_similarity

LEVELS = (0.5, 0.8, 0.9)


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


# -- image metrics ---------------------------------------------------------------------------


def test_psnr_of_a_known_mse_uses_data_range_one():
    target = np.zeros((3, 1, 16, 16))
    offsets = np.array([0.1, 0.05, 0.3])
    pred = target + offsets[:, None, None, None]
    np.testing.assert_allclose(mse(pred, target), offsets**2)
    np.testing.assert_allclose(psnr(pred, target), 10 * np.log10(1 / offsets**2))
    # the reference code's data_range=2 on [0, 1] images inflates PSNR by 20·log10(2) dB
    inflated = psnr(pred, target, data_range=2.0) - psnr(pred, target)
    np.testing.assert_allclose(inflated, 20 * np.log10(2.0))
    assert psnr(target, target)[0] == np.inf


def test_ssim_equals_scikit_image_with_the_stated_window():
    rng = np.random.default_rng(0)
    target = rng.random((3, 2, 40, 33))
    pred = np.clip(target + 0.15 * rng.standard_normal(target.shape), 0, 1)
    ours = ssim(torch.as_tensor(pred), target)
    reference = [
        structural_similarity(
            target[i],
            pred[i],
            data_range=1.0,
            channel_axis=0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for i in range(3)
    ]
    np.testing.assert_allclose(ours, reference, atol=1e-12)
    np.testing.assert_allclose(ssim(target, target), 1.0)
    assert np.all(ssim(pred, target, data_range=2.0) > ours)  # a too large range inflates SSIM
    with pytest.raises(ValueError, match="SSIM needs H, W >= 11"):
        ssim(target[:, :, :8, :8], target[:, :, :8, :8])


def test_change_region_mae_on_a_constructed_example():
    size = 20
    mask_in = square(size, 5, 5, 6)[None]
    mask_target = square(size, 4, 4, 8)[None]  # grows by one pixel all round
    region = change_region(mask_in, torch.as_tensor(mask_target[:, None]))
    np.testing.assert_array_equal(region, mask_in ^ mask_target)
    assert region.sum() == 8 * 8 - 6 * 6
    target = np.full((1, 1, size, size), 0.5)
    target[0, 0][region[0]] = 0.2  # the ring darkened by 0.3
    target[0, 0][~region[0]] += 0.05  # and a small drift elsewhere
    pred = np.full_like(target, 0.5)  # copy-forward of a flat input
    np.testing.assert_allclose(mae(pred, target, region), [0.3])
    np.testing.assert_allclose(mae(pred, target, ~region), [0.05])
    overall = (0.3 * region.sum() + 0.05 * (~region).sum()) / size**2
    np.testing.assert_allclose(mae(pred, target), [overall])
    np.testing.assert_allclose(psnr(pred, target, region=region), 10 * np.log10(1 / 0.09))
    empty = np.zeros_like(region)
    assert np.isnan(mae(pred, target, empty)[0]) and np.isnan(psnr(pred, target, region=empty)[0])
    np.testing.assert_array_equal(change_region(None, mask_target, "change"), mask_target)
    with pytest.raises(ValueError, match="meaning"):
        change_region(mask_in, mask_target, "growth")


def test_gap_stratification_bins():
    edges = [0, 6, 12]
    assert gap_bin_labels(edges) == ["0–6", "6–12", "≥12"]
    dt = np.array([0.0, 5.9, 6.0, 11.99, 12.0, 40.0, 3.0])
    np.testing.assert_array_equal(gap_bins(dt, edges), [0, 0, 1, 1, 2, 2, 0])
    values = np.array([1.0, 3.0, 10.0, np.nan, 4.0, 8.0, 2.0])
    out = stratify(values, dt, edges)
    assert list(out) == ["0–6", "6–12", "≥12"]
    assert out["0–6"]["mean"] == pytest.approx(2.0) and out["0–6"]["n"] == 3
    assert out["0–6"]["sem"] == pytest.approx(1.0 / np.sqrt(3))
    assert out["6–12"] == {"mean": 10.0, "sem": out["6–12"]["sem"], "n": 1}  # NaN left out
    assert out["≥12"]["mean"] == pytest.approx(6.0)
    empty = stratify([1.0], [1.0], [0, 6, 12])
    assert empty["6–12"]["n"] == 0 and np.isnan(empty["6–12"]["mean"])
    with pytest.raises(ValueError, match="first edge"):
        gap_bins([-1.0], edges)
    with pytest.raises(ValueError, match="increasing"):
        gap_bins([1.0], [0, 6, 6])


# -- lesion metrics --------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_hd95_and_dice_of_two_squares_offset_by_k_pixels(k):
    side = 20
    a = square(40, 8, 8, side)
    b = square(40, 8, 8 + k, side)
    assert hd95(a[None], b[None])[0] == pytest.approx(k)
    assert dice(a[None], b[None])[0] == pytest.approx((side - k) / side)
    assert area_error(a[None], b[None])[0] == 0
    # rows twice as long as columns are wide: a shift along rows counts double
    c = square(40, 8 + k, 8, side)
    assert hd95(a[None], c[None], spacing=(2.0, 1.0))[0] == pytest.approx(2 * k)


def test_hd95_is_the_exact_95th_percentile_of_boundary_distances():
    rng = np.random.default_rng(3)
    size = 32
    rows, cols = np.mgrid[0:size, 0:size]
    blobs = []
    for _ in range(2):
        centre, radius = rng.uniform(10, 22, 2), rng.uniform(4, 9)
        blobs.append((rows - centre[0]) ** 2 + ((cols - centre[1]) * 1.3) ** 2 < radius**2)
    a, b = blobs
    pa, pb = np.argwhere(boundary(a)), np.argwhere(boundary(b))
    distance = cdist(pa, pb)
    brute = max(np.percentile(distance.min(1), 95), np.percentile(distance.min(0), 95))
    assert hd95(a[None], b[None])[0] == pytest.approx(brute)


def test_lesion_metrics_empty_mask_conventions():
    empty = np.zeros((1, 10, 10), dtype=bool)
    dot = empty.copy()
    dot[0, 0, 0] = True
    other = empty.copy()
    other[0, 3, 4] = True
    assert dice(empty, empty)[0] == 1.0 and hd95(empty, empty)[0] == 0.0
    assert dice(dot, empty)[0] == 0.0 and np.isnan(hd95(dot, empty)[0])
    assert hd95(dot, other)[0] == pytest.approx(5.0)  # single pixels 3, 4 apart
    assert area_error(dot, empty)[0] == 1.0


def test_predicted_lesion_mask_rule():
    size = 16
    mask_in = square(size, 4, 4, 4)[None]
    image = np.full((1, 1, size, size), 0.6)
    image[0, 0][mask_in[0]] = 0.2  # hypo-intense lesion (atrophy)
    rule = LesionRule("darker", regression=False, threshold=0.1)
    np.testing.assert_array_equal(predicted_lesion_mask(image, image, mask_in, rule), mask_in)
    grown = square(size, 3, 3, 6)[None]
    forecast = image.copy()
    forecast[0, 0][grown[0]] = 0.2
    forecast[0, 0, 12, 12] = 0.55  # below the threshold: not lesion
    np.testing.assert_array_equal(predicted_lesion_mask(forecast, image, mask_in, rule), grown)
    brighter = image.copy()
    brighter[0, 0][mask_in[0]] = 0.8  # the lesion brightens back
    np.testing.assert_array_equal(predicted_lesion_mask(brighter, image, mask_in, rule), mask_in)
    receding = LesionRule("darker", regression=True, threshold=0.1)
    assert not predicted_lesion_mask(brighter, image, mask_in, receding).any()
    change = predicted_change_mask(forecast, image, LesionRule("any", False, threshold=0.1))
    np.testing.assert_array_equal(change, grown & ~mask_in)
    with pytest.raises(ValueError, match="polarity"):
        LesionRule("up", regression=False)


def test_relative_and_smoothed_rules_read_multiplicative_lesions_and_ignore_noise():
    size = 12
    image = np.full((1, 1, size, size), 0.8)
    image[0, 0, :, : size // 2] = 0.2  # dark and bright background halves
    lesion = np.zeros((1, size, size), dtype=bool)
    lesion[0, 4:8, 2:10] = True  # straddles both halves
    forecast = image.copy()
    forecast[0, 0][lesion[0]] *= 0.6  # atrophy: I = B·(1 − c), c = 0.4
    none = np.zeros_like(lesion)
    relative = LesionRule("darker", False, threshold=0.3, relative=True)
    absolute = LesionRule("darker", False, threshold=0.15)
    np.testing.assert_array_equal(predicted_lesion_mask(forecast, image, none, relative), lesion)
    found = predicted_lesion_mask(forecast, image, none, absolute)
    assert not found[0, :, : size // 2].any() and found[0, :, size // 2 :].any()  # misses dark half
    drift = image * 0.9  # a 10 % gain drift is no lesion under the relative rule
    assert not predicted_lesion_mask(drift, image, none, relative).any()
    spike = image.copy()
    spike[0, 0, 2, 9] -= 0.3  # one noisy pixel
    assert predicted_lesion_mask(spike, image, none, absolute)[0, 2, 9]
    smoothed = LesionRule("darker", False, threshold=0.15, smooth_px=1.0)
    assert not predicted_lesion_mask(spike, image, none, smoothed).any()


# -- calibration ------------------------------------------------------------------------------


def _gaussian_law(rng, draws, mean, sd):
    return mean + sd * rng.standard_normal((draws, *np.shape(mean)))


def test_calibration_of_the_true_law_against_shifted_and_overconfident_samplers():
    rng = np.random.default_rng(0)
    mean = rng.random((24, 24))
    truth = _gaussian_law(rng, 40, mean, 0.1)
    exact = _gaussian_law(rng, 40, mean, 0.1)
    shifted = exact + 0.1
    narrow = _gaussian_law(rng, 40, mean, 0.03)
    coverage = {
        name: interval_coverage(randomised_pit(x, truth, rng), LEVELS)
        for name, x in (("exact", exact), ("shifted", shifted), ("narrow", narrow))
    }
    for level in LEVELS:
        assert coverage["exact"][level] == pytest.approx(level, abs=0.03)
        assert coverage["shifted"][level] < level - 0.1
        assert coverage["narrow"][level] < level - 0.3
    distances = {n: energy_distance(x, truth) for n, x in (("exact", exact), ("shifted", shifted))}
    assert abs(distances["exact"]) < 0.005 < 0.05 < distances["shifted"]
    # CRPS of N(μ, σ²) averaged over y ~ N(μ, σ²) is σ/√π
    assert crps(exact, truth) == pytest.approx(0.1 / np.sqrt(np.pi), rel=0.05)
    assert crps(shifted, truth) > crps(exact, truth) + 0.02
    assert crps(narrow, truth) > crps(exact, truth)


def test_randomised_pit_is_uniform_under_ties_and_crps_matches_pairs():
    rng = np.random.default_rng(1)
    zeros = np.zeros((8, 500))  # images clipped at 0: every value tied
    pit = randomised_pit(zeros, np.zeros((20, 500)), rng)
    assert pit.min() > 0 and pit.max() < 1
    for level, value in interval_coverage(pit, LEVELS).items():
        assert value == pytest.approx(level, abs=0.02)
    x, y = rng.random((6, 7)), rng.random((3, 7))
    pairs = np.abs(x[:, None] - x[None]).sum(axis=(0, 1)) / (6 * 5)
    brute = np.mean([np.abs(x - y[n]).mean() for n in range(3)]) - 0.5 * pairs.mean()
    assert crps(x, y) == pytest.approx(brute)
    assert crps(x[:1], y) == pytest.approx(np.abs(x[0] - y).mean())  # a point forecast: MAE
    with pytest.raises(ValueError, match="trailing shapes"):
        crps(x, y[:, :3])


def test_calibration_against_synthprog_true_predictive_law(small_config):
    """Futures from the law itself cover at the nominal level with energy distance near 0; a
    sampler shifted by +0.1 or shrunk towards its mean (overconfident) does worse."""
    data = generate(small_config("ms", n_subjects=3), seed=4)
    rng = np.random.default_rng(0)
    scores = {"exact": [], "shifted": [], "narrow": []}
    for subject in range(3):
        truth = sample_future(data, subject, 0, 18.0, 24, seed=1).images
        exact = sample_future(data, subject, 0, 18.0, 24, seed=2).images
        centre = exact.mean(axis=0, keepdims=True)
        samplers = {
            "exact": exact,
            "shifted": np.clip(exact + 0.1, 0, 1),
            "narrow": centre + 0.3 * (exact - centre),
        }
        for name, x in samplers.items():
            coverage = interval_coverage(randomised_pit(x, truth, rng), LEVELS)
            scores[name].append((coverage, energy_distance(x, truth)))
    coverage = {n: {a: np.mean([c[a] for c, _ in v]) for a in LEVELS} for n, v in scores.items()}
    energy = {n: np.mean([e for _, e in v]) for n, v in scores.items()}
    for level in LEVELS:
        assert coverage["exact"][level] == pytest.approx(level, abs=0.08)
        assert coverage["shifted"][level] < coverage["exact"][level] - 0.2
        assert coverage["narrow"][level] < level - 0.3
    assert abs(energy["exact"]) < 0.5 * energy["narrow"] < 0.5 * energy["shifted"]
