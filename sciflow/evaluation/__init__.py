"""Distribution distances and the benchmark runner."""

from sciflow.evaluation.distances import categorical_tv, energy_distance, mmd, wasserstein

__all__ = ["categorical_tv", "energy_distance", "mmd", "wasserstein"]
