"""Lesion metrics against *ground-truth* masks: Dice, exact HD95, area error, and the fixed rule
that turns a forecast image into a predicted lesion (or change) mask.

Masks are batches ``(B, H, W)`` (or ``(B, 1, H, W)``) of booleans; every metric returns ``(B,)``
float64. The reference code scored ``segmentor(prediction)`` against ``segmentor(true image)``;
here the prediction's mask is scored against the generator's (or the annotators') mask itself.

Empty masks. Dice is 1 when both masks are empty and 0 when exactly one is. HD95 is 0 when both
are empty and NaN (undefined, reported as a count) when exactly one is: no distance penalty is
invented (the reference code used the image diagonal).

HD95 is exact: the boundary of a mask is its pixels with a 4-neighbour outside it (the image
border counts as outside); the Euclidean distance from every boundary pixel of one mask to the
nearest boundary pixel of the other comes from a distance transform (``scipy.ndimage.
distance_transform_edt``, in units of ``spacing``); HD95 is the larger of the two directed 95th
percentiles (numpy's linear interpolation), as MONAI computes it.

Predicted mask rule (:func:`predicted_lesion_mask`). Every method's forecast is segmented the
same way, relative to the input visit whose lesion mask is known at forecast time. The change map
is the channel-mean forecast minus input, Gaussian-smoothed over ``smooth_px`` pixels (so pixel
noise does not count) and, for a ``relative`` rule, divided by the equally smoothed input
(floored at :data:`RELATIVE_FLOOR`; a multiplicative lesion such as atrophy, I = B·(1 − c·m),
then reads the same on dark and bright background, and a global gain drift stays small). A pixel
outside the input's lesion becomes lesion when the change exceeds ``threshold`` in the lesion's
direction (darker for geographic atrophy, brighter for MS lesions and tumour edema); a pixel
inside it stays lesion unless ``regression`` is allowed and the change exceeds ``threshold`` the
other way (MS lesions partly resolve; atrophy and tumour do not). Copy-forward therefore predicts
exactly the input's mask. For change masks (real MS pairs) the predicted change is where the
absolute change exceeds the threshold (:func:`predicted_change_mask`). The defaults per SynthProg
kind (:data:`LESION_RULES`) were chosen on the true target images of 40 generated subjects
(64 px, real backgrounds), where they give Dice ≈ 0.92 (GA), 0.58 (MS: small jittered lesions)
and 0.68 (tumour) against the generator's masks; the benchmark reports this ceiling
(:data:`CHANGE_RULE` for the real pairs reaches far less).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from sciflow_domains.medical.metrics import as_images, as_masks
from scipy import ndimage

POLARITIES = ("darker", "brighter", "any")


#: Smallest input intensity a relative change is divided by.
RELATIVE_FLOOR = 0.05


@dataclass(frozen=True)
class LesionRule:
    """How a forecast image becomes a lesion mask (module docstring).

    Attributes:
        polarity: direction in which lesion pixels change intensity: ``"darker"``,
            ``"brighter"`` or ``"any"`` (absolute change).
        regression: whether input lesion pixels may leave the lesion (changing by more than
            ``threshold`` against ``polarity``; no effect with ``"any"``).
        threshold: the change that counts: intensity units ([0, 1] images), or a fraction of
            the input intensity when ``relative``.
        relative: divide the change by the (smoothed) input intensity.
        smooth_px: standard deviation of the Gaussian smoothing of the change map, pixels (0:
            none).
    """

    polarity: str
    regression: bool
    threshold: float = 0.1
    relative: bool = False
    smooth_px: float = 0.0

    def __post_init__(self) -> None:
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity: expected one of {POLARITIES}, got {self.polarity!r}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold: expected a number in (0, 1), got {self.threshold!r}")
        if not self.smooth_px >= 0:
            raise ValueError(f"smooth_px: expected >= 0 pixels, got {self.smooth_px!r}")


#: The rule per SynthProg kind: GA is hypo-intense (multiplicative) and only grows; MS lesions
#: are hyper-intense (additive) and shrink to 70 % after their peak; tumours enter as
#: hyper-intense edema and never recede.
LESION_RULES = {
    "ga": LesionRule("darker", regression=False, threshold=0.3, relative=True, smooth_px=1.0),
    "ms": LesionRule("brighter", regression=True, threshold=0.2, smooth_px=1.0),
    "tumour": LesionRule("brighter", regression=False, threshold=0.15, smooth_px=1.0),
}


#: The rule for change masks (real MS pairs): an absolute change beyond 0.15. Their change regions
#: are small (about 9 pixels per 64 px slice) and misregistration moves pixels outside them by as
#: much, so even the true second visit read this way reaches Dice ≈ 0.12 on slices with change.
CHANGE_RULE = LesionRule("any", regression=False, threshold=0.15)


def lesion_rule(kind: str, **overrides) -> LesionRule:
    """The :data:`LESION_RULES` entry of a SynthProg ``kind`` with fields replaced by
    ``overrides`` (``threshold``, ``relative``, ``smooth_px``, …)."""
    if kind not in LESION_RULES:
        raise ValueError(f"kind: expected one of {sorted(LESION_RULES)}, got {kind!r}")
    return dataclasses.replace(LESION_RULES[kind], **overrides)


def _signed_change(pred, image_in, rule: LesionRule) -> np.ndarray:
    """(B, H, W) change map from input to forecast (module docstring), positive in the lesion
    direction (absolute for polarity ``"any"``)."""
    pred, image_in = as_images(pred, "pred"), as_images(image_in, "image_in")
    if pred.shape != image_in.shape:
        raise ValueError(f"pred, image_in: shapes differ, {pred.shape} vs {image_in.shape}")
    change, base = (pred - image_in).mean(axis=1), image_in.mean(axis=1)
    if rule.smooth_px > 0:
        sigma = (0, rule.smooth_px, rule.smooth_px)
        change = ndimage.gaussian_filter(change, sigma, mode="nearest")
        base = ndimage.gaussian_filter(base, sigma, mode="nearest")
    if rule.relative:
        change = change / np.maximum(base, RELATIVE_FLOOR)
    if rule.polarity == "darker":
        return -change
    if rule.polarity == "brighter":
        return change
    return np.abs(change)


def predicted_lesion_mask(pred, image_in, mask_in, rule: LesionRule) -> np.ndarray:
    """(B, H, W) bool lesion mask of a forecast (module docstring).

    Args:
        pred, image_in: (B, C, H, W) forecast and input visit, intensities in [0, 1].
        mask_in: (B, H, W) or (B, 1, H, W) lesion mask of the input visit.
        rule: how changes are read.
    """
    change = _signed_change(pred, image_in, rule)
    known = as_masks(mask_in, "mask_in", change.shape)
    appears = ~known & (change > rule.threshold)
    if not rule.regression:
        return known | appears
    recedes = known & (-change > rule.threshold)  # never with polarity "any" (change >= 0)
    return (known & ~recedes) | appears


def predicted_change_mask(pred, image_in, rule: LesionRule) -> np.ndarray:
    """(B, H, W) bool: pixels whose change map (``rule``, module docstring) exceeds the
    threshold; (B, C, H, W) ``pred`` and ``image_in``."""
    return _signed_change(pred, image_in, rule) > rule.threshold


def _mask_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    size = tuple(np.shape(a))
    if len(size) not in (3, 4):
        raise ValueError(f"pred_mask: expected (B, H, W) or (B, 1, H, W), got shape {size}")
    shape = (size[0], *size[-2:])
    return as_masks(a, "pred_mask", shape), as_masks(b, "true_mask", shape)


def dice(pred_mask, true_mask) -> np.ndarray:
    """(B,) Dice 2|A∩B| / (|A| + |B|); 1 when both masks are empty."""
    a, b = _mask_pair(pred_mask, true_mask)
    inter = (a & b).reshape(len(a), -1).sum(axis=1)
    total = a.reshape(len(a), -1).sum(axis=1) + b.reshape(len(b), -1).sum(axis=1)
    return np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 1.0)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a bool mask (H, W) with a 4-neighbour outside it (outside the image counts)."""
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def _directed(source: np.ndarray, target: np.ndarray, spacing) -> np.ndarray:
    """Distances from every ``source`` boundary pixel to the nearest ``target`` boundary pixel."""
    distance = ndimage.distance_transform_edt(~target, sampling=spacing)
    return distance[source]


def hd95(pred_mask, true_mask, spacing: tuple[float, float] | None = None) -> np.ndarray:
    """(B,) exact 95th-percentile symmetric Hausdorff distance between mask boundaries.

    ``spacing``: pixel size (rows, columns); default 1, i.e. pixels. 0 when both masks are
    empty, NaN when exactly one is (module docstring).
    """
    a, b = _mask_pair(pred_mask, true_mask)
    out = np.zeros(len(a))
    for i in range(len(a)):
        empty_a, empty_b = not a[i].any(), not b[i].any()
        if empty_a or empty_b:
            out[i] = 0.0 if empty_a and empty_b else np.nan
            continue
        edge_a, edge_b = boundary(a[i]), boundary(b[i])
        forward = np.percentile(_directed(edge_a, edge_b, spacing), 95)
        backward = np.percentile(_directed(edge_b, edge_a, spacing), 95)
        out[i] = max(forward, backward)
    return out


def area_error(pred_mask, true_mask) -> np.ndarray:
    """(B,) absolute difference of the mask areas, in pixels."""
    a, b = _mask_pair(pred_mask, true_mask)
    size_a = a.reshape(len(a), -1).sum(axis=1)
    size_b = b.reshape(len(b), -1).sum(axis=1)
    return np.abs(size_a - size_b).astype(np.float64)
