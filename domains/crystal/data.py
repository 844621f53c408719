"""Crystal data: cached parsing, split files, atom-count histogram, dataset, batches, data module.

Files live in ``$SCIFLOW_DATA_DIR/crystal/<name>/<split>.csv`` or ``.csv.gz`` (see
:func:`find_split`); they are parsed by :func:`~.io.read_crystal_csv` (the exact steps are in
:mod:`sciflow_domains.crystal.io`) and cached by :func:`load_crystals`.

A batch (:func:`collate_crystals`) uses the engine's ``indexed`` layout for the atoms, B crystals
with M atoms in all::

    frac         (M, 3) float32  fractional coordinates in [0, 1)
    types        (M,)   int64    atomic numbers (1..118)
    index        (M,)   int64    crystal of each atom, 0..B-1, non-decreasing
    num_samples  int             B
    num_atoms    (B,)   int64    atoms per crystal (bincount of index)
    lattice      (B, 3, 3) float32  rows = lattice vectors in Å / lattice_scale; the Cartesian
                                 positions of crystal b are frac[index == b] @ lattice[b]

``lattice`` is a dense part of event shape (3,) and point dimension 3 (reshape to (B, 9) for the
nine numbers of the CrysBFN lattice flow). A data module that conditions on a property
(``condition_property``) adds ``property`` (B, 1) float32, the column standardised with the
training split's mean and standard deviation.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import torch
from sciflow_domains.crystal.datasets import fetch_hint
from sciflow_domains.crystal.io import (
    PARSER_VERSION,
    CrystalTable,
    SkippedRow,
    log_skipped,
    read_crystal_csv,
)
from torch.utils.data import DataLoader, Dataset

from sciflow.atomic import atomic_write
from sciflow.data import data_dir, sha256sum

log = logging.getLogger(__name__)

_SPLIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_ARRAYS = ("types", "frac", "lattice", "lengths", "angles", "num_atoms", "rows")


# -- split files ------------------------------------------------------------------------------
def find_split(name: str, split: str, root: str | os.PathLike | None = None) -> Path:
    """The file of ``split`` of dataset ``name``: ``<root>/crystal/<name>/<split>.csv``, else
    ``<split>.csv.gz`` (``root`` defaults to ``$SCIFLOW_DATA_DIR``).

    ``split`` is a file stem: ``train``, ``val``, ``test``, or a partial copy such as
    ``train_subset``/``val_subset``/``test_subset``. A full split is never silently replaced by
    a subset: when ``val`` is missing but ``val_subset`` exists, the error says so.

    Raises:
        ValueError: ``name`` or ``split`` is not a plain file name.
        FileNotFoundError: neither file exists; says which paths were looked for and how to get
            the file (``sciflow data fetch <name>`` or the canonical URL).
    """
    for label, value in (("name", name), ("split", split)):
        if not _SPLIT.fullmatch(value):
            raise ValueError(f"{label}: expected a plain file name, got {value!r}")
    folder = (data_dir() if root is None else Path(root)) / "crystal" / name
    candidates = [folder / f"{split}.csv", folder / f"{split}.csv.gz"]
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates)
    message = f"crystal dataset {name!r} split {split!r} not found; looked for {looked}"
    others = sorted(p.name for p in folder.glob(f"{split}_*.csv*")) if folder.is_dir() else []
    if others:
        message += f"; found {', '.join(others)} there (pass that stem as the split to use it)"
    hint = fetch_hint(name, split.removesuffix("_subset"))
    raise FileNotFoundError(
        f"{message}. Set SCIFLOW_DATA_DIR to the folder that holds crystal/{name}/; to get the "
        f"file, {hint}"
    )


# -- cache ------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$SCIFLOW_CACHE_DIR/crystal`` (default ``~/.cache/sciflow/crystal``)."""
    root = os.environ.get("SCIFLOW_CACHE_DIR") or Path.home() / ".cache" / "sciflow"
    return Path(root).expanduser() / "crystal"


def cache_path(
    path: str | os.PathLike,
    niggli: bool = True,
    primitive: bool = False,
    skip_invalid: bool = False,
    root: str | os.PathLike | None = None,
) -> Path:
    """The cache file of ``path`` parsed with these options: keyed by the SHA-256 of the file's
    bytes, :data:`~.io.PARSER_VERSION` and the options, so an edited file or a new parser misses."""
    path = Path(path)
    key = f"{sha256sum(path)}|v{PARSER_VERSION}|niggli={niggli}|primitive={primitive}"
    key += f"|skip_invalid={skip_invalid}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    return (cache_dir() if root is None else Path(root)) / f"{stem}.{digest}.pt"


def _to_payload(table: CrystalTable, key: Path) -> dict:
    payload = {
        name: torch.from_numpy(np.ascontiguousarray(getattr(table, name))) for name in _ARRAYS
    }
    payload["properties"] = {
        k: torch.from_numpy(v) if isinstance(v, np.ndarray) else list(v)
        for k, v in table.properties.items()
    }
    payload["material_id"] = list(table.material_id)
    payload["skipped"] = [[s.row, s.material_id, s.reason] for s in table.skipped]
    payload["source"] = table.source
    payload["key"] = key.name
    payload["parser_version"] = PARSER_VERSION
    return payload


def _from_payload(payload: dict, source: Path) -> CrystalTable:
    arrays = {name: payload[name].numpy() for name in _ARRAYS}
    properties = {
        k: v.numpy() if isinstance(v, torch.Tensor) else list(v)
        for k, v in payload["properties"].items()
    }
    skipped = [SkippedRow(int(r), str(m), str(why)) for r, m, why in payload["skipped"]]
    return CrystalTable(
        **arrays,
        material_id=list(payload["material_id"]),
        properties=properties,
        skipped=skipped,
        source=str(source),
    )


def _read_cache(cached: Path, source: Path) -> CrystalTable | None:
    try:
        payload = torch.load(cached, map_location="cpu", weights_only=True)
        if payload.get("parser_version") != PARSER_VERSION or payload.get("key") != cached.name:
            raise ValueError("written for another file or parser version")
        return _from_payload(payload, source)
    except Exception as err:  # unreadable or foreign: parse again and overwrite
        log.warning("ignoring the crystal cache %s (%s); parsing again", cached, err)
        return None


def load_crystals(
    path: str | os.PathLike,
    niggli: bool = True,
    primitive: bool = False,
    skip_invalid: bool = False,
    cache: bool = True,
    cache_root: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> CrystalTable:
    """Parsed crystals of a CDVAE-format CSV, from the disk cache when it holds them.

    The first call parses with :func:`~.io.read_crystal_csv` (same arguments) and writes the
    result atomically to :func:`cache_path` (under :func:`cache_dir` unless ``cache_root``); later
    calls read that file and parse nothing (a cache that cannot be written or read is reported
    in the log and the file parsed). Rows skipped with ``skip_invalid`` are logged again on
    every load.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"crystal CSV not found: {path}")
    if not cache:
        return read_crystal_csv(path, niggli, primitive, skip_invalid, progress)
    cached = cache_path(path, niggli, primitive, skip_invalid, cache_root)
    if cached.is_file():
        table = _read_cache(cached, path)
        if table is not None:
            log.info("%d crystals of %s from the cache %s", len(table), path, cached)
            log_skipped(table)
            return table
    table = read_crystal_csv(path, niggli, primitive, skip_invalid, progress)
    try:
        with atomic_write(cached, "wb") as handle:
            torch.save(_to_payload(table, cached), handle)
    except OSError as err:  # e.g. a read-only cache folder: the parse itself is still good
        log.warning(
            "could not write the crystal cache %s (%s); it will be parsed again", cached, err
        )
        return table
    log.info("parsed %d crystals of %s; cached in %s", len(table), path, cached)
    return table


# -- atom counts ------------------------------------------------------------------------------
def num_atoms_histogram(data: CrystalTable | np.ndarray | torch.Tensor) -> np.ndarray:
    """Counts of crystals by atom count: ``hist[n]`` = number of crystals with n atoms.

    data: a :class:`~.io.CrystalTable` or the (B,) atom counts. Returns (max_n + 1,) int64,
    summing to B (``hist[0] == 0`` for parsed data).
    """
    counts = data.num_atoms if isinstance(data, CrystalTable) else data
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    if counts.size == 0 or counts.min() < 0:
        raise ValueError("data: expected at least one non-negative atom count")
    return np.bincount(counts).astype(np.int64)


def sample_num_atoms(
    histogram: np.ndarray | torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(num_samples,) int64 atom counts drawn from ``histogram`` (as :func:`num_atoms_histogram`),
    i.e. n with probability ``histogram[n] / histogram.sum()``, for ab initio generation."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples: expected a positive int, got {num_samples!r}")
    weights = torch.as_tensor(np.asarray(histogram, dtype=np.float64))
    if weights.ndim != 1 or (weights < 0).any() or not weights.sum() > 0:
        raise ValueError("histogram: expected a 1-D array of non-negative counts, not all zero")
    return torch.multinomial(weights, num_samples, replacement=True, generator=generator)


# -- dataset and batches ----------------------------------------------------------------------
class CrystalDataset(Dataset):
    """Crystals of a :class:`~.io.CrystalTable` as tensors.

    Item i is ``{"frac": (N, 3) float32 in [0, 1), "types": (N,) int64 atomic numbers,
    "lattice": (3, 3) float32}`` with the lattice in Å divided by ``lattice_scale``, plus
    ``"property": (P,) float32`` when ``properties`` (B, P) (already standardised) are given.
    """

    def __init__(
        self,
        table: CrystalTable,
        lattice_scale: float = 1.0,
        properties: np.ndarray | None = None,
    ) -> None:
        if not lattice_scale > 0:
            raise ValueError(f"lattice_scale: expected a positive float, got {lattice_scale!r}")
        if len(table) == 0:
            raise ValueError("table: expected at least one crystal, got none")
        self.table = table
        self.lattice_scale = float(lattice_scale)
        frac = torch.from_numpy(table.frac.astype(np.float32))
        self._frac = torch.where(frac >= 1.0, torch.zeros_like(frac), frac)  # float32 rounding
        self._types = torch.from_numpy(table.types.astype(np.int64))
        self._lattice = torch.from_numpy(table.lattice / self.lattice_scale).float()
        self._offsets = table.offsets.tolist()
        self._properties = None
        if properties is not None:
            if properties.ndim != 2 or len(properties) != len(table):
                raise ValueError(
                    f"properties: expected (B, P) with B = {len(table)} crystals, got "
                    f"{properties.shape}"
                )
            self._properties = torch.from_numpy(np.asarray(properties, dtype=np.float32))

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        lo, hi = self._offsets[index], self._offsets[index + 1]
        item = {
            "frac": self._frac[lo:hi],
            "types": self._types[lo:hi],
            "lattice": self._lattice[index],
        }
        if self._properties is not None:
            item["property"] = self._properties[index]
        return item


def collate_crystals(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor | int]:
    """Stack crystals into the ``indexed`` batch of the module docstring (keys ``frac``,
    ``types``, ``index``, ``num_samples``, ``num_atoms``, ``lattice`` and, when the items have
    one, ``property``), atoms in item order."""
    if not items:
        raise ValueError("items: expected at least one crystal, got an empty list")
    for i, item in enumerate(items):
        n = len(item["types"])
        if (
            n == 0
            or item["types"].shape != (n,)
            or item["frac"].shape != (n, 3)
            or item["lattice"].shape != (3, 3)
        ):
            raise ValueError(
                f"items[{i}]: expected types (N,), frac (N, 3) with N >= 1 and lattice (3, 3), got "
                f"{tuple(item['types'].shape)}, {tuple(item['frac'].shape)}, "
                f"{tuple(item['lattice'].shape)}"
            )
    num_atoms = torch.tensor([len(item["types"]) for item in items], dtype=torch.long)
    batch = {
        "frac": torch.cat([item["frac"] for item in items]).float(),
        "types": torch.cat([item["types"] for item in items]).long(),
        "index": torch.repeat_interleave(torch.arange(len(items)), num_atoms),
        "num_samples": len(items),
        "num_atoms": num_atoms,
        "lattice": torch.stack([item["lattice"] for item in items]).float(),
    }
    if "property" in items[0]:
        batch["property"] = torch.stack([item["property"] for item in items]).float()
    return batch


def engine_batch(batch: dict, task: str) -> dict:
    """The :func:`collate_crystals` batch in the layout of the crystal engines.

    ``lattice`` becomes (B, 9) (row-major, the nine numbers of the lattice flow) and
    ``num_atoms`` is dropped (``index`` holds it). For crystal structure prediction
    (``task="csp"``) the atom types are given, not generated: they move to
    ``cond["types"]`` (M,) atomic numbers, which `CSPNet` reads. For ``"abinitio"`` they stay a
    part for the engine's ``DiscreteBFN``: ``types`` (M,) class indices
    :func:`atomic_number_to_class` (class = Z − 1, so K = 100 classes cover H..Fm and every
    CDVAE dataset; :func:`class_to_atomic_number` decodes samples). A batch ``property``
    (B, P) moves to ``cond["property"]``, the condition of a property-conditioned `CSPNet`.
    """
    if task not in ("csp", "abinitio"):
        raise ValueError(f"task: expected 'csp' or 'abinitio', got {task!r}")
    out = {
        "frac": batch["frac"],
        "lattice": batch["lattice"].reshape(-1, 9),
        "index": batch["index"],
        "num_samples": batch["num_samples"],
    }
    if task == "csp":
        out["cond"] = {"types": batch["types"]}
    else:
        out["types"] = atomic_number_to_class(batch["types"])
    if "property" in batch:
        out.setdefault("cond", {})["property"] = batch["property"]
    return out


def atomic_number_to_class(types: torch.Tensor) -> torch.Tensor:
    """Class indices (M,) int64 of the ab initio type flow for atomic numbers (M,) int64 ≥ 1:
    class = Z − 1 (the engine's ``DiscreteBFN`` checks that every class is below its K)."""
    if types.is_floating_point() or (types.numel() and int(types.min()) < 1):
        raise ValueError(
            f"types: expected integer atomic numbers >= 1, got dtype {types.dtype} and values "
            f"from {int(types.min()) if types.numel() else '-'}"
        )
    return types.long() - 1


def class_to_atomic_number(classes: torch.Tensor) -> torch.Tensor:
    """Atomic numbers (M,) int64 of sampled type classes (M,) int64 ≥ 0: Z = class + 1."""
    if classes.is_floating_point() or (classes.numel() and int(classes.min()) < 0):
        raise ValueError(
            f"classes: expected integer class indices >= 0, got dtype {classes.dtype} and values "
            f"from {int(classes.min()) if classes.numel() else '-'}"
        )
    return classes.long() + 1


def collate_for_engine(items: list[dict[str, torch.Tensor]], task: str) -> dict:
    """:func:`collate_crystals`, then :func:`engine_batch`."""
    return engine_batch(collate_crystals(items), task)


# -- data module ------------------------------------------------------------------------------
class CrystalDataModule(L.LightningDataModule):
    """Batches of one crystal dataset under ``$SCIFLOW_DATA_DIR/crystal/<dataset>/``.

    Args:
        dataset: folder name (``perov_5``, ``carbon_24``, ``mp_20``, ``mpts_52``).
        train_split, val_split: file stems (see :func:`find_split`). The defaults train on the
            Perov-5 ``val`` split and validate on ``test``, the only complete Perov-5 splits here;
            with the canonical files use ``train``/``val``.
        test_split: optional stem for ``test_dataloader`` (``None``: no test loader).
        batch_size: crystals per batch (the last batch may be smaller).
        lattice_scale: Å per unit of the batch lattices (see :class:`CrystalDataset`).
        root: data folder instead of ``$SCIFLOW_DATA_DIR``.
        niggli, primitive, skip_invalid: parsing options of :func:`load_crystals`.
        num_train, num_val: keep only the first so many crystals of a split (smoke runs).
        num_workers: DataLoader workers.
        seed: seeds the training order (epoch e of a run is the same every run).
        task: ``"csp"`` (types given, in ``cond``) or ``"abinitio"`` (types generated): the
            batch layout of :func:`engine_batch`.
        condition_property: a property column of the split files (e.g. Perov-5 ``heat_ref``) to
            condition on: batches carry it standardised as ``cond["property"]`` (B, 1). Every
            crystal of every split needs a finite value.

    After :meth:`setup`, ``tables[split]`` holds the parsed :class:`~.io.CrystalTable` of each
    stage (``"train"``, ``"val"``, ``"test"``), :meth:`num_atoms_histogram` the training
    atom counts and, with ``condition_property``, ``property_scaling`` its name and the training
    mean and standard deviation.
    """

    def __init__(
        self,
        dataset: str = "perov_5",
        train_split: str = "val",
        val_split: str = "test",
        test_split: str | None = None,
        batch_size: int = 256,
        lattice_scale: float = 1.0,
        root: str | None = None,
        niggli: bool = True,
        primitive: bool = False,
        skip_invalid: bool = False,
        num_train: int | None = None,
        num_val: int | None = None,
        num_workers: int = 0,
        seed: int = 0,
        task: str = "csp",
        condition_property: str | None = None,
    ):
        super().__init__()
        if task not in ("csp", "abinitio"):
            raise ValueError(f"task: expected 'csp' or 'abinitio', got {task!r}")
        self.task = task
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if not lattice_scale > 0:
            raise ValueError(f"lattice_scale: expected a positive float, got {lattice_scale!r}")
        for label, value in (("num_train", num_train), ("num_val", num_val)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{label}: expected None or a positive int, got {value!r}")
        self.dataset, self.root = dataset, root
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.batch_size, self.lattice_scale = batch_size, float(lattice_scale)
        self.options = {"niggli": niggli, "primitive": primitive, "skip_invalid": skip_invalid}
        self.limits = {"train": num_train, "val": num_val, "test": None}
        self.num_workers, self.seed = num_workers, seed
        self.condition_property = condition_property
        self.property_scaling: dict | None = None
        self.tables: dict[str, CrystalTable] = {}
        self.datasets: dict[str, CrystalDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        """Find, parse (or read from the cache) and wrap each split (once)."""
        for stage_name, split in self.split_names.items():
            if split is None or stage_name in self.datasets:
                continue
            path = find_split(self.dataset, split, self.root)
            table = load_crystals(path, **self.options)
            limit = self.limits[stage_name]
            if limit is not None and limit < len(table):
                table = _head(table, limit)
            self.tables[stage_name] = table
            properties = self._standardised_property(table, path)
            self.datasets[stage_name] = CrystalDataset(table, self.lattice_scale, properties)
            log.info(
                "crystal %s: %s/%s, %d crystals (%d atoms)",
                stage_name,
                self.dataset,
                path.name,
                len(table),
                len(table.types),
            )

    def _standardised_property(self, table: CrystalTable, path: Path) -> np.ndarray | None:
        """(B, 1) ``condition_property`` of ``table`` standardised with the training split's
        statistics (set from the first split read, the training one); None without it."""
        name = self.condition_property
        if name is None:
            return None
        values = property_column(table, name, path)
        if self.property_scaling is None:
            self.property_scaling = property_scaling(values, name, path)
        scaling = self.property_scaling
        return ((values - scaling["mean"]) / scaling["std"])[:, None]

    def num_atoms_histogram(self) -> np.ndarray:
        """:func:`num_atoms_histogram` of the training split (call :meth:`setup` first)."""
        if "train" not in self.tables:
            raise RuntimeError("call setup() before num_atoms_histogram()")
        return num_atoms_histogram(self.tables["train"])

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        if stage not in self.datasets:
            raise RuntimeError(f"no {stage} split: call setup() first (or set {stage}_split)")
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.datasets[stage],
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=partial(collate_for_engine, task=self.task),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def property_column(table: CrystalTable, name: str, source: str | os.PathLike) -> np.ndarray:
    """(B,) float64 values of the property column ``name`` of ``table`` (read from ``source``);
    raises ``ValueError`` naming the file, the column and the rows without a finite value."""
    if name not in table.properties:
        raise ValueError(
            f"{source}: no property column {name!r}; the file has "
            f"{', '.join(sorted(table.properties)) or 'none'}"
        )
    values = table.properties[name]
    if not isinstance(values, np.ndarray) or not np.issubdtype(values.dtype, np.floating):
        raise ValueError(f"{source}: property column {name!r} is not numeric")
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        first = ", ".join(f"row {table.rows[i]} ({table.material_id[i]})" for i in bad[:5])
        raise ValueError(
            f"{source}: property {name!r} is missing or not finite for {bad.size} crystals: "
            f"{first}{', ...' if bad.size > 5 else ''}"
        )
    return values.astype(np.float64)


def property_scaling(values: np.ndarray, name: str, source: str | os.PathLike) -> dict:
    """``{"name", "mean", "std"}`` of a property column's (B,) ``values``, the statistics that
    standardise it; raises ``ValueError`` naming ``source`` when the column is constant."""
    std = float(values.std())
    if not std > 0:
        raise ValueError(f"{source}: property {name!r} is constant, nothing to learn from")
    return {"name": name, "mean": float(values.mean()), "std": std}


def _head(table: CrystalTable, count: int) -> CrystalTable:
    """The first ``count`` crystals of ``table``."""
    m = int(table.offsets[count])
    return CrystalTable(
        types=table.types[:m],
        frac=table.frac[:m],
        lattice=table.lattice[:count],
        lengths=table.lengths[:count],
        angles=table.angles[:count],
        num_atoms=table.num_atoms[:count],
        material_id=table.material_id[:count],
        rows=table.rows[:count],
        properties={k: v[:count] for k, v in table.properties.items()},
        skipped=table.skipped,
        source=table.source,
    )
