"""Push whole populations of control cells forward with a trained population flow.

    sampler = sciflow.load_sampler("runs/singlecell/mfm/checkpoints/last.ckpt")
    res = sampler.sample(source=adata_controls, condition="BCR-XL")   # every patient in obs
    treated = res.to_anndata()      # predicted cells, obs of the source cells carried over

The source is an AnnData (preprocessed with the preprocessing fitted at training time, split
into populations by the training ``population_key`` when that obs column is present), a
(cells, d) array already in the model's feature space (one population), or a dict of such
arrays (population name → cells). MFM embeds each population once from at most
``max_embed_cells`` of its cells and integrates dx/dt = v(x, t | φ(p0), c) from t = 0 to 1
starting at every source cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sciflow_domains.singlecell.nets import STATE_KEY
from sciflow_domains.singlecell.preprocess import Preprocessor

from sciflow.api import Sampler, SampleResult


@dataclass
class PopulationSamples(SampleResult):
    """Predicted cells of one or more populations under one condition.

    ``samples["x"]`` (M, d) predicted cells; ``source`` (M, d) the control cells they started
    from (row i → row i); ``index`` (M,) population of each row; ``populations`` their names;
    ``obs`` the source cells' obs table (AnnData input) in row order, else None.
    """

    source: torch.Tensor | None = None
    index: torch.Tensor | None = None
    populations: list[str] = field(default_factory=list)
    condition: str = ""
    features: list[str] = field(default_factory=list)
    obs: pd.DataFrame | None = None
    preprocessor: Preprocessor | None = None
    condition_key: str | None = None

    def cells(self, population: str | int) -> np.ndarray:
        """Predicted cells (n, d) of one population (by name or position)."""
        pos = population if isinstance(population, int) else self.populations.index(population)
        return self.samples[STATE_KEY][self.index == pos].numpy()

    def to_anndata(self, original_scale: bool = False):
        """An AnnData of the predicted cells: X in the model's feature space (``var_names`` =
        features), the source cells' obs (AnnData input) with the condition column set to the
        predicted condition, ``obs["population"]``, ``obs["source_cell"]`` (source obs name),
        and ``layers["source"]`` the starting control cells. ``original_scale`` maps X back
        through the fitted preprocessing (undoing scaling and arcsinh; PCA gives a
        reconstruction), with var names of the kept input features."""
        import anndata

        x = self.samples[STATE_KEY].numpy()
        source = self.source.numpy()
        var_names = list(self.features)
        if original_scale:
            if self.preprocessor is None:
                raise ValueError("original_scale: the model was trained without preprocessing")
            x, source = (self.preprocessor.inverse_transform(a) for a in (x, source))
            keep = self.preprocessor.keep
            var_names = [n for n, k in zip(self.preprocessor.features_in, keep, strict=True) if k]
        obs = pd.DataFrame(index=[f"predicted_{i}" for i in range(len(x))])
        if self.obs is not None:
            obs = self.obs.reset_index(names="source_cell")
            obs.index = [f"{name}_predicted" for name in obs["source_cell"]]
            if self.condition_key is not None:
                obs[self.condition_key] = self.condition
        obs["population"] = pd.Categorical([self.populations[i] for i in self.index.tolist()])
        obs["predicted_condition"] = self.condition
        adata = anndata.AnnData(X=x.astype(np.float32), obs=obs, var=pd.DataFrame(index=var_names))
        adata.layers["source"] = source.astype(np.float32)
        adata.uns["sciflow"] = {
            "condition": self.condition,
            "num_steps": self.metadata.get("num_steps"),
            "solver": self.metadata.get("solver"),
            "seed": self.metadata.get("seed"),
        }
        return adata

    def write(self, out_dir: str | os.PathLike) -> list[Path]:
        """``samples.npz`` and ``predicted.h5ad`` in ``out_dir`` (written atomically)."""
        paths = super().write(out_dir)
        path = Path(out_dir) / "predicted.h5ad"
        partial = path.with_name(f".{path.name}.partial")
        try:  # anndata writes by file name: write beside, then rename over the target
            self.to_anndata().write_h5ad(partial)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return [*paths, path]


class SingleCellSampler(Sampler):
    """Sampler of population flows (FM, CGFM, MFM); see the module docstring."""

    @property
    def info(self) -> dict:
        info = getattr(self.task, "data_info", None)
        if not info:
            raise ValueError(
                "this checkpoint has no single-cell data description; it was not trained with "
                "sciflow_domains.singlecell.task.SingleCellTask and PopulationDataModule"
            )
        return info

    def _condition_id(self, condition) -> tuple[int, str]:
        names = self.info["conditions"]
        if condition is None:
            if len(names) != 1:
                raise ValueError(f"condition: the model knows several conditions {names}; name one")
            return 0, names[0]
        if isinstance(condition, int) and 0 <= condition < len(names):
            return condition, names[condition]
        if str(condition) in names:
            return names.index(str(condition)), str(condition)
        raise ValueError(f"condition: {condition!r} is not one of the model's conditions {names}")

    def _from_anndata(self, adata, population_key: str | None):
        info = self.info
        rep = info.get("rep") or "X"
        preprocessor = info.get("preprocessor")
        if rep in adata.obsm:
            matrix = np.asarray(adata.obsm[rep], dtype=np.float32)
        else:
            if rep != "X" and rep not in adata.layers:
                raise ValueError(
                    f"source: the model reads representation {rep!r} (X, a layer or an obsm "
                    f"key), which this AnnData lacks; layers: {list(adata.layers)}, obsm: "
                    f"{list(adata.obsm)}"
                )
            table = adata.X if rep == "X" else adata.layers[rep]
            needed = Preprocessor.from_state(preprocessor).features_in if preprocessor else None
            needed = needed or info["features"]
            missing = [n for n in needed if n not in adata.var_names]
            if missing:
                raise ValueError(
                    f"source: AnnData lacks {len(missing)} feature(s) the model was trained on, "
                    f"e.g. {missing[:5]}"
                )
            columns = adata.var_names.get_indexer(needed)
            matrix = table[:, columns]
            matrix = matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)
        if preprocessor is not None:
            matrix = Preprocessor.from_state(preprocessor).transform(matrix)
        key = population_key or info.get("population_key")
        if key is not None and key in adata.obs.columns:
            labels = adata.obs[key].astype(str).to_numpy()
        elif population_key is not None:
            raise ValueError(
                f"population_key: obs column {population_key!r} not found; available: "
                f"{list(adata.obs.columns)}"
            )
        else:
            labels = np.full(adata.n_obs, "population")
        names = list(dict.fromkeys(labels.tolist()))
        groups = {name: np.flatnonzero(labels == name) for name in names}
        cells = {name: np.asarray(matrix[rows], dtype=np.float32) for name, rows in groups.items()}
        order = np.concatenate(list(groups.values()))
        return cells, adata.obs.iloc[order].copy()

    def sample(
        self,
        source,
        condition: str | int | None = None,
        population_key: str | None = None,
        num_steps: int = 100,
        solver: str = "euler",
        seed: int | None = 0,
        max_embed_cells: int | None = None,
        progress: bool = False,
    ) -> PopulationSamples:
        """Predict the treated cells of each source population (see the module docstring).

        Args:
            source: AnnData, (n, d) array/tensor in model space, or dict name → (n, d) array.
            condition: treatment name or id (default: the model's only one).
            population_key: obs column defining populations (AnnData; default: the training's).
            num_steps, solver: ODE integration (fixed-step ``"euler"`` … ``"rk4"``, or
                ``"dopri5"``). seed: the encoder's subsample of large populations.
            max_embed_cells: MFM embeds each population from at most this many of its cells
                (default: the training ``cells_per_population``, the graph size the encoder
                learned on; MFM's organoid evaluation uses up to 5000).
        """
        cond_id, cond_name = self._condition_id(condition)
        obs = None
        if isinstance(source, dict):
            cells = {str(k): np.asarray(v, dtype=np.float32) for k, v in source.items()}
        elif isinstance(source, np.ndarray | torch.Tensor):
            cells = {"population": np.asarray(source, dtype=np.float32)}
        elif hasattr(source, "obs") and hasattr(source, "var_names"):
            cells, obs = self._from_anndata(source, population_key)
        else:
            raise TypeError(
                f"source: expected an AnnData, an array (cells, d) or a dict of arrays, got "
                f"{type(source).__name__}"
            )
        dim = self.network.dim
        for name, value in cells.items():
            if value.ndim != 2 or value.shape[1] != dim or len(value) == 0:
                raise ValueError(
                    f"source population {name!r}: expected (cells >= 1, {dim}) in the model's "
                    f"feature space, got {value.shape}"
                )
            if not np.isfinite(value).all():
                raise ValueError(f"source population {name!r}: contains NaN or inf")
        names = list(cells)
        x0 = torch.from_numpy(np.concatenate([cells[n] for n in names])).to(self.device)
        sizes = torch.tensor([len(cells[n]) for n in names])
        index = torch.repeat_interleave(torch.arange(len(names)), sizes).to(self.device)
        known = self.info["populations"]
        cond = {
            "condition": torch.full((len(names),), cond_id, dtype=torch.long, device=self.device),
            "population": torch.tensor(
                [known.index(n) if n in known else len(known) for n in names],
                dtype=torch.long,
                device=self.device,
            ),
        }
        if self.network.mode == "mfm":
            limit = max_embed_cells or self.info.get("cells_per_population") or 5000
            cond["embedding"] = self._embed(cells, names, limit, seed)
        context = {"index": index, "num_samples": len(names), "cond": cond}
        with torch.no_grad():
            solution = self.engine.sample(
                self.network,
                len(names),
                context=context,
                num_steps=num_steps,
                solver=solver,
                device=self.device,
                progress=progress,
                x0={STATE_KEY: x0},
            )
        return PopulationSamples(
            samples={STATE_KEY: solution.x[STATE_KEY].detach().cpu()},
            times=solution.times.cpu(),
            num_function_evals=solution.num_function_evals,
            metadata={
                "domain": self.task.domain,
                "solver": solver,
                "num_steps": num_steps,
                "seed": seed,
            },
            source=x0.cpu(),
            index=index.cpu(),
            populations=names,
            condition=cond_name,
            features=list(self.info["features"]),
            obs=obs,
            preprocessor=(
                Preprocessor.from_state(self.info["preprocessor"])
                if self.info.get("preprocessor")
                else None
            ),
            condition_key=self.info.get("condition_key"),
        )

    @torch.no_grad()
    def _embed(self, cells: dict, names: list[str], max_cells: int, seed) -> torch.Tensor:
        """φ of every population from a seeded subsample of at most ``max_cells`` cells."""
        rng = np.random.default_rng(seed)
        picked = []
        for name in names:
            value = cells[name]
            if len(value) > max_cells:
                value = value[np.sort(rng.choice(len(value), max_cells, replace=False))]
            picked.append(torch.from_numpy(value))
        sizes = torch.tensor([len(p) for p in picked])
        index = torch.repeat_interleave(torch.arange(len(names)), sizes).to(self.device)
        return self.network.embed(torch.cat(picked).to(self.device), index, len(names))
