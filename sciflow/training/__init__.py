"""Training: the Lightning task, datamodules and checkpoint I/O."""

from sciflow.training.checkpoint_io import AtomicCheckpointIO
from sciflow.training.datamodule import DictDataset, DistributionDataModule
from sciflow.training.task import GenerativeTask, TrainingTask

__all__ = [
    "AtomicCheckpointIO",
    "DictDataset",
    "DistributionDataModule",
    "GenerativeTask",
    "TrainingTask",
]
