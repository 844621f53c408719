"""Rectified flow (reflow): generate filtered (noise, sample) pairs, then fine-tune on them."""

from sciflow.reflow.datamodule import ReflowDataModule
from sciflow.reflow.pairs import ReflowPairs, generate_pairs

__all__ = ["ReflowDataModule", "ReflowPairs", "generate_pairs"]
