"""Download registrations of the CDVAE crystal benchmarks (``sciflow data fetch <name>``).

The canonical files are the CSVs of txie-93/cdvae (Perov-5, Carbon-24, MP-20) and jiaor17/DiffCSP
(MPTS-52) on GitHub; ``../shared/data/crystal/README.md`` gives their raw URLs and the first eight
hex digits of their git blob SHA-1. A file is registered only with a full SHA-256 digest, which
was computed from a local copy whose ``git hash-object`` starts with the published blob prefix
(so the bytes are the canonical ones). That holds for the ``val`` and ``test`` splits of Perov-5
and Carbon-24 only: the train splits and every MP-20 and MPTS-52 split have no full digest here, so
they are not registered, and :data:`CANONICAL` keeps their URLs and blob prefixes for the error
messages and for users who download them by hand (check with ``git hash-object <file>``).

Importing this module (done by ``sciflow_domains.crystal``) registers the datasets; it needs
nothing beyond sciflow itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sciflow.data import DatasetSpec, RemoteFile, get_dataset, list_datasets, register_dataset

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class CanonicalSource:
    """Where the canonical splits of one dataset live.

    base_url: raw URL of the folder (append ``<split>.csv``); blob_prefix: split -> first hex
    digits of the git blob SHA-1 published in the data README; sha256: split -> full SHA-256 of
    the file (only for the splits verified here, see the module docstring).
    """

    base_url: str
    blob_prefix: dict[str, str]
    sha256: dict[str, str]
    description: str
    licence: str

    def url(self, split: str) -> str:
        return f"{self.base_url}{split}.csv"


_CDVAE = "https://raw.githubusercontent.com/txie-93/cdvae/main/data/"
_CITE_CDVAE = "cite CDVAE (Xie et al., ICLR 2022)"

CANONICAL: dict[str, CanonicalSource] = {
    "perov_5": CanonicalSource(
        base_url=_CDVAE + "perov_5/",
        blob_prefix={"train": "0769074b", "val": "4a2c8dde", "test": "d3c5d5af"},
        sha256={
            "val": "326f401219901270374b71e2faff63df3a29a99fd26f469993b9f476b693daf2",
            "test": "a85878c685037f0a578257f6d4fcdde00e968dbab73c5f1e90ecef65218513f6",
        },
        description="Perov-5 ABX3 perovskites, 5 atoms (CDVAE split; val+test, no train)",
        licence=(
            "repository MIT (txie-93/cdvae); data from Castelli et al. 2012, Computational "
            f"Materials Repository, licence not stated; {_CITE_CDVAE} and Castelli et al. 2012"
        ),
    ),
    "carbon_24": CanonicalSource(
        base_url=_CDVAE + "carbon_24/",
        blob_prefix={"train": "5e7ae970", "val": "b3e29b92", "test": "9beca843"},
        sha256={
            "val": "36c00689cd63073c954a58bc6ed6e2adb7aeed5a630c994970959a1babffd50e",
            "test": "386b17c08816f434818d51e46687bf72ff3f92348f3ba24823e4758f1fe8a969",
        },
        description="Carbon-24 carbon allotropes, 6-24 atoms (CDVAE split; val+test, no train)",
        licence=(
            "repository MIT (txie-93/cdvae); data from Pickard 2020, Materials Cloud archive "
            f"2020.0026/v1 (open access); {_CITE_CDVAE} and Pickard 2020"
        ),
    ),
    "mp_20": CanonicalSource(
        base_url=_CDVAE + "mp_20/",
        blob_prefix={"train": "b1c9d498", "val": "7efe4d7e", "test": "5dc64304"},
        sha256={},
        description="MP-20 Materials Project crystals, 1-20 atoms (CDVAE split)",
        licence=f"Materials Project data, CC BY 4.0; {_CITE_CDVAE} and Jain et al. 2013",
    ),
    "mpts_52": CanonicalSource(
        base_url="https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data/mpts_52/",
        blob_prefix={"train": "28c53b0a", "val": "a377ba0c", "test": "2e8af159"},
        sha256={},
        description="MPTS-52 Materials Project crystals, 1-52 atoms, split by date (DiffCSP)",
        licence="Materials Project data via mp-time-split; cite DiffCSP (Jiao et al. 2023)",
    ),
}


def dataset_specs() -> list[DatasetSpec]:
    """A :class:`~sciflow.data.DatasetSpec` for each dataset with at least one verified file."""
    specs = []
    for name, source in CANONICAL.items():
        files = tuple(
            RemoteFile(
                url=source.url(split), sha256=source.sha256[split], relative_path=f"{split}.csv"
            )
            for split in SPLITS
            if split in source.sha256
        )
        if files:
            specs.append(DatasetSpec(name, "crystal", files, source.description, source.licence))
    return specs


def register() -> None:
    """Register :func:`dataset_specs` (a spec already registered unchanged is left alone)."""
    for spec in dataset_specs():
        if spec.name in list_datasets() and get_dataset(spec.name) == spec:
            continue
        register_dataset(spec)


def fetch_hint(name: str, split: str) -> str:
    """How to obtain ``<name>/<split>.csv``: the fetch command, or the URL to download by hand."""
    source = CANONICAL.get(name)
    if source is None:
        return f"`{name}` is not a known crystal dataset (known: {', '.join(CANONICAL)})"
    if split in source.sha256:
        return f"run `sciflow data fetch {name}`"
    if split in source.blob_prefix:
        fetchable = ", ".join(s for s in SPLITS if s in source.sha256)
        how = f"`sciflow data fetch {name}` gets only {fetchable}; " if fetchable else ""
        return (
            f"{how}no full checksum of {name} {split} is registered, so download it by hand from "
            f"{source.url(split)} and check that `git hash-object {split}.csv` starts with "
            f"{source.blob_prefix[split]}"
        )
    return f"{name} has no canonical split {split!r} (canonical: {', '.join(SPLITS)})"


register()
