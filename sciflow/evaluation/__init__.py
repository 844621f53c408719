"""Distribution distances and the benchmark runner."""

from sciflow.evaluation.distances import energy_distance, mmd, wasserstein

__all__ = ["energy_distance", "mmd", "wasserstein"]
