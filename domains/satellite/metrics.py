"""Offline evaluation of generated satellite tiles: what can be computed honestly without
downloaded weights. Images are (B, 3, H, W) uint8 or [-1, 1] floats throughout.

* Paired, same place and month (:mod:`.metrics_paired`): SSIM with the EcoMapper settings
  (scikit-image, 7 x 7 window, uint8), PSNR on uint8, colour-moment and texture-statistic
  distances.
* Distributional (:mod:`.metrics_features`): Fréchet distance and KID written once for any
  feature extractor. With the land-cover classifier's features (:mod:`.classifier`) they are
  **FD-landcover / KID-landcover**, never "FID", and are reported beside a real-vs-real floor
  and a Gaussian-noise ceiling. True FID/KID only with a network the user supplies
  (:class:`ExternalFeatureNetwork`); no Inception, LPIPS or CLIP weights ship offline.
* Conditioning (:mod:`.metrics_conditioning`): land-cover accuracy of generated tiles with its
  references; vegetation indices from RGB (:mod:`.metrics_indices`: GLI, ExG, VARI) correlated
  between generated and real tiles and with the climate; climate what-if responses per land
  cover checked against the directions of the real data.
* Time series (:mod:`.metrics_series`): roll-out SSIM/PSNR per month, consecutive-frame SSIM.
"""

from sciflow_domains.satellite.classifier import (
    ClassifierSettings,
    LandCoverClassifier,
    load_or_train,
    tile_statistics,
    train_classifier,
)
from sciflow_domains.satellite.metrics_conditioning import (
    direction_check,
    index_correlations,
    landcover_accuracy,
    response_directions,
    what_if_summary,
)
from sciflow_domains.satellite.metrics_features import (
    ExternalFeatureNetwork,
    extract_features,
    feature_distances,
    frechet_distance,
    kernel_distance,
    noise_images,
)
from sciflow_domains.satellite.metrics_indices import (
    brightness,
    index_map,
    pearson,
    vegetation_index,
)
from sciflow_domains.satellite.metrics_paired import (
    PAIRED_METRICS,
    colour_distance,
    colour_moments,
    paired_metrics,
    psnr,
    ssim,
    summarise_paired,
    texture_distance,
    texture_statistics,
)
from sciflow_domains.satellite.metrics_series import consecutive_ssim, rollout_errors

__all__ = [
    "PAIRED_METRICS",
    "ClassifierSettings",
    "ExternalFeatureNetwork",
    "LandCoverClassifier",
    "brightness",
    "colour_distance",
    "colour_moments",
    "consecutive_ssim",
    "direction_check",
    "extract_features",
    "feature_distances",
    "frechet_distance",
    "index_correlations",
    "index_map",
    "kernel_distance",
    "landcover_accuracy",
    "load_or_train",
    "noise_images",
    "paired_metrics",
    "pearson",
    "psnr",
    "response_directions",
    "rollout_errors",
    "ssim",
    "summarise_paired",
    "texture_distance",
    "texture_statistics",
    "tile_statistics",
    "train_classifier",
    "vegetation_index",
    "what_if_summary",
]
