"""Satellite metrics: SSIM/PSNR against scikit-image and closed forms, colour/texture statistics,
Fréchet distance and KID against Gaussian closed forms, vegetation indices on hand-made pixels,
conditioning summaries, the land-cover classifier (learning, determinism, cache) and, with the
real data, its held-out accuracy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sciflow_domains.satellite.classifier import (
    ClassifierSettings,
    cache_key,
    load_or_train,
    tile_statistics,
    train_classifier,
)
from sciflow_domains.satellite.metrics import (
    ExternalFeatureNetwork,
    brightness,
    colour_distance,
    colour_moments,
    consecutive_ssim,
    direction_check,
    extract_features,
    feature_distances,
    frechet_distance,
    index_correlations,
    index_map,
    kernel_distance,
    landcover_accuracy,
    noise_images,
    paired_metrics,
    pearson,
    psnr,
    response_directions,
    rollout_errors,
    ssim,
    texture_distance,
    texture_statistics,
    vegetation_index,
    what_if_summary,
)
from scipy.linalg import sqrtm
from skimage.metrics import structural_similarity


def _random_uint8(seed: int, n: int = 3, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def _solid(rgb, size: int = 8) -> np.ndarray:
    """(1, 3, size, size) uint8 tile of one colour."""
    return np.broadcast_to(np.asarray(rgb, np.uint8)[None, :, None, None], (1, 3, size, size))


# -- paired -----------------------------------------------------------------------------------
def test_ssim_equals_scikit_image_with_the_ecomapper_settings_and_is_one_for_identical():
    a, b = _random_uint8(0), _random_uint8(1)
    b[:, :, :8] = a[:, :, :8]  # partly similar, so the value is not near 0
    expected = [
        structural_similarity(
            x.transpose(1, 2, 0), y.transpose(1, 2, 0), win_size=7, channel_axis=-1, data_range=255
        )
        for x, y in zip(a, b, strict=True)
    ]
    np.testing.assert_allclose(ssim(a, b), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ssim(a, a), 1.0, atol=1e-12)


def test_float_images_are_scored_as_their_uint8_rounding():
    x = torch.rand(2, 3, 12, 12) * 2 - 1
    as_uint8 = np.round((x.numpy() + 1) * 127.5).astype(np.uint8)
    ref = _random_uint8(3, n=2, size=12)
    np.testing.assert_array_equal(ssim(x, ref), ssim(as_uint8, ref))
    np.testing.assert_array_equal(psnr(x, ref), psnr(as_uint8, ref))


def test_psnr_of_a_known_mse_and_infinite_for_identical_tiles():
    real = np.full((1, 3, 8, 8), 100, np.uint8)
    generated = real.copy()
    generated[..., ::2] += 4  # half the pixels off by 4, the other half by 0: MSE = 8
    generated[..., 1::2] -= 0
    assert psnr(generated, real)[0] == pytest.approx(10 * np.log10(255**2 / 8.0), rel=1e-12)
    assert psnr(real, real)[0] == np.inf


def test_image_checks_name_the_argument():
    with pytest.raises(ValueError, match="generated/real: shapes differ"):
        ssim(_random_uint8(0, size=16), _random_uint8(0, size=12))
    with pytest.raises(ValueError, match=r"must lie in \[-1, 1\]"):
        psnr(np.full((1, 3, 8, 8), 200.0), _random_uint8(0, 1, 8))
    with pytest.raises(ValueError, match="at least 7 x 7"):
        ssim(_random_uint8(0, size=6), _random_uint8(1, size=6))


def test_colour_moments_of_hand_made_tiles():
    flat = colour_moments(_solid([51, 102, 255]))[0]
    np.testing.assert_allclose(flat[:3], [0.2, 0.4, 1.0])
    np.testing.assert_allclose(flat[3:], 0.0, atol=1e-12)  # no spread, no skew
    tile = np.zeros((1, 3, 4, 4), np.uint8)
    tile[0, 0, 0, 0] = 255  # red: one bright pixel of 16, a right-skewed channel
    moments = colour_moments(tile)[0]
    p = 1 / 16
    assert moments[0] == pytest.approx(p)
    assert moments[3] == pytest.approx(np.sqrt(p * (1 - p)))
    assert moments[6] == pytest.approx((1 - 2 * p) / np.sqrt(p * (1 - p)))
    shuffled = tile.reshape(1, 3, -1)[..., np.random.default_rng(0).permutation(16)]
    assert colour_distance(shuffled.reshape(tile.shape), tile)[0] == pytest.approx(0.0, abs=1e-12)


def test_texture_statistics_of_stripes_and_their_invariance_to_rotation():
    assert np.all(texture_statistics(_solid([90, 90, 90])) == 0.0)
    stripes = np.zeros((1, 3, 8, 8), np.uint8)
    stripes[..., ::2] = 255  # vertical stripes of luminance 1 and 0
    grad_full, grad_half, laplacian = texture_statistics(stripes)[0]
    assert grad_full == pytest.approx(1.0)  # every horizontal difference is ±1, vertical 0
    assert grad_half == pytest.approx(0.0)  # 2 x 2 pooling averages the stripes out
    assert laplacian == pytest.approx(4.0)  # ±2 at every interior pixel
    rotated = np.rot90(stripes, 1, axes=(2, 3)).copy()
    np.testing.assert_allclose(texture_statistics(rotated), texture_statistics(stripes))
    assert texture_distance(rotated, stripes)[0] == pytest.approx(0.0, abs=1e-12)
    assert texture_distance(_solid([90, 90, 90]), stripes)[0] > 1.0


def test_paired_metrics_has_one_value_per_pair():
    a, b = _random_uint8(5, n=4), _random_uint8(6, n=4)
    values = paired_metrics(a, b)
    assert set(values) == {"ssim", "psnr", "colour_distance", "texture_distance"}
    assert all(v.shape == (4,) for v in values.values())


# -- Fréchet distance and KID -----------------------------------------------------------------
def _gaussian_fd(m1, c1, m2, c2) -> float:
    cross = sqrtm(c1 @ c2).real
    return float(np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * cross))


def test_frechet_distance_of_gaussian_samples_approaches_the_closed_form():
    rng = np.random.default_rng(0)
    m1, m2 = np.zeros(3), np.array([1.0, -0.5, 0.2])
    c1 = np.array([[1.0, 0.3, 0.0], [0.3, 0.8, 0.1], [0.0, 0.1, 0.5]])
    c2 = np.diag([2.0, 0.5, 1.5])
    x = rng.multivariate_normal(m1, c1, size=40_000)
    y = rng.multivariate_normal(m2, c2, size=40_000)
    assert frechet_distance(x, y) == pytest.approx(_gaussian_fd(m1, c1, m2, c2), rel=0.03)
    # exactly the closed form of the empirical moments
    empirical = _gaussian_fd(x.mean(0), np.cov(x.T), y.mean(0), np.cov(y.T))
    assert frechet_distance(x, y) == pytest.approx(empirical, rel=1e-9)


def test_frechet_distance_is_zero_for_identical_sets_and_symmetric():
    x = np.random.default_rng(1).normal(size=(50, 8))
    y = np.random.default_rng(2).normal(size=(60, 8)) + 0.3
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, y) == pytest.approx(frechet_distance(y, x), rel=1e-9)
    with pytest.raises(ValueError, match="feature dimensions differ"):
        frechet_distance(x, y[:, :4])


def test_kid_is_the_unbiased_polynomial_mmd_and_near_zero_for_one_distribution():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    k = lambda u, v: (u @ v.T / 2 + 1) ** 3  # noqa: E731
    kaa, kbb = k(a, a), k(b, b)
    expected = (
        (kaa.sum() - np.trace(kaa)) / 12 + (kbb.sum() - np.trace(kbb)) / 12 - 2 * k(a, b).mean()
    )
    assert kernel_distance(a, b, subset_size=4, num_subsets=1)[0] == pytest.approx(expected)
    same = kernel_distance(rng.normal(size=(600, 6)), rng.normal(size=(600, 6)), 200, 50)
    shifted = kernel_distance(rng.normal(size=(600, 6)), rng.normal(size=(600, 6)) + 0.5, 200, 50)
    assert abs(same[0]) < 3 * same[1] / np.sqrt(50) + 1e-3
    assert shifted[0] > 20 * max(abs(same[0]), 1e-4)


def test_feature_distances_reports_both_and_the_sample_sizes():
    rng = np.random.default_rng(4)
    out = feature_distances(rng.normal(size=(30, 4)), rng.normal(size=(20, 4)), 10, 5)
    assert set(out) == {"fd", "kid", "kid_std", "n_a", "n_b"}
    assert (out["n_a"], out["n_b"]) == (30, 20)


def test_noise_images_follow_the_reference_colour_and_stay_in_range():
    reference = np.zeros((20, 3, 8, 8), np.float32)
    reference[:, 1] = np.random.default_rng(0).normal(0.2, 0.1, size=(20, 8, 8))
    noise = noise_images(reference, 400, seed=1)
    assert noise.shape == (400, 3, 8, 8) and noise.abs().max() <= 1.0
    assert noise[:, 1].mean().item() == pytest.approx(0.2, abs=0.01)
    assert noise[:, 0].abs().max().item() == 0.0  # a constant channel has no spread
    assert torch.equal(noise, noise_images(reference, 400, seed=1))


class _MeanColour(torch.nn.Module):
    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return x.mean(dim=(2, 3)) * scale


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_external_feature_network_runs_exported_networks_and_refuses_a_state_dict(tmp_path):
    images = torch.full((2, 3, 8, 8), 0.5)  # model space 0.5 → 0.75 in [0, 1]
    scripted = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(_MeanColour()), scripted)
    net = ExternalFeatureNetwork(scripted, resolution=4, value_range="0-1")
    np.testing.assert_allclose(extract_features(net, images), 0.75, rtol=1e-6)
    exported = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(_MeanColour(), (torch.rand(2, 3, 4, 4),)), exported)
    net = ExternalFeatureNetwork(exported, resolution=4, value_range="0-255")
    np.testing.assert_allclose(extract_features(net, images), 0.75 * 255, rtol=1e-6)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="state dict has no architecture"):
        ExternalFeatureNetwork(tmp_path / "weights.pt")
    with pytest.raises(FileNotFoundError, match="fid_weights"):
        ExternalFeatureNetwork(tmp_path / "missing.pt")


# -- vegetation indices -----------------------------------------------------------------------
def test_indices_on_hand_made_pixels_with_safe_denominators():
    green = _solid([51, 153, 51])  # R, G, B = 0.2, 0.6, 0.2
    assert vegetation_index(green, "gli")[0] == pytest.approx(0.8 / 1.6)
    assert vegetation_index(green, "exg")[0] == pytest.approx(0.8 / 1.0)
    assert vegetation_index(green, "vari")[0] == pytest.approx(0.4 / 0.6)
    black = _solid([0, 0, 0])
    assert [vegetation_index(black, n)[0] for n in ("gli", "exg", "vari")] == [0.0, 0.0, 0.0]
    balanced = _solid([51, 102, 153])  # G + R - B = 0: VARI's denominator vanishes
    assert vegetation_index(balanced, "vari")[0] == 0.0
    nearly = _solid([50, 102, 153])  # G + R - B = -1/255: VARI = -204 before clipping
    assert vegetation_index(nearly, "vari")[0] == -1.0
    assert brightness(_solid([255, 255, 255]))[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="index: expected one of"):
        index_map(green, "ndvi")


def test_pearson_is_nan_for_constant_samples():
    assert np.isnan(pearson([1, 1, 1, 1], [1, 2, 3, 4]))
    assert pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)


# -- conditioning -----------------------------------------------------------------------------
class _Stub:
    classes = [0, 1, 2, 3]

    def __init__(self, predicted):
        self.predicted = np.asarray(predicted)

    def predict(self, images):
        return self.predicted

    def accuracy(self, images, labels):
        return float((self.predicted == np.asarray(labels)).mean())


def test_landcover_accuracy_and_its_references():
    requested = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    predicted = np.array([0, 1, 2, 3, 0, 1, 0, 0])
    out = landcover_accuracy(
        _Stub(predicted),
        _random_uint8(0, 8, 8),
        requested,
        real=_random_uint8(1, 8, 8),
        real_labels=predicted,
        seed=0,
    )
    assert out["generated"] == 0.75 and out["chance"] == 0.25 and out["real_heldout"] == 1.0
    shuffled = np.random.default_rng(0).permutation(requested)
    assert out["shuffled_labels"] == float((predicted == shuffled).mean())


def _greens(levels) -> np.ndarray:
    """Tiles whose GLI rises with ``levels`` (0..1)."""
    return np.stack([_solid([100, int(100 + 100 * v), 100])[0] for v in levels])


def test_index_correlations_of_identical_sets():
    rng = np.random.default_rng(0)
    levels = rng.random(10)
    climate = np.stack([20 * levels, 5 * levels, rng.random(10)], axis=1)
    out = index_correlations(_greens(levels), _greens(levels), climate, "gli")
    assert out["r_real_generated"] == pytest.approx(1.0)
    assert out["r_precipitation"]["real"] == pytest.approx(out["r_precipitation"]["generated"])
    assert out["r_precipitation"]["real"] > 0.99


def test_what_if_directions_follow_the_real_data():
    """Class 0 greens with rain in the real data; a what-if that greens passes, one that browns
    fails; class 1 (no response in the data) is not tested."""
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 8, 12)
    real = np.concatenate([_greens(p / 8), _greens(np.full(12, 0.5))])
    climate = np.stack([np.full(24, 10.0), np.concatenate([p, p]), np.full(24, 15.0)], axis=1)
    directions = response_directions(real, climate, np.repeat([0, 1], 12), "gli")
    assert directions[0]["index"]["precipitation"] > 0.99
    assert np.isnan(directions[1]["index"]["precipitation"])  # constant tiles
    values = [0.0, 4.0, 8.0]
    greening = np.stack([_greens([v / 8, 0.5]) for v in values])  # (V, B=2, 3, 8, 8)
    summary = what_if_summary(greening, values, np.array([0, 1]), "gli")
    assert (
        summary["per_class"][0]["delta_index"] > 0 and summary["per_class"][1]["delta_index"] == 0
    )
    check = direction_check(directions, summary, "precipitation", "index", +1)
    assert check["classes"] == [0] and check["passed"] and check["agree"] == 1.0
    delta = summary["per_class"][0]["delta_index"]
    weak = direction_check(directions, summary, "precipitation", "index", +1, min_delta=delta)
    assert weak["passed"] is False and weak["agree"] == 1.0  # right sign, too small
    browning = what_if_summary(greening[::-1], values, np.array([0, 1]), "gli")
    assert not direction_check(directions, browning, "precipitation", "index", +1)["passed"]
    reversed_values = what_if_summary(greening[::-1], values[::-1], np.array([0, 1]), "gli")
    assert reversed_values["per_class"][0]["delta_index"] == summary["per_class"][0]["delta_index"]
    none = direction_check(directions, summary, "temperature", "brightness", -1)
    assert none["classes"] == [] and none["passed"] is None


def test_series_metrics():
    frames = _random_uint8(7, n=4, size=12)
    errors = rollout_errors(frames, frames)
    np.testing.assert_allclose(errors["ssim"], 1.0)
    assert np.all(errors["psnr"] == np.inf)
    still = np.repeat(frames[:1], 3, axis=0)
    np.testing.assert_allclose(consecutive_ssim(still), 1.0)
    assert consecutive_ssim(frames).shape == (3,)
    with pytest.raises(ValueError, match="at least 2 frames"):
        consecutive_ssim(frames[:1])


# -- classifier -------------------------------------------------------------------------------
COLOURS = {3: (40, 120, 40), 7: (150, 120, 80), 11: (200, 200, 210)}


def _coloured_tiles(n_per_class: int, seed: int, size: int = 16):
    """Colour-coded classes with pixel noise and random stripes: (N, 3, S, S) uint8, (N,) ids."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, colour in COLOURS.items():
        base = np.asarray(colour, np.float64)[None, :, None, None]
        tiles = base + rng.normal(0, 25, (n_per_class, 3, size, size))
        tiles[:, :, :, :: rng.integers(2, 5)] += 20
        images.append(np.clip(tiles, 0, 255).astype(np.uint8))
        labels += [label] * n_per_class
    return np.concatenate(images), np.array(labels)


FAST = ClassifierSettings(hidden=32, feature_dim=16, epochs=30, batch_size=16)


def test_classifier_learns_colour_coded_classes_and_is_deterministic():
    images, labels = _coloured_tiles(20, seed=0)
    model = train_classifier(images, labels, FAST)
    assert model.classes == [3, 7, 11]
    held_images, held_labels = _coloured_tiles(10, seed=1)
    assert model.accuracy(held_images, held_labels) >= 0.95
    assert model.features(torch.from_numpy(held_images)).shape == (30, 16)
    as_float = held_images.astype(np.float32) / 127.5 - 1.0  # the same pixels in model space
    np.testing.assert_array_equal(tile_statistics(as_float), tile_statistics(held_images))
    again = train_classifier(images, labels, FAST)
    for name, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    other = train_classifier(images, labels, dataclasses.replace(FAST, seed=1))
    assert not torch.equal(other.head.weight, model.head.weight)
    with pytest.raises(ValueError, match="trained on 16 px tiles"):
        model.predict(_coloured_tiles(1, seed=2, size=8)[0])


def test_classifier_cache_reads_back_the_same_model_and_keys_on_data_and_settings(tmp_path):
    images, labels = _coloured_tiles(10, seed=3)
    first, info = load_or_train(images, labels, FAST, tmp_path)
    assert not info["cached"] and info["path"] is not None
    second, info2 = load_or_train(images, labels, FAST, tmp_path)
    assert info2["cached"] and info2["key"] == info["key"]
    np.testing.assert_array_equal(first.features(images).detach(), second.features(images).detach())
    other_settings = dataclasses.replace(FAST, epochs=5)
    assert cache_key(images, labels, other_settings) != info["key"]
    changed = images.copy()
    changed[0, 0, 0, 0] ^= 1
    assert cache_key(changed, labels, FAST) != info["key"]
    assert [p.name for p in tmp_path.iterdir()] == [f"landcover_classifier_{info['key'][:16]}.pt"]


@pytest.mark.data
def test_real_classifier_recognises_held_out_decembers(real_root):
    """The benchmark's classifier on the example set (32 px, 4 x 4 crops, Decembers held out)
    reaches the accuracy the method notes report for real tiles (>= 0.8)."""
    from sciflow_domains.satellite.data import SatelliteDataModule

    torch.set_num_threads(1)
    module = SatelliteDataModule(root=str(real_root), size=32, crops_per_side=4)
    module.setup()

    def split(name):
        items = module.dataset(name).items
        images = np.stack([module.tiles.pixels[rec.key][crop] for rec, crop, _ in items])
        return images, np.array([rec.landcover for rec, _, _ in items])

    model = train_classifier(*split("train"), ClassifierSettings())
    test_images, test_labels = split("test")
    assert len(set(test_labels.tolist())) == 6
    assert model.accuracy(test_images, test_labels) >= 0.8
