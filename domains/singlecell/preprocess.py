"""Feature preprocessing of single-cell populations, fitted on training populations only.

A :class:`PreprocessConfig` lists the steps; :class:`Preprocessor` fits whatever has to be
fitted on the cells of the *training* populations and then transforms every cell (training and
held-out) with those fitted values, so that nothing about a held-out population leaks into the
features. The steps, in this order, each off unless configured:

1. ``normalize_total`` (RNA): scale each cell to ``target_sum`` total counts
   (``scanpy.pp.normalize_total``). ``target_sum=None`` uses the median total count of the
   *training* cells (scanpy would take the median over whatever cells it is given).
2. ``log1p`` (RNA): ``scanpy.pp.log1p``.
3. ``arcsinh_cofactor`` (CyTOF / flow cytometry): ``arcsinh(x / cofactor)``, 5 for mass cytometry.
4. ``n_top_genes`` (RNA): highly variable features selected on the training cells
   (``scanpy.pp.highly_variable_genes`` with ``hvg_flavor``), then kept for every cell.
5. ``scale``: ``"feature"`` subtracts the training mean and divides by the training standard
   deviation of each feature; ``"shared"`` subtracts the per-feature training mean and divides
   every feature by one number, the mean of the per-feature training standard deviations (the
   MFM organoid convention, which keeps the relative spread of markers).
6. ``n_pcs``: PCA fitted on the training cells (``scanpy.pp.pca``); every cell is projected as
   ``(x − mean_train) @ PCs``.

Steps 1–3 act on each cell alone (no fitted values, except the default ``target_sum``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from scipy import sparse

Scale = Literal["none", "feature", "shared"]


@dataclass
class PreprocessConfig:
    """Which preprocessing steps to run (see the module docstring for their order)."""

    normalize_total: bool = False
    target_sum: float | None = None
    log1p: bool = False
    arcsinh_cofactor: float | None = None
    n_top_genes: int | None = None
    hvg_flavor: str = "seurat"
    scale: Scale = "none"
    n_pcs: int | None = None

    def __post_init__(self) -> None:
        if self.target_sum is not None and not self.target_sum > 0:
            raise ValueError(
                f"target_sum: expected None or a positive float, got {self.target_sum}"
            )
        if self.arcsinh_cofactor is not None and not self.arcsinh_cofactor > 0:
            raise ValueError(
                f"arcsinh_cofactor: expected None or a positive float, got {self.arcsinh_cofactor}"
            )
        for name in ("n_top_genes", "n_pcs"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}: expected None or a positive int, got {value!r}")
        if self.scale not in ("none", "feature", "shared"):
            raise ValueError(f"scale: expected 'none', 'feature' or 'shared', got {self.scale!r}")
        if self.arcsinh_cofactor is not None and (self.normalize_total or self.log1p):
            raise ValueError(
                "arcsinh_cofactor is the cytometry transform; it does not combine with "
                "normalize_total/log1p (the RNA transforms)"
            )

    @classmethod
    def cytof(cls, cofactor: float = 5.0, scale: Scale = "shared") -> PreprocessConfig:
        """Mass cytometry: ``arcsinh(x / cofactor)`` then ``scale`` (MFM: shared)."""
        return cls(arcsinh_cofactor=cofactor, scale=scale)

    @classmethod
    def rna(
        cls, n_top_genes: int | None = 2000, n_pcs: int | None = 50, target_sum=None
    ) -> PreprocessConfig:
        """scRNA-seq counts: normalise, log1p, HVG, PCA (the usual scanpy recipe)."""
        return cls(
            normalize_total=True,
            target_sum=target_sum,
            log1p=True,
            n_top_genes=n_top_genes,
            n_pcs=n_pcs,
        )

    @property
    def needs_genes(self) -> bool:
        """Whether a step only makes sense on a gene-count matrix (``X`` or a layer)."""
        return self.normalize_total or self.log1p or self.n_top_genes is not None


@dataclass
class Preprocessor:
    """A :class:`PreprocessConfig` plus the values fitted on training cells.

    Attributes (set by :meth:`fit`): ``target_sum`` (float or None), ``features_in`` (input
    feature names), ``keep`` (bool mask over ``features_in``, the HVG selection), ``mean`` and
    ``std`` (scaling, over kept features), ``pca_mean`` and ``components`` ((kept, n_pcs)).
    """

    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    target_sum: float | None = None
    features_in: list[str] | None = None
    keep: np.ndarray | None = None
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    pca_mean: np.ndarray | None = None
    components: np.ndarray | None = None

    @property
    def fitted(self) -> bool:
        return self.features_in is not None

    @property
    def features(self) -> list[str]:
        """Names of the output features: kept inputs, or ``PC1..PCk`` after PCA."""
        if not self.fitted:
            raise RuntimeError("Preprocessor: call fit() first")
        if self.components is not None:
            return [f"PC{i + 1}" for i in range(self.components.shape[1])]
        return [n for n, k in zip(self.features_in, self.keep, strict=True) if k]

    def _cellwise(self, x, target_sum: float | None):
        """Steps 1–3 (no fitted values apart from ``target_sum``) on a matrix ``x``."""
        cfg = self.config
        if cfg.normalize_total or cfg.log1p:
            import anndata
            import scanpy as sc

            adata = anndata.AnnData(x.astype(np.float32, copy=True))
            if cfg.normalize_total:
                sc.pp.normalize_total(adata, target_sum=target_sum)
            if cfg.log1p:
                sc.pp.log1p(adata)
            x = adata.X
        if cfg.arcsinh_cofactor is not None:
            x = x.toarray() if sparse.issparse(x) else x
            x = np.arcsinh(np.asarray(x, dtype=np.float32) / np.float32(cfg.arcsinh_cofactor))
        return x

    def fit(self, x, feature_names: Sequence[str]) -> Preprocessor:
        """Fit on the training cells ``x`` (cells, features), dense or scipy-sparse."""
        cfg = self.config
        names = [str(n) for n in feature_names]
        if x.shape[1] != len(names):
            raise ValueError(f"feature_names: expected {x.shape[1]} names, got {len(names)}")
        target_sum = cfg.target_sum
        if cfg.normalize_total and target_sum is None:
            totals = np.asarray(x.sum(axis=1)).ravel()
            target_sum = float(np.median(totals[totals > 0])) if np.any(totals > 0) else 1.0
        x = self._cellwise(x, target_sum)
        keep = np.ones(len(names), dtype=bool)
        if cfg.n_top_genes is not None and cfg.n_top_genes < len(names):
            import anndata
            import scanpy as sc

            adata = anndata.AnnData(x)
            adata.var_names = names
            sc.pp.highly_variable_genes(adata, n_top_genes=cfg.n_top_genes, flavor=cfg.hvg_flavor)
            keep = adata.var["highly_variable"].to_numpy(dtype=bool)
        x = _dense(x[:, keep])
        mean = std = None
        if cfg.scale != "none":
            mean = x.mean(0)
            per_feature = x.std(0)
            if cfg.scale == "feature":
                std = np.where(per_feature > 0, per_feature, 1.0)
            else:
                shared = float(per_feature.mean()) if per_feature.mean() > 0 else 1.0
                std = np.full_like(per_feature, shared)
            x = (x - mean) / std
        pca_mean = components = None
        if cfg.n_pcs is not None:
            import anndata
            import scanpy as sc

            if cfg.n_pcs >= min(x.shape):
                raise ValueError(
                    f"n_pcs: {cfg.n_pcs} principal components need more than {cfg.n_pcs} "
                    f"training cells and features, got {x.shape[0]} cells × {x.shape[1]} features"
                )
            adata = anndata.AnnData(x)
            sc.pp.pca(adata, n_comps=cfg.n_pcs, zero_center=True, random_state=0)
            components = np.asarray(adata.varm["PCs"], dtype=np.float32)
            pca_mean = x.mean(0)
        self.target_sum, self.features_in, self.keep = target_sum, names, keep
        self.mean, self.std = _f32(mean), _f32(std)
        self.pca_mean, self.components = _f32(pca_mean), components
        return self

    def transform(self, x) -> np.ndarray:
        """All steps with the fitted values: (cells, features_in) → (cells, len(features))."""
        if not self.fitted:
            raise RuntimeError("Preprocessor: call fit() on the training cells first")
        if x.shape[1] != len(self.features_in):
            raise ValueError(
                f"x: expected {len(self.features_in)} features, got {x.shape[1]} features"
            )
        x = _dense(self._cellwise(x, self.target_sum)[:, self.keep])
        if self.mean is not None:
            x = (x - self.mean) / self.std
        if self.components is not None:
            x = (x - self.pca_mean) @ self.components
        return np.ascontiguousarray(x, dtype=np.float32)

    def inverse_transform(self, y: np.ndarray) -> np.ndarray:
        """Map model-space values back through PCA (a reconstruction), scaling and arcsinh.

        Stops in the log1p/HVG space: normalisation and log1p are not undone, and the result
        has the kept features only (``len(keep.sum())`` columns).
        """
        if not self.fitted:
            raise RuntimeError("Preprocessor: call fit() first")
        x = np.asarray(y, dtype=np.float32)
        if self.components is not None:
            x = x @ self.components.T + self.pca_mean
        if self.std is not None:
            x = x * self.std + self.mean
        if self.config.arcsinh_cofactor is not None:
            x = np.sinh(x) * np.float32(self.config.arcsinh_cofactor)
        return x

    def state(self) -> dict:
        """Plain lists and numbers (for checkpoints); :meth:`from_state` rebuilds it."""
        arrays = ("keep", "mean", "std", "pca_mean", "components")
        out = {name: _to_list(getattr(self, name)) for name in arrays}
        out.update(
            config=asdict(self.config),
            target_sum=self.target_sum,
            features_in=self.features_in,
        )
        return out

    @classmethod
    def from_state(cls, state: dict) -> Preprocessor:
        dtype = {"keep": bool}
        arrays = {
            k: None if state[k] is None else np.asarray(state[k], dtype=dtype.get(k, np.float32))
            for k in ("keep", "mean", "std", "pca_mean", "components")
        }
        return cls(
            config=PreprocessConfig(**state["config"]),
            target_sum=state["target_sum"],
            features_in=state["features_in"],
            **arrays,
        )


def _dense(x) -> np.ndarray:
    x = x.toarray() if sparse.issparse(x) else np.asarray(x)
    return x.astype(np.float32, copy=False)


def _f32(x):
    return None if x is None else np.asarray(x, dtype=np.float32)


def _to_list(x):
    return None if x is None else np.asarray(x).tolist()
