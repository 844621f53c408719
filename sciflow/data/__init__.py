"""Datasets: a registry of remote files with checksums, their download into the data folder, and
group splits."""

from sciflow.data.download import fetch, sha256sum
from sciflow.data.registry import (
    DatasetSpec,
    RemoteFile,
    data_dir,
    dataset_dir,
    format_dataset_table,
    get_dataset,
    list_datasets,
    register_dataset,
)
from sciflow.data.splits import split_groups

__all__ = [
    "DatasetSpec",
    "RemoteFile",
    "data_dir",
    "dataset_dir",
    "fetch",
    "format_dataset_table",
    "get_dataset",
    "list_datasets",
    "register_dataset",
    "sha256sum",
    "split_groups",
]
