"""Registry of downloadable datasets and the local data folder.

A dataset is a list of remote files, each with a SHA-256 digest copied from a trustworthy
source. Datasets are registered with :func:`register_dataset` (domains register theirs when
their plugin module is imported) and fetched by :func:`sciflow.data.download.fetch` into
``data_dir()/<domain>/<name>/``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sciflow.registry import format_table

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset.

    Attributes:
        url: where to download it (``https://``, ``http://`` or ``file://``).
        sha256: the expected SHA-256 digest, 64 lowercase hexadecimal characters.
        relative_path: where it goes inside the dataset folder, a relative POSIX path
            (``"train.csv"``, ``"raw/a.nii.gz"``) that stays inside that folder.
    """

    url: str
    sha256: str
    relative_path: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://", "file://")):
            raise ValueError(f"url must start with https://, http:// or file://, got {self.url!r}")
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError(
                f"sha256 must be 64 lowercase hexadecimal characters, got {self.sha256!r}"
            )
        path = PurePosixPath(self.relative_path)
        if not self.relative_path or path.is_absolute() or ".." in path.parts:
            raise ValueError(
                "relative_path must be a non-empty relative path without '..', "
                f"got {self.relative_path!r}"
            )


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset of one domain.

    Attributes:
        name: unique dataset name, also its folder name (letters, digits, ``_``, ``.``, ``-``).
        domain: the domain it belongs to, also the parent folder name.
        files: the remote files, at least one, with distinct ``relative_path``.
        description: one line saying what it is.
        licence: its licence and the citation it asks for.
    """

    name: str
    domain: str
    files: tuple[RemoteFile, ...]
    description: str
    licence: str

    def __post_init__(self) -> None:
        for label, value in (("name", self.name), ("domain", self.domain)):
            if not _NAME.fullmatch(value):
                raise ValueError(
                    f"{label} must be letters, digits, '_', '.' or '-' (not starting with "
                    f"'.', '_' or '-'), got {value!r}"
                )
        if not isinstance(self.files, tuple) or not self.files:
            raise ValueError(f"files of dataset {self.name!r} must be a non-empty tuple")
        paths = [f.relative_path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError(f"dataset {self.name!r} lists a relative_path twice: {paths}")


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry and return it; a name registered twice raises ValueError."""
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """Return the registered dataset ``name``; an unknown name raises ValueError."""
    if name not in _REGISTRY:
        known = ", ".join(list_datasets()) or "(none)"
        raise ValueError(f"unknown dataset {name!r}; registered datasets: {known}")
    return _REGISTRY[name]


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_REGISTRY)


def data_dir() -> Path:
    """The data root: ``$SCIFLOW_DATA_DIR`` if set, else ``~/.cache/sciflow/data``."""
    env = os.environ.get("SCIFLOW_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sciflow" / "data"


def dataset_dir(spec: DatasetSpec, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder of ``spec``: ``<root>/<domain>/<name>``, ``root`` defaulting to ``data_dir()``."""
    base = data_dir() if root is None else Path(root)
    return base / spec.domain / spec.name


def format_dataset_table(root: str | os.PathLike[str] | None = None) -> str:
    """A plain-text table of registered datasets: name, domain, files, local state, description.

    The local column reads ``present`` when every file exists under ``root`` (checksums are
    verified by :func:`~sciflow.data.download.fetch`, not here), else ``missing``.
    """
    rows = [("dataset", "domain", "files", "local", "description")]
    for name in list_datasets():
        spec = _REGISTRY[name]
        folder = dataset_dir(spec, root)
        present = all((folder / f.relative_path).is_file() for f in spec.files)
        state = "present" if present else "missing"
        rows.append((name, spec.domain, str(len(spec.files)), state, spec.description))
    return format_table(rows)
