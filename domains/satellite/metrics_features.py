"""Distribution distances on image features: Fréchet distance and KID, fed by any extractor.

The mathematics is written once and takes (n, d) feature arrays:

* :func:`frechet_distance`: ``|μ_a − μ_b|² + tr(C_a + C_b − 2 (C_a^½ C_b C_a^½)^½)`` between the
  Gaussians fitted to the two sets (unbiased covariances). The matrix square root is taken on
  the symmetric positive semi-definite ``C_a^½ C_b C_a^½`` through its eigenvalues (negative
  round-off clipped), which has the same trace as ``(C_a C_b)^½`` and stays real.
* :func:`kernel_distance` (KID): the unbiased MMD² with the cubic polynomial kernel
  ``k(x, y) = (x·y / d + 1)³``, averaged over random equal-size subsets (mean and std).

Which features go in decides the name. With the land-cover classifier trained here
(:mod:`.classifier`) the numbers are **FD-landcover / KID-landcover**, never "FID": they are only
comparable within this project, and are always reported beside a real-vs-real floor and a noise
ceiling (:func:`noise_images`). True FID/KID need the Inception network, whose weights no
package ships offline; :class:`ExternalFeatureNetwork` runs one the user supplies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sciflow_domains.satellite.metrics_images import model_space

VALUE_RANGES = ("0-255", "0-1", "-1-1")


def _features(name: str, x) -> np.ndarray:
    x = np.asarray(x.detach().cpu() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name}: expected (n >= 2, d) features, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    return x


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _features("a", a), _features("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a/b: feature dimensions differ, {a.shape[1]} vs {b.shape[1]}")
    return a, b


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a, b) -> float:
    """Fréchet distance between Gaussians fitted to features a (n, d) and b (m, d)."""
    a, b = _pair(a, b)
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False, ddof=1), np.cov(b, rowvar=False, ddof=1)
    cov_a, cov_b = np.atleast_2d(cov_a), np.atleast_2d(cov_b)
    root_a = _psd_sqrt(cov_a)
    product = root_a @ cov_b @ root_a
    cross = np.linalg.eigvalsh((product + product.T) / 2)
    trace_cross = np.sqrt(np.clip(cross, 0.0, None)).sum()
    value = ((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_cross
    return float(max(value, 0.0))


def _polynomial_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    n = len(x)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within - 2 * kxy.mean())


def kernel_distance(
    a, b, subset_size: int = 1000, num_subsets: int = 100, seed: int = 0
) -> tuple[float, float]:
    """KID: (mean, std) over ``num_subsets`` of the unbiased polynomial-kernel MMD² between
    random subsets of ``min(subset_size, n, m)`` rows of a and of b (drawn with ``seed``)."""
    a, b = _pair(a, b)
    if subset_size < 2 or num_subsets < 1:
        raise ValueError(
            f"subset_size/num_subsets: expected >= 2 and >= 1, got {subset_size}, {num_subsets}"
        )
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = [
        _polynomial_mmd2(
            a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)]
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def feature_distances(
    a, b, kid_subset_size: int = 1000, kid_subsets: int = 100, seed: int = 0
) -> dict[str, float]:
    """``{"fd", "kid", "kid_std", "n_a", "n_b"}`` between feature sets a and b."""
    a, b = _pair(a, b)
    kid, kid_std = kernel_distance(a, b, kid_subset_size, kid_subsets, seed)
    return {
        "fd": frechet_distance(a, b),
        "kid": kid,
        "kid_std": kid_std,
        "n_a": len(a),
        "n_b": len(b),
    }


@torch.no_grad()
def extract_features(
    network: Callable[[torch.Tensor], torch.Tensor], images, batch_size: int = 256
) -> np.ndarray:
    """(B, D) float64 features of a (B, 3, H, W) batch; ``network`` maps [-1, 1] float32 images
    (b, 3, H, W) to (b, ...) features (flattened here)."""
    x = model_space(images)
    out = [network(x[i : i + batch_size]).flatten(1).double() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def noise_images(reference, num: int, seed: int = 0) -> torch.Tensor:
    """The noise ceiling: (num, 3, H, W) float32 images of independent Gaussian pixels with the
    per-channel mean and standard deviation of ``reference`` (model space), clipped to [-1, 1]."""
    ref = model_space(reference).double()
    mean = ref.mean(dim=(0, 2, 3)).view(1, 3, 1, 1)
    std = ref.std(dim=(0, 2, 3)).view(1, 3, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((num, *ref.shape[1:]), generator=generator, dtype=torch.float64)
    return (mean + std * noise).clamp(-1.0, 1.0).float()


class ExternalFeatureNetwork:
    """A feature network the user supplies (e.g. Inception for true FID/KID), as a callable
    for :func:`extract_features`.

    Args:
        path: a ``torch.export`` program (``.pt2``), a TorchScript archive (``torch.jit.save``),
            or a whole pickled ``nn.Module`` (``torch.save(model)``). A bare state dict is
            refused: it holds no architecture.
        resolution: images are resized (bilinear) to this many pixels per side first.
        value_range: what the network expects, ``"0-255"``, ``"0-1"`` or ``"-1-1"``.
        call_kwargs: extra keyword arguments of each call (e.g. ``{"return_features": True}``
            for the TorchScript Inception of the StyleGAN metrics).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        resolution: int = 299,
        value_range: str = "0-255",
        call_kwargs: dict | None = None,
    ):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"fid_weights: no file at {path}")
        if value_range not in VALUE_RANGES:
            raise ValueError(f"value_range: expected one of {VALUE_RANGES}, got {value_range!r}")
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution: expected a positive int, got {resolution!r}")
        self.path, self.resolution, self.value_range = path, resolution, value_range
        self.call_kwargs = dict(call_kwargs or {})
        self.network = self._load(path)

    @staticmethod
    def _load(path: Path) -> torch.nn.Module:
        if path.suffix == ".pt2":
            return torch.export.load(str(path)).module()
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError:
            loaded = torch.load(path, map_location="cpu", weights_only=False)
        if isinstance(loaded, torch.nn.Module):
            return loaded.eval()
        raise ValueError(
            f"fid_weights: {path} holds a {type(loaded).__name__}, not a network; a state dict "
            "has no architecture: export the network (torch.export.save or torch.jit.save) and "
            "pass that file"
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(b, 3, H, W) [-1, 1] → (b, D) features."""
        x = F.interpolate(
            images, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False
        )
        if self.value_range == "0-255":
            x = (x + 1) * 127.5
        elif self.value_range == "0-1":
            x = (x + 1) / 2
        with torch.no_grad():
            out = self.network(x, **self.call_kwargs)
        if isinstance(out, tuple | list):
            out = out[0]
        return out.flatten(1)
