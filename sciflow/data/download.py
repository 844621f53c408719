"""Download registered datasets, verifying every file's SHA-256 before it is put in place."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from sciflow.atomic import atomic_write
from sciflow.data.registry import RemoteFile, dataset_dir, get_dataset

_CHUNK = 1 << 20
_TIMEOUT_S = 60


def sha256sum(path: str | os.PathLike[str]) -> str:
    """The SHA-256 digest of the file at ``path``, as 64 lowercase hexadecimal characters."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    name: str,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Download the registered dataset ``name`` and return its folder.

    Each file goes to ``<root>/<domain>/<name>/<relative_path>`` (``root`` defaults to
    :func:`~sciflow.data.registry.data_dir`). A file already there with the right checksum is
    kept unless ``force``. Downloads stream into a temporary file in the same folder, which
    replaces the target atomically only once its checksum matches.

    Raises:
        ValueError: ``name`` is not registered, or a downloaded file has the wrong checksum
            (the partial file is deleted).
        OSError: a download failed.
    """
    spec = get_dataset(name)
    folder = dataset_dir(spec, root)
    for remote in spec.files:
        target = folder / remote.relative_path
        if force or not _is_valid(target, remote.sha256):
            _download(remote, target, progress)
    return folder


def _is_valid(path: Path, sha256: str) -> bool:
    """Whether ``path`` is an existing file whose digest is ``sha256``."""
    return path.is_file() and sha256sum(path) == sha256


def _download(remote: RemoteFile, target: Path, progress: bool) -> None:
    """Download ``remote`` to ``target`` through a verified temporary file."""
    with atomic_write(target, "wb") as out:  # a mismatch raises inside: nothing is kept
        actual = _stream(remote.url, out, progress, desc=remote.relative_path)
        if actual != remote.sha256:
            raise ValueError(
                f"checksum mismatch for {remote.relative_path} from {remote.url}: "
                f"expected sha256 {remote.sha256}, got {actual}"
            )


def _stream(url: str, out: BinaryIO, progress: bool, desc: str) -> str:
    """Copy ``url`` into ``out`` in chunks and return the SHA-256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
            ) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.URLError as err:
        raise OSError(f"download of {url} failed: {err.reason}") from err
    return digest.hexdigest()
