"""Population pairs for Meta Flow Matching: AnnData loading, population splits and batches.

A *population* is a group of cells named by an ``obs`` column (a patient, a replicate, an
organoid well). For each population and each treatment, a :class:`PopulationPair` holds its
control cells (source, p0) and its cells under that treatment (target, p1). Populations, never
single cells, are split into ``train`` / ``val`` / ``test`` (val and test are held out), and any
fitted preprocessing (HVG, PCA, scaling; see :mod:`.preprocess`) is fitted on the training
populations only.

Batches (:func:`collate_populations`, :class:`PopulationDataModule`), with B population pairs,
k = ``cells_per_population``, M = B·k and d features::

    batch = {
        "x": (M, d) float32         target cells; rows j·k … (j+1)·k − 1 belong to pair j,
        "index": (M,) long          pair of each row: [0]*k + [1]*k + … + [B−1]*k,
        "num_samples": int          B,
        "x0": {"x": (M, d) float32} source cells, row i the flow's starting point for x[i],
        "cond": {
            "source": (M, d) float32     the source cells again (the population the network embeds;
                                         the same tensor object as x0["x"]),
            "source_index": (M,) long    pair of each source row (equal to "index"),
            "condition": (B,) long       treatment id of each pair (PopulationData.conditions),
            "population": (B,) long      population id of each pair (PopulationData.populations;
                                         training populations have the smallest ids),
        },
    }

The flow component is ``"x"`` with ``layout="indexed"``; the engine's ``Engine.loss`` takes the
prior points from ``x0`` (the source cells) instead of Gaussian draws, so the learned flow moves
a population's control cells to its treated cells. The rows of ``x0["x"]`` and ``x`` are the true
pairs when the data has them (letters: a cell and its noisy copy) and independent draws of the
two populations otherwise (real data, as MFM does for organoids), or, with ``coupling="ot"``,
matched by exact optimal transport within each pair (the engine's own couplings act on dense
parts and on fresh prior draws only, not on stored ``x0``). Since every pair has k rows,
``x.view(B, k, d)`` is valid.

Each pair's k source and k target cells are a seeded subsample (without replacement; with
replacement only for populations smaller than k), drawn anew each training epoch from
``(seed, epoch, draw)``; validation and test batches use the same draws every epoch.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from sciflow_domains.singlecell.letters import LettersConfig, make_letters
from sciflow_domains.singlecell.preprocess import PreprocessConfig, Preprocessor
from scipy import sparse
from torch.utils.data import DataLoader, Dataset, Sampler

from sciflow.data.registry import data_dir
from sciflow.data.splits import split_groups

log = logging.getLogger(__name__)

#: Name of the flow's state part in batches (``batch["x"]``, ``batch["x0"]["x"]``).
STATE_KEY = "x"
SPLITS = ("train", "val", "test")
#: How source and target rows of a pair are matched (see :class:`PopulationPairDataset`).
COUPLINGS = ("given", "ot")
#: The bundled real perturbation dataset, relative to ``data_dir()``.
BODENMILLER_FILE = "singlecell/bodenmiller2012_bcrxl/bodenmiller2012_bcrxl_pbmc8.h5ad"


@dataclass
class PopulationPair:
    """One population under one treatment: its control cells and its treated cells.

    Attributes:
        population, condition: names (obs values); ``condition`` is the treatment.
        source: (n0, d) float32 control cells. target: (n1, d) float32 treated cells.
        population_id, condition_id: indices into ``PopulationData.populations`` / ``.conditions``.
        paired: source row i and target row i are the same cell before/after (n0 == n1).
        source_names, target_names: obs names of the cells (AnnData only), else None.
        meta: anything else (letters: letter, rotation, angle, split).
    """

    population: str
    condition: str
    source: np.ndarray
    target: np.ndarray
    population_id: int = 0
    condition_id: int = 0
    paired: bool = False
    source_names: np.ndarray | None = None
    target_names: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source.ndim != 2 or self.target.ndim != 2:
            raise ValueError(
                f"population {self.population!r}: source and target must be (cells, features), "
                f"got {self.source.shape} and {self.target.shape}"
            )
        if self.source.shape[1] != self.target.shape[1]:
            raise ValueError(
                f"population {self.population!r}: source has {self.source.shape[1]} features, "
                f"target {self.target.shape[1]}"
            )
        if self.paired and len(self.source) != len(self.target):
            raise ValueError(
                f"population {self.population!r}: paired source/target need as many rows, got "
                f"{len(self.source)} and {len(self.target)}"
            )


@dataclass
class PopulationData:
    """Population pairs split by population, with the names behind every id.

    Attributes:
        splits: ``"train"``, ``"val"``, ``"test"`` → list of pairs (val may be empty).
        populations: id → population name; training populations first, then val, then test.
        conditions: id → treatment name.
        features: names of the d features (markers, genes, ``PC1``…).
        control: the control label (AnnData), else None.
        preprocessor: the fitted :class:`~.preprocess.Preprocessor` (AnnData), else None.
    """

    splits: dict[str, list[PopulationPair]]
    populations: tuple[str, ...]
    conditions: tuple[str, ...]
    features: tuple[str, ...]
    control: str | None = None
    preprocessor: Preprocessor | None = None

    @classmethod
    def from_splits(
        cls,
        splits: dict[str, list[PopulationPair]],
        conditions: Sequence[str],
        features: Sequence[str],
        control: str | None = None,
        preprocessor: Preprocessor | None = None,
    ) -> PopulationData:
        """Number populations (train first) and conditions, and check no population spans splits."""
        owner: dict[str, str] = {}
        for split in SPLITS:
            for pair in splits.get(split, []):
                first = owner.setdefault(pair.population, split)
                if first != split:
                    raise ValueError(
                        f"population {pair.population!r} is in splits {first!r} and {split!r}; "
                        "a population's cells must stay in one split"
                    )
        populations = tuple(owner)  # insertion order: train, val, test
        pop_id = {name: i for i, name in enumerate(populations)}
        cond_id = {name: i for i, name in enumerate(conditions)}
        unknown = sorted({p.condition for s in splits.values() for p in s} - set(cond_id))
        if unknown:
            raise ValueError(f"conditions: pairs use condition(s) {unknown} not in {conditions}")
        numbered = {
            split: [
                dataclasses.replace(
                    p, population_id=pop_id[p.population], condition_id=cond_id[p.condition]
                )
                for p in splits.get(split, [])
            ]
            for split in SPLITS
        }
        return cls(numbered, populations, tuple(conditions), tuple(features), control, preprocessor)

    @property
    def dim(self) -> int:
        """Number of features d."""
        return len(self.features)

    @property
    def num_train_populations(self) -> int:
        """Training populations have ids 0 … num_train_populations − 1."""
        return len({p.population for p in self.splits["train"]})

    def split_of(self) -> dict[str, str]:
        """Population name → its split."""
        return {p.population: s for s in SPLITS for p in self.splits[s]}

    def summary(self) -> str:
        parts = []
        for split in SPLITS:
            pairs = self.splits[split]
            cells = sum(len(p.source) + len(p.target) for p in pairs)
            pops = len({p.population for p in pairs})
            parts.append(f"{split}: {pops} populations, {len(pairs)} pairs, {cells} cells")
        return f"{self.dim} features, {len(self.conditions)} condition(s); " + "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Splits


def split_populations(
    names: Sequence[str],
    test: Sequence[str] | None = None,
    val: Sequence[str] | None = None,
    test_fraction: float = 0.25,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, list[str]]:
    """Assign whole populations to ``train`` / ``val`` / ``test``
    (:func:`sciflow.data.split_groups`: explicit lists win, the rest is shuffled with ``seed``)."""
    return split_groups(names, test, val, test_fraction, val_fraction, seed, kind="population")


# ---------------------------------------------------------------------------------------------
# AnnData


def resolve_path(path: str | Path) -> Path:
    """``path`` if it exists, else ``data_dir()/path``, else ``data_dir()/singlecell/path``."""
    path = Path(path).expanduser()
    candidates = [path]
    if not path.is_absolute():
        candidates += [data_dir() / path, data_dir() / "singlecell" / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"AnnData file not found (tried {tried}); set SCIFLOW_DATA_DIR to the folder holding "
        f"singlecell/ or pass an absolute path"
    )


def default_bodenmiller_path() -> Path:
    """``data_dir()/singlecell/bodenmiller2012_bcrxl/bodenmiller2012_bcrxl_pbmc8.h5ad``."""
    return data_dir() / BODENMILLER_FILE


def _representation(adata, rep: str):
    """The (cells, features) matrix named ``rep`` and its feature names."""
    if rep == "X":
        return adata.X, [str(v) for v in adata.var_names]
    in_layers, in_obsm = rep in adata.layers, rep in adata.obsm
    if in_layers and in_obsm:
        raise ValueError(f"rep: {rep!r} is both a layer and an obsm key; rename one")
    if in_layers:
        return adata.layers[rep], [str(v) for v in adata.var_names]
    if in_obsm:
        value = adata.obsm[rep]
        if isinstance(value, pd.DataFrame):
            return value.to_numpy(), [str(c) for c in value.columns]
        value = np.asarray(value) if not sparse.issparse(value) else value
        return value, [f"{rep}_{i + 1}" for i in range(value.shape[1])]
    raise ValueError(
        f"rep: {rep!r} is not 'X', a layer {sorted(adata.layers)} or an obsm key "
        f"{sorted(adata.obsm)}"
    )


def _check_finite(matrix, pop: np.ndarray, rep: str, population_key: str, stage: str) -> None:
    """Raise naming the count of non-finite values and the populations of their cells."""
    if sparse.issparse(matrix):
        coo = matrix.tocoo()
        bad = ~np.isfinite(coo.data)
        values, rows = int(bad.sum()), np.unique(coo.row[bad])
    else:
        bad = ~np.isfinite(np.asarray(matrix))
        values = int(bad.sum())
        rows = np.nonzero(bad.any(axis=1))[0] if values else np.array([], dtype=int)
    if not values:
        return
    names, counts = np.unique(pop[rows], return_counts=True)
    where = ", ".join(f"{n!r} ({c} cell(s))" for n, c in zip(names, counts, strict=True))
    raise ValueError(
        f"representation {rep!r} holds {values} NaN/inf value(s) in {len(rows)} cell(s) "
        f"{stage}; by population ({population_key!r}): {where}; drop or impute those cells"
    )


def load_populations(
    adata,
    population_key: str,
    condition_key: str,
    control: str,
    treatments: Sequence[str] | None = None,
    rep: str = "X",
    preprocess: PreprocessConfig | None = None,
    test_populations: Sequence[str] | None = None,
    val_populations: Sequence[str] | None = None,
    test_fraction: float = 0.25,
    val_fraction: float = 0.0,
    min_cells: int = 50,
    seed: int = 0,
) -> PopulationData:
    """Population pairs from an AnnData (object or ``.h5ad`` path, see :func:`resolve_path`).

    Args:
        population_key: obs column naming each cell's population (e.g. ``"patient"``).
        condition_key: obs column naming each cell's condition (e.g. ``"condition"``).
        control: the control value of ``condition_key`` (e.g. ``"Reference"``).
        treatments: the treated values to predict (default: every other value, sorted); cells
            of other conditions are dropped. A population without cells of some treatment simply
            has no pair for it; a population with no pair at all is an error.
        rep: ``"X"``, a layer name or an ``obsm`` key (e.g. ``"X_pca"``; note that an embedding
            computed on all cells before this split saw the held-out cells).
        preprocess: steps fitted on the training populations' cells (both conditions) and
            applied to all (default: none).
        test_populations, val_populations, test_fraction, val_fraction, seed: the population
            split (:func:`split_populations`).
        min_cells: every used (population, condition) group needs at least this many cells.

    Raises ``ValueError`` naming the column and the offending values for missing obs columns,
    unknown control/treatment labels, NaN/inf values, small groups, populations without control
    cells or without treated cells; ``FileNotFoundError`` for a missing file.
    """
    if isinstance(adata, str | Path):
        import anndata

        adata = anndata.read_h5ad(resolve_path(adata))
    preprocess = preprocess or PreprocessConfig()
    if not isinstance(min_cells, int) or min_cells < 1:
        raise ValueError(f"min_cells: expected a positive int, got {min_cells!r}")
    for label, key in (("population_key", population_key), ("condition_key", condition_key)):
        if key not in adata.obs.columns:
            raise ValueError(
                f"{label}: obs column {key!r} not found; available obs columns: "
                f"{list(adata.obs.columns)}"
            )
    if population_key == condition_key:
        raise ValueError(f"population_key and condition_key are both {population_key!r}")
    cond_col = adata.obs[condition_key]
    labels = sorted({str(v) for v in cond_col.dropna().unique()})
    control = str(control)
    if control not in labels:
        raise ValueError(
            f"control: label {control!r} not found in obs column {condition_key!r}; labels "
            f"present: {labels}"
        )
    if treatments is None:
        treatments = [lab for lab in labels if lab != control]
    treatments = [str(t) for t in treatments]
    unknown = [t for t in treatments if t not in labels]
    if unknown or control in treatments or not treatments:
        what = (
            f"unknown label(s) {unknown}"
            if unknown
            else "the control label"
            if control in treatments
            else "no treatment label"
        )
        raise ValueError(
            f"treatments: {what} in obs column {condition_key!r}; labels present: {labels} "
            f"(control {control!r})"
        )
    cond = cond_col.astype(object).to_numpy()
    keep = np.isin(cond.astype(str), [control, *treatments]) & ~pd.isna(cond)
    pop_col = adata.obs[population_key]
    missing_pop = int((pd.isna(pop_col.to_numpy()) & keep).sum())
    if missing_pop:
        raise ValueError(
            f"population_key: {missing_pop} cell(s) have no value in obs column "
            f"{population_key!r}; drop them or fill the column"
        )
    rows = np.nonzero(keep)[0]
    pop = pop_col.astype(str).to_numpy()[rows]
    cond = cond[rows].astype(str)
    matrix, feature_names = _representation(adata, rep)
    if preprocess.needs_genes and rep in adata.obsm:
        raise ValueError(
            f"preprocess: normalize_total/log1p/n_top_genes need a gene matrix (X or a layer), "
            f"but rep {rep!r} is an obsm embedding"
        )
    matrix = matrix[rows]
    _check_finite(matrix, pop, rep, population_key, "before preprocessing")

    groups = pd.Series(np.arange(len(rows))).groupby([pop, cond], sort=True).indices
    groups = {(str(p), str(c)): idx for (p, c), idx in groups.items()}
    populations = sorted(set(pop))
    no_control = [p for p in populations if (p, control) not in groups]
    if no_control:
        raise ValueError(
            f"population(s) {no_control} (obs column {population_key!r}) have no control cells "
            f"({condition_key!r} == {control!r})"
        )
    no_treated = [p for p in populations if not any((p, t) in groups for t in treatments)]
    if no_treated:
        raise ValueError(
            f"population(s) {no_treated} (obs column {population_key!r}) have control cells but "
            f"none under the treatment(s) {treatments} ({condition_key!r})"
        )
    small = [(p, c, len(idx)) for (p, c), idx in groups.items() if len(idx) < min_cells]
    if small:
        listed = ", ".join(f"{p!r}/{c!r} ({n})" for p, c, n in small)
        raise ValueError(
            f"populations with fewer than min_cells={min_cells} cells (obs columns "
            f"{population_key!r}/{condition_key!r}): {listed}; drop them or lower min_cells"
        )

    split = split_populations(
        populations, test_populations, val_populations, test_fraction, val_fraction, seed
    )
    train_rows = np.nonzero(np.isin(pop, split["train"]))[0]
    preprocessor = Preprocessor(preprocess).fit(matrix[train_rows], feature_names)
    values = preprocessor.transform(matrix)
    _check_finite(values, pop, rep, population_key, "after preprocessing")
    names = np.asarray(adata.obs_names)[rows]

    splits: dict[str, list[PopulationPair]] = {}
    for label in SPLITS:
        splits[label] = []
        for p in split[label]:
            src = groups[(p, control)]
            source, source_names = values[src], names[src]  # shared by the population's pairs
            for t in treatments:
                if (p, t) not in groups:
                    continue
                tgt = groups[(p, t)]
                pair = PopulationPair(p, t, source, values[tgt])
                pair.source_names, pair.target_names = source_names, names[tgt]
                splits[label].append(pair)
    data = PopulationData.from_splits(
        splits, treatments, preprocessor.features, control=control, preprocessor=preprocessor
    )
    log.info("single-cell populations (%s): %s", rep, data.summary())
    return data


# ---------------------------------------------------------------------------------------------
# Torch dataset, collation, sampler


class PopulationPairDataset(Dataset):
    """Subsampled population pairs: item ``(i, epoch, draw)`` (or just ``i`` = ``(i, 0, 0)``) is
    ``{"source": (k, d), "target": (k, d), "condition": int, "population": int}`` for pair i.

    The k rows are drawn with ``numpy.random.default_rng([seed, epoch, draw, i])``: without
    replacement, or with replacement for a side with fewer than k cells. ``coupling`` says how
    source row j and target row j are matched:

    - ``"given"``: as drawn: paired data (letters) use the same rows on both sides (true
      pairs); other pairs draw the two sides independently (MFM's organoid setting).
    - ``"ot"``: the target rows are reordered by the exact optimal transport assignment between
      the k source and k target cells (squared Euclidean cost; with equal uniform weights the
      OT plan is a permutation, found by ``scipy.optimize.linear_sum_assignment``).
    """

    def __init__(
        self,
        pairs: Sequence[PopulationPair],
        cells_per_population: int,
        seed: int = 0,
        coupling: str = "given",
    ):
        if not isinstance(cells_per_population, int) or cells_per_population < 1:
            raise ValueError(
                f"cells_per_population: expected a positive int, got {cells_per_population!r}"
            )
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling: expected one of {COUPLINGS}, got {coupling!r}")
        self.pairs, self.k, self.seed = list(pairs), cells_per_population, seed
        self.coupling = coupling

    def __len__(self) -> int:
        return len(self.pairs)

    def _rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.choice(n, size=self.k, replace=n < self.k)

    def __getitem__(self, key) -> dict:
        i, epoch, draw = (key, 0, 0) if isinstance(key, int | np.integer) else key
        pair = self.pairs[i]
        rng = np.random.default_rng([self.seed, epoch, draw, int(i)])
        src_rows = self._rows(rng, len(pair.source))
        tgt_rows = src_rows if pair.paired else self._rows(rng, len(pair.target))
        source, target = pair.source[src_rows], pair.target[tgt_rows]
        if self.coupling == "ot":
            target = target[ot_assignment(source, target)]
        return {
            "source": torch.from_numpy(source),
            "target": torch.from_numpy(target),
            "condition": pair.condition_id,
            "population": pair.population_id,
        }


def ot_assignment(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Permutation ``perm`` minimising ``Σ_j |source[j] − target[perm[j]]|²`` (both (k, d))."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    cost = cdist(source.astype(np.float64), target.astype(np.float64), "sqeuclidean")
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def collate_populations(items: Sequence[dict]) -> dict:
    """Stack dataset items into the batch layout of the module docstring."""
    if not items:
        raise ValueError("collate_populations: got no items")
    sizes = {len(item["target"]) for item in items} | {len(item["source"]) for item in items}
    if len(sizes) != 1:
        raise ValueError(f"collate_populations: items need equal cell counts, got {sorted(sizes)}")
    k = sizes.pop()
    num = len(items)
    source = torch.cat([item["source"] for item in items]).float()
    index = torch.arange(num).repeat_interleave(k)
    return {
        STATE_KEY: torch.cat([item["target"] for item in items]).float(),
        "index": index,
        "num_samples": num,
        "x0": {STATE_KEY: source},
        "cond": {
            "source": source,
            "source_index": index.clone(),
            "condition": torch.tensor([item["condition"] for item in items], dtype=torch.long),
            "population": torch.tensor([item["population"] for item in items], dtype=torch.long),
        },
    }


class PopulationBatchSampler(Sampler[list[tuple[int, int, int]]]):
    """Batches of ``(pair, epoch, draw)`` keys for :class:`PopulationPairDataset`.

    With ``shuffle``: ``num_batches`` batches of ``batch_size`` pairs (default: enough to visit
    every pair once), taken from back-to-back permutations drawn from ``(seed, epoch)``, so a
    batch may repeat a pair only when the pairs run out (or there are fewer than
    ``batch_size``). Without: the pairs in order, the last batch possibly short, epoch fixed at 0
    so evaluation draws are the same every epoch.
    """

    def __init__(
        self,
        num_pairs: int,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        num_batches: int | None = None,
    ):
        if num_pairs < 1:
            raise ValueError("PopulationBatchSampler: no population pairs to draw from")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"populations_per_batch: expected a positive int, got {batch_size!r}")
        if num_batches is not None and (not isinstance(num_batches, int) or num_batches < 1):
            raise ValueError(
                f"batches_per_epoch: expected None or a positive int, got {num_batches}"
            )
        self.num_pairs, self.batch_size, self.shuffle, self.seed = (
            num_pairs,
            batch_size,
            shuffle,
            seed,
        )
        self.num_batches = num_batches or math.ceil(num_pairs / batch_size)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches if self.shuffle else math.ceil(self.num_pairs / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        if not self.shuffle:
            for start in range(0, self.num_pairs, self.batch_size):
                stop = min(start + self.batch_size, self.num_pairs)
                yield [(i, 0, 0) for i in range(start, stop)]
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        total = self.num_batches * self.batch_size
        reps = math.ceil(total / self.num_pairs)
        order = np.concatenate([rng.permutation(self.num_pairs) for _ in range(reps)])[:total]
        for b in range(self.num_batches):
            chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield [(int(i), self.epoch, b * self.batch_size + j) for j, i in enumerate(chunk)]


class _BatchDataset(Dataset):
    """Item ``[key, key, ...]`` is the collated batch of those dataset keys."""

    def __init__(self, dataset: PopulationPairDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, keys) -> dict:
        return collate_populations([self.dataset[key] for key in keys])


# ---------------------------------------------------------------------------------------------
# Lightning data module


class PopulationDataModule(L.LightningDataModule):
    """Batches of population pairs (layout in the module docstring) from letters or AnnData.

    Args:
        path: an ``.h5ad`` file (absolute, or relative to ``$SCIFLOW_DATA_DIR`` or its
            ``singlecell/``); None generates the synthetic letters benchmark
            (:mod:`.letters`, configured by ``letters``).
        population_key, condition_key, control, treatments, rep, preprocess, min_cells,
        test_populations, val_populations, test_fraction, val_fraction: AnnData reading and
            the population split (see :func:`load_populations`).
        letters: a :class:`~.letters.LettersConfig` (path None only; default MFM's).
        cells_per_population: k, source and target cells per pair in a batch.
        populations_per_batch: B, pairs per batch.
        batches_per_epoch: training batches per epoch (default: ceil(train pairs / B)).
        coupling: ``"given"`` or ``"ot"``, how x0 rows meet x rows within each pair
            (:class:`PopulationPairDataset`).
        seed: seeds the letters, the split, the subsamples and the batch order.

    After :meth:`setup`: ``data`` (:class:`PopulationData`), ``dim``, ``num_conditions``,
    ``num_populations``, ``num_train_populations``. An empty val split gives no val batches.
    """

    def __init__(
        self,
        path: str | None = None,
        population_key: str = "patient",
        condition_key: str = "condition",
        control: str = "Reference",
        treatments: list[str] | None = None,
        rep: str = "X",
        preprocess: PreprocessConfig | None = None,
        min_cells: int = 50,
        test_populations: list[str] | None = None,
        val_populations: list[str] | None = None,
        test_fraction: float = 0.25,
        val_fraction: float = 0.0,
        letters: LettersConfig | None = None,
        cells_per_population: int = 256,
        populations_per_batch: int = 4,
        batches_per_epoch: int | None = None,
        coupling: str = "given",
        seed: int = 0,
    ):
        super().__init__()
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling: expected one of {COUPLINGS}, got {coupling!r}")
        self.coupling = coupling
        if path is not None and letters is not None:
            raise ValueError("letters: only used without a path (the synthetic benchmark)")
        for name, value in (
            ("cells_per_population", cells_per_population),
            ("populations_per_batch", populations_per_batch),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.path, self.letters = path, letters
        self.anndata_args = dict(
            population_key=population_key,
            condition_key=condition_key,
            control=control,
            treatments=treatments,
            rep=rep,
            preprocess=preprocess,
            min_cells=min_cells,
            test_populations=test_populations,
            val_populations=val_populations,
            test_fraction=test_fraction,
            val_fraction=val_fraction,
            seed=seed,
        )
        self.cells_per_population = cells_per_population
        self.populations_per_batch = populations_per_batch
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.data: PopulationData | None = None

    def setup(self, stage: str | None = None) -> None:
        """Generate or load the population pairs (once)."""
        if self.data is not None:
            return
        if self.path is None:
            self.data = make_letters(self.letters, seed=self.seed)
            log.info("letters benchmark: %s", self.data.summary())
        else:
            self.data = load_populations(resolve_path(self.path), **self.anndata_args)

    def _require(self) -> PopulationData:
        if self.data is None:
            raise RuntimeError("PopulationDataModule: call setup() first")
        return self.data

    @property
    def dim(self) -> int:
        return self._require().dim

    @property
    def num_conditions(self) -> int:
        return len(self._require().conditions)

    @property
    def num_populations(self) -> int:
        return len(self._require().populations)

    @property
    def num_train_populations(self) -> int:
        return self._require().num_train_populations

    def dataset(self, split: str) -> PopulationPairDataset:
        """The subsampling dataset of a split's pairs."""
        return PopulationPairDataset(
            self._require().splits[split], self.cells_per_population, self.seed, self.coupling
        )

    def _loader(self, split: str, shuffle: bool) -> DataLoader | list:
        pairs = self._require().splits[split]
        if not pairs:
            return []
        sampler = PopulationBatchSampler(
            len(pairs),
            self.populations_per_batch,
            shuffle,
            self.seed,
            self.batches_per_epoch if shuffle else None,
        )
        dataset = _BatchDataset(self.dataset(split))
        return DataLoader(dataset, sampler=sampler, batch_size=None, collate_fn=_identity)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False)


def _identity(batch: dict) -> dict:
    return batch
